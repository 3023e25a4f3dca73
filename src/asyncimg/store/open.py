"""Which store a command uses: a folder (the default), or PostgreSQL by URL.

``--store URL`` (or ``$ASYNCIMG_STORE``) names a ``postgresql://`` store; ``--tasks-dir``
names a folder and wins when both are given. Nothing here prints a URL with its password.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from asyncimg.store.base import Store
from asyncimg.store.store import TaskStore

if TYPE_CHECKING:
    from asyncimg.lifecycle.shared import Gate

STORE_ENV = "ASYNCIMG_STORE"


def store_location(tasks_dir: str | Path | None, default_dir: str | Path) -> str | Path:
    """The folder or URL a command works on."""
    if tasks_dir is not None:
        return Path(tasks_dir)
    given = os.environ.get(STORE_ENV, "").strip()
    return given or Path(default_dir)


def open_store(location: str | Path, *, read_only: bool = False) -> Store:
    """The store at `location`: a PostgreSQL URL or a folder (`read_only`: for commands
    that only look; the folder store then never creates, moves or writes a file)."""
    if isinstance(location, str):
        from asyncimg.store.pg.store import is_pg_url

        if is_pg_url(location):
            from asyncimg.store.pg.store import PgStore

            return PgStore(location)
    return TaskStore(Path(location), read_only=read_only)


def describe(store: Store) -> str:
    """How to name this store on a command line: `--tasks-dir D` or `--store URL`."""
    named = getattr(store, "describe", None)
    if callable(named):
        return str(named())
    return f"--tasks-dir {store.root.absolute()}"


def shared_gate(store: Store) -> Gate | None:
    """What a monitor shares with the others on this store: None for a folder."""
    from asyncimg.store.pg.store import PgStore

    if not isinstance(store, PgStore):
        return None
    from asyncimg.store.pg.gate import SharedGate

    return SharedGate(store)
