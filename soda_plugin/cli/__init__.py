"""The `soda` command line: one subcommand per pipeline stage (`soda --help`).

`main.main` is the console script. Each stage's parser and code live in the module named
in `main.STAGES` (`make_parser(prog)` and `main(args)`); `tools/<name>.py` re-exports them,
so `python tools/build_pairs.py ...` and `soda pairs ...` are one parser. Nothing heavy is
imported before a stage runs.
"""
