"""`--store URL`: every command works on a shared PostgreSQL store instead of a folder.

The option only sets ``$ASYNCIMG_STORE`` for this process (the same as exporting it), so
the library API, the guide's scripts and every command read the store in one way
(:func:`asyncimg.store.open.store_location`). The URL may carry a password: it is never
printed or written; prefer the standard ``PG*`` variables or ``~/.pgpass`` for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from asyncimg.i18n import _
from asyncimg.store.open import STORE_ENV

F = TypeVar("F", bound=Callable[..., Any])


def _remember(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        from asyncimg.store.pg.store import is_pg_url

        if not is_pg_url(value):
            raise click.BadParameter(
                _(
                    "expected postgresql://[user@]host[:port]/database "
                    "(use --tasks-dir for a folder)"
                )
            )
        os.environ[STORE_ENV] = value


def store_option(command: F) -> F:
    return click.option(
        "--store",
        "store_url",
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_remember,
        metavar="URL",
        help="A shared PostgreSQL store (postgresql://user@host/db) instead of a folder; "
        "default $ASYNCIMG_STORE.",
    )(command)
