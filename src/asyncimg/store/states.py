"""The task state machine, written once: states, the allowed moves, and the one way to move.

Every status change in asyncimg goes through :func:`transition`, except the three
revivals (:data:`REVIVALS`), which only :func:`retry_record`, :func:`resubmit_unconfirmed`
and :func:`refetch_record` make, each keeping the earlier attempt in ``history``. Records
are frozen pydantic models, so ``record.status = ...`` raises; every move re-validates the
whole record, so it can never produce a record that would not load again. Pure: no I/O,
time comes in as ``now``.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from asyncimg.protocol.errors import AsyncImgError

if TYPE_CHECKING:
    from asyncimg.store.record import ResultFile, TaskRecord


class TaskState(StrEnum):
    """Where a task stands. The values are the guide's ``status`` strings (plus ``pending``)."""

    PENDING = "pending"
    """Recorded locally, not yet accepted by the API (queued, or waiting for a retry)."""
    UNCONFIRMED = "unconfirmed"
    """A submit was sent but its answer never reached the record (no reply, a timeout, a
    garbled reply, a crash or a failed write): the API may have created a billed task.
    Resubmitted automatically only within ``max_unconfirmed_resubmits``."""
    SUBMITTED = "submitted"
    """The API accepted it and gave a task_id; not yet seen running."""
    PROCESSING = "processing"
    """The API reports it is being generated."""
    COMPLETED = "completed"
    """Images downloaded and verified. Final."""
    FAILED = "failed"
    """Gave up; ``last_error`` says why. Final for :func:`transition`: only
    ``retry_record`` (back to pending) and ``refetch_record`` (the same task polled again)
    revive it."""


_S = TaskState

#: The moves :func:`transition` makes. A same-state entry lets a caller record a new
#: ``last_error``. processing → submitted exists because the API may report ``in_queue``
#: again after ``generating`` (and polls can arrive out of order); unconfirmed → submitted
#: is `adopt` finding the task. Completed is final; so is failed, but for :data:`REVIVALS`.
TRANSITIONS: Mapping[TaskState, frozenset[TaskState]] = {
    _S.PENDING: frozenset({_S.PENDING, _S.UNCONFIRMED, _S.SUBMITTED, _S.PROCESSING, _S.FAILED}),
    _S.UNCONFIRMED: frozenset({_S.UNCONFIRMED, _S.SUBMITTED, _S.PROCESSING}),
    _S.SUBMITTED: frozenset({_S.SUBMITTED, _S.PROCESSING, _S.COMPLETED, _S.FAILED}),
    _S.PROCESSING: frozenset({_S.SUBMITTED, _S.PROCESSING, _S.COMPLETED, _S.FAILED}),
    _S.FAILED: frozenset(),
    _S.COMPLETED: frozenset(),
}

#: The moves that start an ended or unknown attempt again, which :func:`transition`
#: refuses: failed / unconfirmed → pending is a resubmission (:func:`retry_record`, or
#: :func:`resubmit_unconfirmed` within the budget), failed → submitted a refetch of a result
#: the API still holds (:func:`refetch_record`, `retry --output`), never a new submission.
#: Each keeps the earlier attempt in ``history``: the evidence that a frame may have been
#: billed before (`list`, `show`, the gallery, manifests and the stores' reconciliation
#: read it), which a plain move would drop.
REVIVALS: Mapping[TaskState, frozenset[TaskState]] = {
    _S.PENDING: frozenset(),
    _S.UNCONFIRMED: frozenset({_S.PENDING}),
    _S.SUBMITTED: frozenset(),
    _S.PROCESSING: frozenset(),
    _S.FAILED: frozenset({_S.PENDING, _S.SUBMITTED}),
    _S.COMPLETED: frozenset(),
}

#: States in which the record must carry the task_id the API gave it.
NEEDS_TASK_ID: frozenset[TaskState] = frozenset({_S.SUBMITTED, _S.PROCESSING, _S.COMPLETED})
#: States in which the record must not carry one (the API has not given one, as far as we know).
NO_TASK_ID: frozenset[TaskState] = frozenset({_S.PENDING, _S.UNCONFIRMED})

