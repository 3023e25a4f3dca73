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
# The index is stored by column (one JSON array per field, parsed several times faster
# than one array per record); each column's allowed JSON types. An index with other columns
# (another version's) is rebuilt.
_COLUMNS: dict[str, tuple[type, ...]] = {
    "name": (str,),
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
    keys = [key for key, _ in entries.values()]
    tasks = [summary for _, summary in entries.values()]
    columns: dict[str, list[Any]] = {
        "name": list(entries),
        "ino": [k[0] for k in keys],
        "size": [k[1] for k in keys],
        "mtime_ns": [k[2] for k in keys],
        "ctime_ns": [k[3] for k in keys],
        "status": [t.status.value for t in tasks],
        "local_id": [t.local_id for t in tasks],
        "task_id": [t.task_id for t in tasks],
        "output_path": [t.output_path for t in tasks],
        "filename": [t.filename for t in tasks],
        "created_at": [t.created_at for t in tasks],
        "updated_at": [t.updated_at for t in tasks],
        "completed_time": [t.completed_time for t in tasks],
        "attempts": [t.attempts for t in tasks],
        "unconfirmed_resubmits": [t.unconfirmed_resubmits for t in tasks],
        "history_task_ids": [list(t.history_task_ids) for t in tasks],
        "history_len": [t.history_len for t in tasks],
        "error": [None if t.last_error is None else list(t.last_error) for t in tasks],
    }
    doc = {"version": INDEX_VERSION, "columns": columns}
    try:
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, as record_to_json allows
        return json.dumps(doc, separators=(",", ":")).encode("ascii")


def load_index(data: bytes, root: Path) -> dict[str, Entry]:
    """The entries of an index file. Anything unexpected in it (not JSON, another version,
    a value of the wrong type) gives none: the index is rebuilt from the records."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return {}
    if not isinstance(doc, dict) or doc.get("version") != INDEX_VERSION:
        return {}
    columns = doc.get("columns")
    if not isinstance(columns, dict) or columns.keys() != _COLUMNS.keys():
        return {}
    names = columns["name"]
    for column, allowed in _COLUMNS.items():
        values = columns[column]
        if type(values) is not list or len(values) != len(names):
            return {}
        if not set(map(type, values)) <= set(allowed):  # exact types: a bool is no int
            return {}
    states = [_FINISHED_BY_VALUE.get(v) for v in columns["status"]]
    history = columns["history_task_ids"]
    errors = columns["error"]
    if (
        None in states
        or not {type(t) for ids in history for t in ids} <= {str}
        or any(e is not None and tuple(map(type, e)) != (str, str, bool) for e in errors)
        or len(set(names)) != len(names)
    ):
        return {}
    keys = zip(
        columns["ino"], columns["size"], columns["mtime_ns"], columns["ctime_ns"], strict=True
    )
    summaries = map(
        RecordSummary._make,
        zip(
            itertools.repeat(root),
            names,
            states,
            columns["local_id"],
            columns["task_id"],
            columns["output_path"],
            columns["filename"],
            columns["created_at"],
            columns["updated_at"],
            columns["completed_time"],
            columns["attempts"],
            columns["unconfirmed_resubmits"],
            map(tuple, history),
            columns["history_len"],
            (None if e is None else ErrorSummary._make(e) for e in errors),
        ),
    )
    return dict(zip(names, zip(keys, summaries, strict=True), strict=True))
