"""The `soda` command line: one subcommand per pipeline stage (`soda --help`).

`main.main` is the console script. Each stage's parser and code live in the module named
in `main.STAGES` (`make_parser(prog)` and `main(args)`); `tools/<name>.py` re-exports them,
so `soda pairs ...` and `soda pairs ...` are one parser. Nothing heavy is
imported before a stage runs.
"""

import argparse


def stage_parser(prog: str | None, doc: str) -> argparse.ArgumentParser:
    """A stage's parser: its docstring's first line as description, the whole docstring
    (the usage examples) as epilog, kept as written."""
    return argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0], epilog=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