# The state sets every module uses, defined once.
#: Accepted by the API and not finished: these are polled.
IN_FLIGHT: frozenset[TaskState] = frozenset({_S.SUBMITTED, _S.PROCESSING})
#: Waiting to be sent (the local queue).
QUEUED: frozenset[TaskState] = frozenset({_S.PENDING})
#: Final: nothing more happens without the user.
FINISHED: frozenset[TaskState] = frozenset({_S.COMPLETED, _S.FAILED})
#: Not final. An unconfirmed task is unfinished, though it may be waiting for the user
#: (see `lifecycle.decide.waits_for_user`).
UNFINISHED: frozenset[TaskState] = frozenset(TaskState) - FINISHED

#: Fields only :func:`transition` itself may set (identity and bookkeeping); ``history``
#: grows only by a revival, one attempt at a time, and is never rewritten.
_MANAGED = frozenset(
    {"status", "updated_at", "local_id", "schema_version", "created_at", "history"}
)


class IllegalTransition(AsyncImgError):
    """A status change the table forbids; a bug in the caller, never retried."""

    def __init__(self, task: str, old: TaskState, new: TaskState) -> None:
        super().__init__(f"task {task}: cannot go from {old.value} to {new.value}")
        self.task = task
        self.old = old
        self.new = new


def can_transition(old: TaskState, new: TaskState) -> bool:
    """Whether :func:`transition` allows ``old`` → ``new`` (a revival is not allowed)."""
    return new in TRANSITIONS[old]


def is_revival(old: TaskState, new: TaskState) -> bool:
    """Whether ``old`` → ``new`` is one of the :data:`REVIVALS`."""
    return new in REVIVALS[old]


def transition(
    record: TaskRecord, new_state: TaskState, *, now: float, **changes: Any
) -> TaskRecord:
    """A new record in ``new_state`` with ``changes`` applied and ``updated_at = now``.

    Raises :class:`IllegalTransition` if :data:`TRANSITIONS` forbids the move (a revival
    included: see :data:`REVIVALS`), ``TypeError`` for a change to an unknown or managed
    field (a typo must not become a silent extra field), and pydantic's
    ``ValidationError`` if the result breaks a record invariant (e.g. ``submitted``
    without a task_id). Moving to ``completed`` fills ``completed_time`` with ``now``
    unless given.
    """
    return _move(record, TaskState(new_state), now, changes)


def _move(
    record: TaskRecord,
    new: TaskState,
    now: float,
    changes: dict[str, Any],
    earlier: dict[str, Any] | None = None,
) -> TaskRecord:
    """:func:`transition`'s work. Given `earlier` (the attempt being ended, as a
    ``history`` entry: only the revival functions pass one), the move must be one of
    :data:`REVIVALS` instead of :data:`TRANSITIONS`, and `earlier` is appended to
    ``history``: a revival cannot happen without its evidence."""
    old = TaskState(record.status)
    if not (can_transition(old, new) if earlier is None else is_revival(old, new)):
        raise IllegalTransition(record.task_id or record.local_id, old, new)
    fields = type(record).model_fields
    unknown = sorted(k for k in changes if k not in fields)
    if unknown:
        raise TypeError(f"transition: unknown record field(s) {', '.join(unknown)}")
    managed = sorted(k for k in changes if k in _MANAGED)
    if managed:
        raise TypeError(f"transition: {', '.join(managed)} cannot be changed by the caller")
    if new is TaskState.COMPLETED and changes.get("completed_time") is None:
        changes["completed_time"] = now
    data = record.model_dump()
    data.update(changes)
    data["status"] = new
    data["updated_at"] = now
    if earlier is not None:
        data["history"] = [*data["history"], earlier]
    return type(record).model_validate(data)


def complete(
    record: TaskRecord, *, now: float, results: list[ResultFile], **changes: Any
) -> TaskRecord:
    """`record` completed at `now` with its images written (`results`): its last error and
    its download and stall counters cleared. Raises like :func:`transition`."""
    return transition(
        record,
        TaskState.COMPLETED,
        now=now,
        results=results,
        last_error=None,
        download_failures=0,
        corrupt_since=None,
        stalled_passes=0,
        stalled_since=None,
        **changes,
    )


