"""The `asyncimg` command."""

from __future__ import annotations

import sys

import click

from asyncimg.cli.commands import ALL_COMMANDS
from asyncimg.cli.emulator_cmd import emulator
from asyncimg.cli.migrate_cmd import migrate
from asyncimg.cli.priority_cmd import priority


@click.group()
@click.version_option(package_name="asyncimg")
def cli() -> None:
    """Generate many images through Volcengine's asynchronous visual API."""


for _command in ALL_COMMANDS:
    cli.add_command(_command)
cli.add_command(emulator)
cli.add_command(migrate)
cli.add_command(priority)


def main(args: list[str] | None = None, prog_name: str | None = None) -> None:
    """`asyncimg` (and the guide's `gen_image.py`): a file or folder that cannot be read or
    written is one line naming it and exit 2, never a traceback."""
    try:
        cli.main(args=args, prog_name=prog_name)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"asyncimg: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
