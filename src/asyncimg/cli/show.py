"""`asyncimg show KEY`: one task, found by task id, output path or file name, for people.

KEY is tried as a task id (or local id, or a prefix of either, or an earlier task id),
then as an output path (as typed in the record, or the same file from here), then as a
file name (`001.png` finds `frames/001.png`). Several records for one file: the newest.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.cells import cell_len

from asyncimg.i18n import N_, _
from asyncimg.lifecycle.explain import message_of
from asyncimg.lifecycle.kept import waits_for_pull
from asyncimg.lifecycle.validate import output_key
from asyncimg.store.base import Store
from asyncimg.store.record import TaskRecord
from asyncimg.store.store import AmbiguousTaskKey, TaskNotFound


def find_record(store: Store, key: str) -> TaskRecord:
    """The record `key` names; TaskNotFound / AmbiguousTaskKey (one line) otherwise."""
    try:
        return store.get(key)
    except TaskNotFound:
        pass
    name = Path(key).name
    if not name:
        raise TaskNotFound(_("no task matches {key!r} in {root}").format(key=key, root=store.root))
    candidates = [t for t in store.scan().tasks if t.filename == name or t.output_path == key]
    records = [r for r in (store.read(t.path) for t in candidates) if r is not None]
    if os.sep in key or "/" in key:
        wanted = os.path.normpath(Path(key).expanduser().absolute())
        exact = [r for r in records if r.output_path == key or output_key(r) == wanted]
        records = exact or [r for r in records if r.output_path.endswith(key)]
    if not records:
        raise TaskNotFound(
            _("no task matches {key!r} (task id, output path or file name)").format(key=key)
        )
    files = {output_key(r) for r in records}
    if len(files) > 1:
        shown = ", ".join(sorted(r.output_path for r in records)[:5])
        raise AmbiguousTaskKey(
            _("{key!r} matches {n} different files: {shown}; give the path").format(
                key=key, n=len(files), shown=shown
            )
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
    rows.append((N_("task"), record.task_id or _("(not accepted yet)")))
    rows.append((N_("local id"), record.local_id))
    rows.append((N_("status"), _(record.status.value)))
    path = record.resolve(record.output_path)
    missing = "" if path.exists() else _("  (not on disk)")
    rows.append((N_("output"), record.output_path + missing))
    if str(path) != record.output_path:
        rows.append((N_("  file"), str(path)))
    for extra in record.results:
        size_text = _("{w}x{h}, {n} bytes").format(w=extra.width, h=extra.height, n=extra.bytes)
        rows.append((N_("  image"), f"{extra.path}  {size_text}"))
    for kept in record.kept:
        by = _("kept by {machine}, {when}").format(
            machine=kept.machine or "?", when=when(kept.time)
        )
        rows.append((N_("  in storage"), f"{kept.key}  ({by})"))
    if record.kept and waits_for_pull(record):
        rows.append(
            (N_("  in storage"), _("done at the service, not written here yet: asyncimg pull"))
        )
    rows.append((N_("prompt"), record.prompt))
    if record.full_prompt != record.prompt:
        rows.append((N_("sent as"), record.full_prompt))
    rows.append((N_("style"), record.style or "-"))
    width, height = record.params.get("width"), record.params.get("height")
    size = f"  {width}x{height}" if width and height else ""
    rows.append((N_("model"), f"{record.req_key}{size}"))
    for i, ref in enumerate(record.character_images):
        rows.append((N_("character") if i == 0 else "", ref))
    rows.append((N_("created at"), when(record.created_at)))
    rows.append((N_("submitted at"), when(record.submit_time)))
    if record.completed_time is not None:
        rows.append((N_("completed at"), when(record.completed_time)))
    rows.append((N_("updated"), when(record.updated_at)))
    if record.last_error is not None:
        error = record.last_error
        code = f" (code {error.code})" if error.code is not None else ""
        why = message_of(error.code, error.kind, error.message)
        rows.append((N_("error"), f"{error.kind}: {why}{code}"))
        if error.request_id:
            rows.append((N_("request id"), error.request_id))
    if record.working_dir:
        rows.append((N_("folder"), record.working_dir))
    lines = [_pad(_(label), 13) + " " + value for label, value in rows]
    if record.history:
        lines.append(
            _pad(_("history"), 13)
            + " "
            + _("{n} earlier attempt(s):").format(n=len(record.history))
        )
        for i, attempt in enumerate(record.history, start=1):
            why = f" — {attempt.last_error.message}" if attempt.last_error else ""
            lines.append(
                _("  {i}. {when}  task {task_id}  {status}{why} (retried {retried})").format(
                    i=i,
                    when=when(attempt.submit_time),
                    task_id=attempt.task_id or "-",
                    status=_(attempt.status.value),
                    why=why,
                    retried=when(attempt.retried_at),
                )
            )
    return lines


def _pad(text: str, width: int) -> str:
    """`text` padded to `width` terminal columns (a Chinese character takes two)."""
    return text + " " * max(0, width - cell_len(text))