def _attempt(record: TaskRecord, now: float, **extra: Any) -> dict[str, Any]:
    """The current attempt as a ``history`` entry."""
    return {
        "task_id": record.task_id,
        "submit_time": record.submit_time,
        "status": record.status,
        "last_error": record.last_error,
        "retried_at": now,
        **extra,
    }


_FRESH: dict[str, Any] = {
    "task_id": None,
    "submit_time": None,
    "last_error": None,
    "results": [],
    "completed_time": None,
    "download_failures": 0,
    "corrupt_since": None,
    "stalled_passes": 0,
    "stalled_since": None,
    "submit_started_at": None,
    "kept": [],
}


def retry_record(record: TaskRecord, *, now: float, **changes: Any) -> TaskRecord:
    """A failed or unconfirmed record sent back to pending for a fresh submission.

    The finished attempt (task_id, submit_time, status, last_error) is kept in ``history``
    so nothing about it is lost; the attempt's own fields are cleared and the automatic
    resubmit budget starts again (the user chose to resubmit). ``changes`` amend the
    request at the same time (a new prompt, size, output). Raises
    :class:`IllegalTransition` unless the record is failed or unconfirmed.
    """
    return _back_to_pending(
        record, (TaskState.FAILED, TaskState.UNCONFIRMED), now, unconfirmed_resubmits=0, **changes
    )


def resubmit_unconfirmed(record: TaskRecord, *, now: float) -> TaskRecord:
    """An unconfirmed record queued again automatically: one unit of the budget spent.

    The unknown attempt stays in ``history`` (if the API did create it, it was billed).
    """
    return _back_to_pending(
        record,
        (TaskState.UNCONFIRMED,),
        now,
        unconfirmed_resubmits=record.unconfirmed_resubmits + 1,
    )


def _back_to_pending(
    record: TaskRecord, allowed: tuple[TaskState, ...], now: float, **changes: Any
) -> TaskRecord:
    """`record` (in one of `allowed`) queued again: its attempt kept in ``history``, the
    attempt's own fields cleared, `changes` applied."""
    _require(record, allowed, TaskState.PENDING)
    return _move(record, TaskState.PENDING, now, {**_FRESH, **changes}, _attempt(record, now))


def accept(record: TaskRecord, task_id: str, *, now: float, **changes: Any) -> TaskRecord:
    """The API has a task for this record (its submit was answered, or `adopt` found it):
    submitted under `task_id`, one more accepted attempt, the submit marker cleared."""
    return transition(
        record,
        TaskState.SUBMITTED,
        now=now,
        **{
            "task_id": task_id,
            "submit_time": now,
            "attempts": record.attempts + 1,
            "last_error": None,
            "submit_started_at": None,
            **changes,
        },
    )


def _require(record: TaskRecord, allowed: tuple[TaskState, ...], new: TaskState) -> None:
    if record.status not in allowed:
        _refuse(record, new)


def _refuse(record: TaskRecord, new: TaskState) -> NoReturn:
    raise IllegalTransition(record.task_id or record.local_id, TaskState(record.status), new)


def refetch_record(record: TaskRecord, *, now: float, output_path: str | None = None) -> TaskRecord:
    """A failed task whose result the API still holds, polled and downloaded again.

    No new submission: the same task_id goes back in flight (optionally to a new
    ``output_path``). Raises :class:`IllegalTransition` unless failed with a task_id.
    """
    if record.task_id is None:
        _refuse(record, TaskState.SUBMITTED)
    _require(record, (TaskState.FAILED,), TaskState.SUBMITTED)
    # The same task, not a new one: its id, and its images kept in storage, stay.
    kept = ("task_id", "submit_time", "submit_started_at", "kept")
    changes: dict[str, Any] = {k: v for k, v in _FRESH.items() if k not in kept}
    if output_path is not None:
        changes["output_path"] = output_path
        changes["filename"] = Path(output_path).name
    return _move(record, TaskState.SUBMITTED, now, changes, _attempt(record, now, refetched=True))
