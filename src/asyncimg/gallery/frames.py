"""The chapter as frames: one per output file, in batch order, with what to do about it.

The gallery, the live page, the contact sheet and the manifest all show the same list,
built here from the records alone (pure: no I/O, `resolve` only joins paths).
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from asyncimg.i18n import N_
from asyncimg.lifecycle import download
from asyncimg.lifecycle.validate import output_key
from asyncimg.protocol import errors
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.machine import machine_of
from asyncimg.store.record import TaskRecord
from asyncimg.store.states import TaskState

#: Every error kind a record can name, to find its advice (`hint`) by name.
_ERROR_KINDS: dict[str, type[AsyncImgError]] = {
    kind.__name__: kind
    for module in (errors, download)
    for kind in vars(module).values()
    if isinstance(kind, type) and issubclass(kind, AsyncImgError)
}

UNCONFIRMED_HINT = N_(
    "the submit's answer was lost: the service may have made (and billed) the task; "
    "`asyncimg check` resubmits it within max_unconfirmed_resubmits, `asyncimg adopt "
    "TASK_ID -o PATH` attaches it if you find its task id, the command below pays again"
)

#: Error kinds a new prompt (or other input) fixes, rather than a plain resubmit.
INPUT_KINDS = frozenset({"InputRejected", "InvalidInput"})


@dataclass(frozen=True)
class Frame:
    """One frame of the chapter: the latest record for one output file."""

    record: TaskRecord
    frame_id: str
    image: Path | None
    """The image file (resolved) when the frame is completed, whether or not it is there."""
    fix: str | None
    """The exact command that retries (or fixes) a failed or stuck frame."""
    elsewhere: str | None = None
    """The machine that wrote a completed frame's image when it is not this one (a shared
    store): the file is on that machine's disk unless a folder both mount holds it."""

    @property
    def key(self) -> str:
        """Stable across refreshes (HTML ids, live updates)."""
        return self.record.local_id

    @property
    def status(self) -> TaskState:
        return self.record.status

    @property
    def error(self) -> str | None:
        error = self.record.last_error
        if error is None:
            return None
        code = f" ({error.code})" if error.code not in (None, "") else ""
        return f"{error.message}{code}"

    @property
    def hint(self) -> str:
        """What to do about the last error, as the error's kind advises ("" if nothing)."""
        if self.status is TaskState.UNCONFIRMED:
            return UNCONFIRMED_HINT
        error = self.record.last_error
        kind = _ERROR_KINDS.get(error.kind) if error is not None else None
        return kind.hint if kind is not None else ""

    @property
    def references(self) -> list[Path]:
        return [self.record.resolve(p) for p in self.record.character_images]


def frame_id(record: TaskRecord) -> str:
    """The line's own id, else `batch file:line`, else the output file's name."""
    if record.frame_id:
        return record.frame_id
    if record.batch_file and record.batch_line:
        return f"{record.batch_file}:{record.batch_line}"
    return record.filename or record.output_path


def latest_per_output(records: Iterable[TaskRecord]) -> list[TaskRecord]:
    """The latest record (by created_at) for each output file: what a rerun would look at.
    On a shared store the same path on two machines is two files (two frames)."""
    latest: dict[tuple[str | None, str], TaskRecord] = {}
    for record in sorted(records, key=lambda r: (r.created_at, r.updated_at, r.local_id)):
        latest[(machine_of(record), output_key(record))] = record
    return list(latest.values())


def batch_order(records: Sequence[TaskRecord]) -> list[TaskRecord]:
    """Frames in the order the user wrote them: each batch file's lines in order (batches
    in the order they were first submitted), single frames by when they were made."""
    first: dict[str, float] = {}
    for r in records:
        if r.batch_file is not None:
            first[r.batch_file] = min(first.get(r.batch_file, math.inf), r.created_at)

    def key(r: TaskRecord) -> tuple[float, str, int, float, str]:
        if r.batch_file is None:
            return (r.created_at, "", 0, r.created_at, r.local_id)
        return (first[r.batch_file], r.batch_file, r.batch_line or 0, r.created_at, r.local_id)

    return sorted(records, key=key)


def folder_option(tasks_dir: str) -> str:
    """How a command names a tasks folder: ``--tasks-dir D`` (quoted for the shell)."""
    return f"--tasks-dir {shlex.quote(tasks_dir)}"


def fix_command(record: TaskRecord, store: str) -> str | None:
    """The command to run for a failed or unconfirmed frame; None for the others. `store`
    names the records' store as an option (``--tasks-dir D``, ``--store URL``).

    A frame the service refused for its input gets the retry with its prompt filled in,
    to edit; everything else the plain retry (which fetches again without resubmitting
    when the service still holds the result).
    """
    if record.status not in (TaskState.FAILED, TaskState.UNCONFIRMED):
        return None
    who = record.task_id or record.local_id[:8]
    folder = f" {store}"
    kind = record.last_error.kind if record.last_error else ""
    if record.status is TaskState.FAILED and kind in INPUT_KINDS:
        return f"asyncimg retry {who} --prompt {shlex.quote(record.prompt)}{folder}"
    return f"asyncimg retry {who}{folder}"


def frames_of(records: Iterable[TaskRecord], store: str, *, here: str | None = None) -> list[Frame]:
    """Every frame of the store, in batch order. `store`: the option that names it (for
    the fix commands); `here`: this machine's id (frames made elsewhere say where)."""
    frames = []
    for record in batch_order(latest_per_output(records)):
        image = None
        elsewhere = None
        if record.status is TaskState.COMPLETED:
            image = record.resolve(record.output_path)  # not results[0].path: a moved
            # project's records still name the output as the user gave it
            owner = machine_of(record)
            elsewhere = owner if owner is not None and owner != here else None
        fix = fix_command(record, store)
        frames.append(Frame(record, frame_id(record), image, fix, elsewhere))
    return frames


def counts(frames: Sequence[Frame]) -> dict[TaskState, int]:
    """How many frames are in each state (every state, zeros included)."""
    return {s: sum(f.status is s for f in frames) for s in TaskState}
