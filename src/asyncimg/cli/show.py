"""`asyncimg show KEY`: one task, found by task id, output path or file name, for people.

KEY is tried as a task id (or local id, or a prefix of either, or an earlier task id),
then as an output path (as typed in the record, or the same file from here), then as a
file name (`001.png` finds `frames/001.png`). Several records for one file: the newest.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from asyncimg.lifecycle.validate import output_key
from asyncimg.store.record import TaskRecord
from asyncimg.store.store import AmbiguousTaskKey, TaskNotFound, TaskStore


def find_record(store: TaskStore, key: str) -> TaskRecord:
    """The record `key` names; TaskNotFound / AmbiguousTaskKey (one line) otherwise."""
    try:
        return store.get(key)
    except TaskNotFound:
        pass
    name = Path(key).name
    if not name:
        raise TaskNotFound(f"no task matches {key!r} in {store.root}")
    candidates = [t for t in store.scan().tasks if t.filename == name or t.output_path == key]
    records = [r for r in (store.read(t.path) for t in candidates) if r is not None]
    if os.sep in key or "/" in key:
        wanted = os.path.normpath(Path(key).expanduser().absolute())
        exact = [r for r in records if r.output_path == key or output_key(r) == wanted]
        records = exact or [r for r in records if r.output_path.endswith(key)]
    if not records:
        raise TaskNotFound(f"no task matches {key!r} (task id, output path or file name)")
    files = {output_key(r) for r in records}
    if len(files) > 1:
        shown = ", ".join(sorted(r.output_path for r in records)[:5])
        raise AmbiguousTaskKey(
            f"{key!r} matches {len(files)} different files: {shown}; give the path"
        )
    return max(records, key=lambda r: (r.created_at, r.updated_at))


def when(stamp: float | None) -> str:
    """A time as the user's clock shows it, with the zone."""
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stamp)).strip()


def describe(record: TaskRecord) -> list[str]:
    """The lines `show` prints: what, where, when, why, and every earlier attempt."""
    rows: list[tuple[str, str]] = []
    rows.append(("task", record.task_id or "(not accepted yet)"))
    rows.append(("local id", record.local_id))
    rows.append(("status", record.status.value))
    path = record.resolve(record.output_path)
    rows.append(("output", record.output_path + ("" if path.exists() else "  (not on disk)")))
    if str(path) != record.output_path:
        rows.append(("  file", str(path)))
    for extra in record.results:
        rows.append(("  image", f"{extra.path}  {extra.width}x{extra.height}, {extra.bytes} bytes"))
    rows.append(("prompt", record.prompt))
    if record.full_prompt != record.prompt:
        rows.append(("sent as", record.full_prompt))
    rows.append(("style", record.style or "-"))
    width, height = record.params.get("width"), record.params.get("height")
    size = f"  {width}x{height}" if width and height else ""
    rows.append(("model", f"{record.req_key}{size}"))
    for i, ref in enumerate(record.character_images):
        rows.append(("character" if i == 0 else "", ref))
    rows.append(("created", when(record.created_at)))
    rows.append(("submitted", when(record.submit_time)))
    if record.completed_time is not None:
        rows.append(("completed", when(record.completed_time)))
    rows.append(("updated", when(record.updated_at)))
    if record.last_error is not None:
        error = record.last_error
        code = f" (code {error.code})" if error.code is not None else ""
        rows.append(("error", f"{error.kind}: {error.message}{code}"))
        if error.request_id:
            rows.append(("request id", error.request_id))
    if record.working_dir:
        rows.append(("folder", record.working_dir))
    lines = [f"{label:<11} {value}" for label, value in rows]
    if record.history:
        lines.append(f"history     {len(record.history)} earlier attempt(s):")
        for i, attempt in enumerate(record.history, start=1):
            why = f" — {attempt.last_error.message}" if attempt.last_error else ""
            lines.append(
                f"  {i}. {when(attempt.submit_time)}  task {attempt.task_id or '-'}  "
                f"{attempt.status.value}{why} (retried {when(attempt.retried_at)})"
            )
    return lines
