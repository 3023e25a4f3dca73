"""The `asyncimg` command."""

from __future__ import annotations

import click


@click.group()
@click.version_option(package_name="asyncimg")
def cli() -> None:
    """Generate many images through Volcengine's asynchronous visual API."""


def main() -> None:
    cli()
