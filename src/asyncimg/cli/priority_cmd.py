"""`asyncimg priority FOLDER N --store URL`: a batch that goes before the others."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from asyncimg.cli.emit import err_console, out_console
from asyncimg.cli.store_option import store_option
from asyncimg.i18n import _
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.base import StaleRecord
from asyncimg.store.open import STORE_ENV, open_store


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.argument("priority", type=int)
@store_option
def priority(folder: Path, priority: int) -> None:
    """Frames whose output goes to FOLDER are submitted before every batch of a lower
    priority (default 0). Only on a shared store (--store URL or $ASYNCIMG_STORE)."""
    import os

    from asyncimg.store.pg.store import PgStore  # psycopg only when this command runs

    url = os.environ.get(STORE_ENV, "").strip()
    try:
        store = open_store(url) if url else None
        if not isinstance(store, PgStore):
            err_console.print(
                "asyncimg: "
                + _(
                    "priority needs a shared store: --store postgresql://… "
                    "(a folder's monitor always sends oldest first)"
                ),
                markup=False,
            )
            sys.exit(2)
        batch = str(folder.expanduser().absolute())
        changed = store.set_priority(batch, priority)
    except (AsyncImgError, StaleRecord) as exc:
        err_console.print(f"asyncimg: {exc}", markup=False)
        sys.exit(2)
    if not changed:
        err_console.print(
            "asyncimg: " + _("no frame of the store writes into {batch}").format(batch=batch),
            markup=False,
        )
        sys.exit(1)
    out_console.print(
        _("{batch}: priority {priority} for {n} frames").format(
            batch=batch, priority=priority, n=changed
        ),
        markup=False,
    )
