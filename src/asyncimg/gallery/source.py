"""Where the gallery, the sheet, the manifest and `serve` read records: a tasks folder or a
shared store, read only.

- :func:`every_record`: every task of every machine, in full (a summary from the folder's
  index lacks the prompt, style and characters a card shows). A folder is read the way
  `list --json` reads it (read-only: nothing is created, moved, indexed or quarantined);
  a shared store in one query.
- :class:`Chapter`: one store as these commands see it: its records as frames, how a
  fix command names it, the page's title, where its files go by default.
- The feeds (:func:`feed`) are what `serve` polls: a folder is re-read when its listing
  (names, sizes, mtimes) changed; a shared store hands over only the rows written since
  the last look (by ``seq``) and is re-read whole only when rows were removed.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from asyncimg.gallery.frames import Frame, folder_option, frames_of
from asyncimg.gallery.manifest import MANIFEST_NAME
from asyncimg.store.base import Store
from asyncimg.store.machine import machine_id
from asyncimg.store.record import TaskRecord
from asyncimg.store.store import LoadReport

if TYPE_CHECKING:
    from asyncimg.store.pg.store import PgStore


def every_record(store: Store) -> LoadReport:
    """Every task of every machine, in full (a shared store's `load_all` is only this
    machine's work)."""
    return store.load_everything()


def shared(store: Store) -> PgStore | None:
    """The store as a shared (PostgreSQL) store, or None for a folder."""
    if not callable(getattr(store, "changed_since", None)):
        return None  # not imported for a folder: the folder path stays as quick as it was
    from asyncimg.store.pg.store import PgStore

    return store if isinstance(store, PgStore) else None


Signature = tuple[tuple[str, int, int], ...]


def folder_signature(root: Path) -> Signature:
    """What changes when any record is written, added or removed (cheap: one listdir)."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return ()
    found = []
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith((".json", ".txt")):
            continue
        with contextlib.suppress(OSError):
            stat = entry.stat()
            found.append((entry.name, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(found))


class Feed(Protocol):
    def poll(self) -> list[TaskRecord] | None:
        """Every record, when anything changed since the last call (always on the first);
        else None."""
        ...


@dataclass
class FolderFeed:
    store: Store
    _signature: Signature | None = field(default=None, init=False)

    def poll(self) -> list[TaskRecord] | None:
        signature = folder_signature(self.store.root)
        if signature == self._signature:
            return None
        self._signature = signature
        return self.store.load_all().records


@dataclass
class SharedFeed:
    """Every machine's records, kept current from the rows written since the last look."""

    store: PgStore
    _seq: int = field(default=0, init=False)
    _records: dict[str, TaskRecord] | None = field(default=None, init=False)

    def poll(self) -> list[TaskRecord] | None:
        first = self._records is None
        known = dict(self._records or {})
        changed, self._seq = self.store.changed_since(self._seq, every_machine=True)
        known.update((r.local_id, r) for r in changed)
        removed = self.store.count() != len(known)  # rows deleted leave no seq behind
        if removed:
            everything, self._seq = self.store.changed_since(0, every_machine=True)
            known = {r.local_id: r for r in everything}
        self._records = known
        return list(known.values()) if first or changed or removed else None


def feed(store: Store) -> Feed:
    pg = shared(store)
    return FolderFeed(store) if pg is None else SharedFeed(pg)


@dataclass(frozen=True)
class Chapter:
    """One store as the gallery commands see it."""

    store: Store
    options: str
    """The store as `retry` and the other commands take it: ``--tasks-dir D`` (as the user
    named the folder) or ``--store URL`` (without a password)."""
    title: str
    name: str
    """The store in a message: the folder, or the URL without its password."""
    here: str
    """This machine's id: a completed frame of another machine may have its image there."""
    folder: Path | None
    """The tasks folder; None for a shared store."""

    @classmethod
    def of(cls, store: Store) -> Chapter:
        pg = shared(store)
        if pg is None:
            root = store.root
            project = root.absolute().parent.name or str(root)
            return cls(
                store,
                folder_option(str(root)),
                f"{project} — asyncimg",
                str(root),
                machine_id(),
                root,
            )
        from asyncimg.store.pg.store import redact

        url = redact(pg.url)
        parts = urlsplit(url)
        where = parts.netloc.rsplit("@", 1)[-1] + parts.path  # host:port/database
        return cls(
            store, f"--store {shlex.quote(url)}", f"{where} — asyncimg", url, pg.machine, None
        )

    def default_target(self, name: str) -> Path:
        """Where a written file goes unless --out says: beside the tasks folder, or in the
        current folder for a shared store (it has no folder of its own)."""
        return Path(name) if self.folder is None else self.folder.parent / name

    def manifest_path(self) -> Path:
        """The manifest's default place: in the tasks folder (`monitor` refreshes it there),
        or the current folder for a shared store."""
        return Path(MANIFEST_NAME) if self.folder is None else self.folder / MANIFEST_NAME

    def frames_of(self, records: list[TaskRecord]) -> list[Frame]:
        return frames_of(records, self.options, here=self.here)

    def frames(self) -> list[Frame]:
        return self.frames_of(every_record(self.store).records)
