"""The `asyncimg` command."""

from __future__ import annotations

import click

from asyncimg.cli.commands import ALL_COMMANDS
from asyncimg.cli.emulator_cmd import emulator


@click.group()
@click.version_option(package_name="asyncimg")
def cli() -> None:
    """Generate many images through Volcengine's asynchronous visual API."""


for _command in ALL_COMMANDS:
    cli.add_command(_command)
cli.add_command(emulator)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
