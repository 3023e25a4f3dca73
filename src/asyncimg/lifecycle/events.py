"""What happened to a frame, as one event: a line for people, a JSON object for programs.

`submit`, `check` and `monitor` tell the user about each frame as it moves; with `--json`
the same events are printed as JSON lines (see README "Machine-readable output"), whose
field names are a compatibility promise. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asyncimg.i18n import _
from asyncimg.protocol.errors import (
    AsyncImgError,
    ConcurrencyLimited,
    ConnectFailed,
    NetworkError,
    RateLimited,
    ServerError,
)
from asyncimg.store.record import TaskRecord

#: Bumped only when an event's existing field changes meaning; new fields may appear.
EVENTS_VERSION = 1

#: Every `event` value a command may print.
KINDS = (
    "start",  # the first line: {"event": "start", "command": ..., "version": EVENTS_VERSION}
    "problem",  # submit: a line of the batch that cannot be submitted (where, field, message)
    "plan",  # submit --dry-run: what one frame would do (action submit/skip, size, images)
    "frame",  # submit: one frame's outcome (submitted, queued, unconfirmed, rejected, skipped)
    "submitted",  # check/monitor: a queued frame was accepted
    "completed",  # its image is on disk
    "failed",  # the API's definitive answer (or an image that cannot be written)
    "unconfirmed",  # a submit's answer was lost
    "stuck",  # why frames are not moving (API unreachable, limits, server errors)
    "halted",  # a setup problem stopped the pass (credentials, clock)
    "warning",  # a note about one frame or the folder
    "kept",  # another machine's finished frame kept in object storage for it
    "progress",  # counts while monitoring
    "summary",  # the end of a command: counts and exit status
    "task",  # list/show: one record
)


@dataclass(frozen=True)
class Event:
    """One thing the user is told; `text` is the human line."""

    kind: str
    text: str
    record: TaskRecord | None = None
    error: AsyncImgError | None = None
    fields: tuple[tuple[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"event": self.kind}
        if self.record is not None:
            out.update(frame_fields(self.record))
        if self.error is not None:
            out["error"] = error_fields(self.error)
        out.update(self.fields)
        out["message"] = self.text
        return out


def frame_name(record: TaskRecord) -> str:
    """How an event's text names a frame: its file, else its task id, else its local id."""
    return record.filename or record.task_id or record.local_id


def frame_fields(record: TaskRecord) -> dict[str, Any]:
    """What identifies a frame in every event: its output file, task id, local id, status."""
    return {
        "output_path": record.output_path,
        "filename": record.filename,
        "task_id": record.task_id,
        "local_id": record.local_id,
        "status": record.status.value,
    }


def error_fields(error: AsyncImgError) -> dict[str, Any]:
    return {
        "kind": error.kind,
        "code": error.code,
        "message": error.message,
        "request_id": error.request_id,
        "hint": error.hint or None,
    }


def stuck_reason(error: AsyncImgError) -> str | None:
    """Why frames wait after `error`, in the words the user needs; None when the error is
    about one frame only (a review rejection), not about the way to the API, or is the
    account's QPS / concurrency limit (frames wait for capacity at full speed)."""
    if isinstance(error, ConnectFailed):
        return _("API unreachable: {detail}").format(detail=_detail(error))
    if isinstance(error, NetworkError):
        return _("network problem: {detail}").format(detail=_detail(error))
    if isinstance(error, ConcurrencyLimited | RateLimited):
        return None  # the account's limits: normal at full speed, not a reason to worry
    if isinstance(error, ServerError) and error.retryable:
        return _("API server error: {error}").format(error=error)
    return None


def _detail(error: AsyncImgError) -> str:
    """The message without the action name the client puts in front."""
    text = str(error)
    head, sep, rest = text.partition(" failed: ")
    return rest if sep and head.startswith(("CVSync2Async", "CVGetResult")) else text
