"""`axolotl soda <stage> ...`: the `soda` command as an Axolotl subcommand.

Axolotl (0.19 and 0.21) serves commands from the `axolotl.cli_commands` entry-point group
(axolotl/cli/plugins.py); pyproject.toml registers this one there. The arguments go to
`soda` untouched, `--help` included.
"""

import click


@click.command(name="soda", add_help_option=False,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def soda(args: tuple[str, ...]) -> None:
    """SODA pipeline stages (axolotl soda --help)."""
    from soda_plugin.cli.main import main

    raise SystemExit(main(list(args)))
