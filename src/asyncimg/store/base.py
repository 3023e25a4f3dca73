"""What callers use of a task store: the folder (`TaskStore`) and PostgreSQL (`PgStore`).

A structural interface (``typing.Protocol``): the folder store satisfies it unchanged, so
single-machine users keep the guide's layout. Semantics every implementation keeps:

- ``save`` writes the whole record atomically; a store that can see other writers
  (PostgreSQL) refuses a save over a version it did not read (:class:`StaleRecord`) and a
  status change the state machine forbids.
- ``lock`` never blocks: it yields False when someone else handles the task (another
  process, another machine, or a task this machine may not work on); callers skip it.
- ``load_all`` is what *this* machine works on; ``scan`` is every task (``list``, the
  summary, the gallery), finished ones possibly in brief.
- ``outputs_lock`` is held from the rerun check ("has this output file a record
  already?") through the first save of the new records, so two submits of one batch
  (or two `gen_image.py` calls for one file) never both find "no record" and both pay.
  Like ``lock`` it never blocks; the caller waits and tries again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from pathlib import Path
from typing import Protocol, runtime_checkable

from asyncimg.store.record import TaskRecord
from asyncimg.store.store import LoadReport, ScanReport


class StaleRecord(OSError):
    """A save over a version of the record that another process or machine has moved on.

    An ``OSError`` on purpose: a save that fails after the API accepted a task goes down
    the same path as a full disk (the task id and the `asyncimg adopt` command are shown).
    """


@runtime_checkable
class Store(Protocol):
    """The task records, wherever they live."""

    root: Path
    """The folder store's folder; for a shared store, a local name its records' summaries
    carry (not created)."""

    def save(self, record: TaskRecord) -> Path: ...

    async def save_async(self, record: TaskRecord) -> Path:
        """``save`` from a coroutine: off the event loop where the store can (the folder
        store's two fsyncs per save take a few ms each, and a chapter makes about five saves
        a frame; other tasks' polls and submits go on meanwhile), on it where it cannot."""
        ...

    def delete(self, record: TaskRecord) -> None: ...

    def archive(self, record: TaskRecord, dest_dir: Path | str) -> Path: ...

    def load_all(self) -> LoadReport: ...

    def load_everything(self) -> LoadReport:
        """Every machine's records in full (a folder's are all its own: its `load_all`)."""
        ...

    def scan(self) -> ScanReport: ...

    def reload(self, record: TaskRecord) -> TaskRecord | None: ...

    def read(self, path: Path) -> TaskRecord | None: ...

    def get(self, key: str) -> TaskRecord: ...

    def lock(self, record: TaskRecord) -> contextlib.AbstractContextManager[bool]: ...

    def outputs_lock(self, keys: Collection[str]) -> contextlib.AbstractContextManager[bool]:
        """Try to take the exclusive lock on these output files (one lock per output
        folder, ``store.locks.output_slots``): True while held, False (holding nothing) if
        another process, machine or coroutine holds part of it. Released when the block
        ends or the holder dies."""
        ...

    def task_id_owner(self, task_id: str, local_id: str) -> Path | None: ...
