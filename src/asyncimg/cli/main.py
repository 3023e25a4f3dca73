"""The `asyncimg` command."""

from __future__ import annotations

import sys

import click

from asyncimg.cli.callbacks_cmd import callbacks
from asyncimg.cli.cancel_cmd import cancel
from asyncimg.cli.commands import ALL_COMMANDS
from asyncimg.cli.emulator_cmd import emulator
from asyncimg.cli.gallery_cmd import GALLERY_COMMANDS
from asyncimg.cli.migrate_cmd import migrate
from asyncimg.cli.priority_cmd import priority
from asyncimg.cli.probe_cmd import probe
from asyncimg.cli.pull_cmd import pull_cmd
from asyncimg.i18n import lang_from_argv, set_language, translate_cli


@click.group()
@click.version_option(package_name="asyncimg")
@click.option(
    "--lang",
    metavar="LANG",
    default=None,
    expose_value=False,
    is_eager=True,
    help="Language of messages: zh or en (default: $ASYNCIMG_LANG, else the locale).",
)
def cli() -> None:
    """Generate many images through Volcengine's asynchronous visual API."""


for _command in ALL_COMMANDS:
    cli.add_command(_command)
cli.add_command(emulator)
cli.add_command(cancel)
cli.add_command(probe)
for _command in GALLERY_COMMANDS:
    cli.add_command(_command)
cli.add_command(callbacks)
cli.add_command(migrate)
cli.add_command(priority)
cli.add_command(pull_cmd)


def main(args: list[str] | None = None, prog_name: str | None = None) -> None:
    """`asyncimg` (and the guide's `gen_image.py`): a file or folder that cannot be read or
    written is one line naming it and exit 2, never a traceback."""
    argv = sys.argv[1:] if args is None else args
    set_language(lang_from_argv(argv))
    translate_cli(cli)
    try:
        cli.main(args=_without_lang(argv, prog_name), prog_name=prog_name)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"asyncimg: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)


def _without_lang(argv: list[str], prog_name: str | None) -> list[str]:
    """`--lang X` may be given after the command name too (`asyncimg list --lang zh`) or to
    the guide's `gen_image.py`; click knows it only on the group, so it is taken out here
    (it was read already) everywhere but in front of the command."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg == "--":
            out.extend(argv[i:])
            break
        if arg == "--lang" and i + 1 < len(argv):
            skip = True
            continue
        if arg.startswith("--lang="):
            continue
        out.append(arg)
    del prog_name
    return out


if __name__ == "__main__":
    main()
