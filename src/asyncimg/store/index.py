"""A cache of the few fields idle commands need from finished records (`.index`).

A finished record (completed or failed) changes only when the user acts on it, yet every
check pass, `list` and the end-of-run summary used to parse and validate every one of them.
The index maps a record file's name to that file's identity when it was read (inode, size,
mtime and ctime in ns) and a :class:`RecordSummary` of it. A scan trusts an entry only
while the file's identity is unchanged, so a record edited, replaced or rewritten by any
process is read again; unfinished records are never cached.

It is only a cache: records stay the source of truth. A missing, unreadable, foreign or
stale index is rebuilt silently; deleting it costs one full read. It is written atomically
(0600), so two processes writing it leave the last writer's whole file, never a torn one,
and a lost entry only costs a read. No I/O here: the store reads and writes the file.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

from asyncimg.store.record import TaskRecord
from asyncimg.store.states import FINISHED, TaskState

# No `.json` suffix, so that scripts (and tests) that read every `*.json` in the folder as a
# record never meet it.
INDEX_NAME = ".index"
INDEX_VERSION = 1

#: A file changed less than this before the scan that read it is not cached: a same-size
#: rewrite within one file-system timestamp tick (coarse on many systems, 2 s on FAT)
#: would otherwise look unchanged. Such a record is simply read again next time.
SETTLE_NS = 2_000_000_000

#: How a file is recognised as unchanged: (inode, size, mtime_ns, ctime_ns). An atomic
#: rewrite makes a new inode; ctime also moves when `cp -p` or `touch` restore an mtime.
FileKey = tuple[int, int, int, int]

_FINISHED_BY_VALUE = {s.value: s for s in FINISHED}
# The positional layout of one entry and the JSON types each value may have. The names
# are stored in the file, so an index of another layout is rebuilt.
_LAYOUT: dict[str, tuple[type, ...]] = {
    "ino": (int,),
    "size": (int,),
    "mtime_ns": (int,),
    "ctime_ns": (int,),
    "status": (str,),
    "local_id": (str,),
    "task_id": (str, type(None)),
    "output_path": (str,),
    "filename": (str,),
    "created_at": (float,),
    "updated_at": (float,),
    "completed_time": (float, type(None)),
    "attempts": (int,),
    "unconfirmed_resubmits": (int,),
    "history_task_ids": (list,),
    "history_len": (int,),
    "error": (list, type(None)),
}
_FIELDS = list(_LAYOUT)
# Every allowed sequence of exact value types: one set lookup checks a whole row.
_ROW_TYPES = frozenset(itertools.product(*_LAYOUT.values()))


def file_key(st: os.stat_result) -> FileKey:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def settled(key: FileKey, scan_started_ns: int) -> bool:
    """Whether a file with this identity, read by a scan started then, may be cached."""
    return max(key[2], key[3]) < scan_started_ns - SETTLE_NS


class ErrorSummary(NamedTuple):
    """What the idle commands show of a record's ``last_error``."""

    kind: str
    message: str
    resubmittable: bool


class RecordSummary(NamedTuple):
    """One task in brief: what `list`, the pass counts and the summary read, and what the
    store needs to reconcile duplicate files. Field names match :class:`TaskRecord`.

    A named tuple, not a dataclass, because tens of thousands are built per scan.
    """

    root: Path
    name: str
    """The record file's name in ``root``."""
    status: TaskState
    local_id: str
    task_id: str | None
    output_path: str
    filename: str
    created_at: float
    updated_at: float
    completed_time: float | None
    attempts: int
    unconfirmed_resubmits: int
    history_task_ids: tuple[str, ...]
    history_len: int
    last_error: ErrorSummary | None

    @classmethod
    def of(cls, record: TaskRecord, path: Path) -> RecordSummary:
        error = record.last_error
        return cls(
            root=path.parent,
            name=path.name,
            status=TaskState(record.status),
            local_id=record.local_id,
            task_id=record.task_id,
            output_path=record.output_path,
            filename=record.filename,
            created_at=record.created_at,
            updated_at=record.updated_at,
            completed_time=record.completed_time,
            attempts=record.attempts,
            unconfirmed_resubmits=record.unconfirmed_resubmits,
            history_task_ids=tuple(a.task_id for a in record.history if a.task_id),
            history_len=len(record.history),
            last_error=(
                None
                if error is None
                else ErrorSummary(error.kind, error.message, error.resubmittable)
            ),
        )

    @property
    def path(self) -> Path:
        return self.root / self.name

    @property
    def progress(self) -> tuple[int, bool, int, float]:
        """Orders copies of one task exactly as the store's ``_progress`` orders records."""
        return (self.history_len, self.task_id is not None, self.attempts, self.updated_at)


Entry = tuple[FileKey, RecordSummary]


def dump_index(entries: dict[str, Entry]) -> bytes:
    """The index file's bytes for these entries (finished records only)."""
    rows: dict[str, list[Any]] = {}
    for name, (key, s) in entries.items():
        rows[name] = [
            *key,
            s.status.value,
            s.local_id,
            s.task_id,
            s.output_path,
            s.filename,
            s.created_at,
            s.updated_at,
            s.completed_time,
            s.attempts,
            s.unconfirmed_resubmits,
            list(s.history_task_ids),
            s.history_len,
            None if s.last_error is None else list(s.last_error),
        ]
    doc = {"version": INDEX_VERSION, "fields": _FIELDS, "entries": rows}
    try:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as record_to_json allows
        return json.dumps(doc, separators=(",", ":")).encode("ascii")


def load_index(data: bytes, root: Path) -> dict[str, Entry]:
    """The entries of an index file; an unreadable or foreign one gives none (rebuilt),
    and an entry that does not make sense is left out (its record is read instead)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return {}
    if (
        not isinstance(doc, dict)
        or doc.get("version") != INDEX_VERSION
        or doc.get("fields") != _FIELDS
        or not isinstance(doc.get("entries"), dict)
    ):
        return {}
    out: dict[str, Entry] = {}
    for name, row in doc["entries"].items():
        entry = _entry(root, name, row)
        if entry is not None:
            out[name] = entry
    return out


def _entry(root: Path, name: str, row: Any) -> Entry | None:
    """One entry, every value's type checked (by exact type, so a bool is no int)."""
    if type(row) is not list or tuple(map(type, row)) not in _ROW_TYPES:
        return None
    (ino, size, mtime, ctime, status, local_id, task_id, output_path, filename) = row[:9]
    (created, updated, completed, attempts, resubmits, history, history_len, error) = row[9:]
    state = _FINISHED_BY_VALUE.get(status)
    if state is None or not all(type(t) is str for t in history):
        return None
    last_error = None
    if error is not None:
        if tuple(map(type, error)) != (str, str, bool):
            return None
        last_error = ErrorSummary(*error)
    summary = RecordSummary(
        root,
        name,
        state,
        local_id,
        task_id,
        output_path,
        filename,
        created,
        updated,
        completed,
        attempts,
        resubmits,
        tuple(history),
        history_len,
        last_error,
    )
    return (ino, size, mtime, ctime), summary
