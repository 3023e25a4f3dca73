"""`asyncimg migrate --from DIR --to postgresql://…` (and back): move task records."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from asyncimg.api import migrate_records, run_sync
from asyncimg.cli.emit import err_console, out_console, say_waiting
from asyncimg.i18n import _
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.open import open_store


def _location(value: str) -> str | Path:
    from asyncimg.store.pg.store import is_pg_url

    return value if is_pg_url(value) else Path(value)


@click.command()
@click.option("--from", "source", required=True, metavar="DIR|URL", help="Where the records are.")
@click.option("--to", "dest", required=True, metavar="DIR|URL", help="Where they go.")
@click.option(
    "--all-machines",
    is_flag=True,
    help="From a shared store: every machine's records, not only this machine's.",
)
def migrate(source: str, dest: str, all_machines: bool) -> None:
    """Move task records between a folder and a shared PostgreSQL store, without
    resubmitting anything: states, task ids and history move as they are."""
    # psycopg only when this command runs, not at every start of the CLI.
    from asyncimg.store.pg.store import is_pg_url, redact

    if not is_pg_url(source) and not Path(source).is_dir():
        err_console.print(
            "asyncimg: " + _("--from {source}: no such folder").format(source=source),
            markup=False,
        )
        sys.exit(2)
    try:
        src, dst = open_store(_location(source)), open_store(_location(dest))
        report = run_sync(
            migrate_records(
                src,
                dst,
                every_machine=all_machines,
                on_wait=say_waiting,
            )
        )
    except AsyncImgError as exc:
        err_console.print(f"asyncimg: {exc}", markup=False)
        sys.exit(2)
    for problem in report.problems:
        err_console.print(problem, markup=False)
    shown_from = redact(source) if is_pg_url(source) else source
    shown_to = redact(dest) if is_pg_url(dest) else dest
    line = _("moved {n} records from {source} to {dest}").format(
        n=report.moved, source=shown_from, dest=shown_to
    )
    if report.already_there:
        line += _(" ({n} were there already)").format(n=report.already_there)
    out_console.print(line, markup=False)
    for refused in report.refused:
        err_console.print(
            _("{refused}; left in {source} (moving it would pay for the frame twice)").format(
                refused=refused, source=shown_from
            ),
            markup=False,
        )
    if report.busy:
        err_console.print(
            _(
                "{n} busy in another process, left in {source}: {names}; "
                "run migrate again when it is idle"
            ).format(n=len(report.busy), source=shown_from, names=", ".join(report.busy[:5])),
            markup=False,
        )
    sys.exit(1 if report.busy or report.refused else 0)
