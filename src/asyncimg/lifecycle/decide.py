"""What a check pass does with each answer: pure decisions, no I/O, tested directly.

The check pass (check.py) asks these functions and then applies the answer through
the state machine; nothing here touches disk or network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asyncimg.lifecycle.download import DownloadAbandoned, ImageCheckFailed
from asyncimg.protocol.client import Result, TaskStatus
from asyncimg.protocol.errors import AsyncImgError, AuthError, ConcurrencyLimited, ConfigError
from asyncimg.store.record import TaskRecord
from asyncimg.store.states import TaskState

IN_FLIGHT = (TaskState.SUBMITTED, TaskState.PROCESSING)


@dataclass(frozen=True)
class Decision:
    """Where a task goes next. `state=None` keeps the current state (errors are still noted)."""

    state: TaskState | None
    download: bool = False
    error: AsyncImgError | None = None

    @property
    def fails(self) -> bool:
        return self.state is TaskState.FAILED


KEEP = Decision(state=None)


def state_for_status(status: TaskStatus) -> TaskState:
    """The guide's states for the API's in-progress statuses."""
    if status is TaskStatus.IN_QUEUE:
        return TaskState.SUBMITTED
    return TaskState.PROCESSING


def after_poll(result: Result) -> Decision:
    """A poll answered with code 10000."""
    problem = result.error()
    if problem is not None:
        return Decision(TaskState.FAILED, error=problem)
    if result.status is TaskStatus.DONE:
        return Decision(None, download=True)
    return Decision(state_for_status(result.status))


def is_setup_problem(error: AsyncImgError) -> bool:
    """Credentials, clock, token or permission: wrong for every task alike, not this one's."""
    return isinstance(error, AuthError | ConfigError)


def after_error(error: AsyncImgError) -> Decision:
    """A poll or download of an accepted task raised.

    Waiting-can-help errors never fail a task, and neither do setup problems: failing an
    accepted task would lose its result and `retry` would pay for it again.
    """
    if error.retryable or is_setup_problem(error):
        return Decision(None, error=error)
    return Decision(TaskState.FAILED, error=error)


def after_download_error(error: AsyncImgError, failures: int, limit: int) -> Decision:
    """A done task's images could not be fetched or verified, `failures` passes running.

    Corrupt bytes every time mean the result itself is broken: after `limit` such passes
    the task fails with "resubmit" advice instead of being downloaded forever.
    """
    if isinstance(error, ImageCheckFailed) and failures >= limit:
        abandoned = DownloadAbandoned(
            f"{error.message} ({failures} downloads in a row)",
            code=error.code,
            request_id=error.request_id,
        )
        return Decision(TaskState.FAILED, error=abandoned)
    return after_error(error)


def after_submit_error(error: AsyncImgError) -> Decision:
    """A submit raised: limits and outages leave it queued (pending); the rest fail it."""
    if error.retryable or isinstance(error, ConcurrencyLimited):
        return Decision(TaskState.PENDING, error=error)
    return Decision(TaskState.FAILED, error=error)


def failure_reason(error: AsyncImgError) -> str:
    """One line for the user: what happened and what to do."""
    text = str(error)
    return f"{text} — {error.hint}" if error.hint else text


def pending_in_order(records: Iterable[TaskRecord]) -> list[TaskRecord]:
    """The local queue: oldest first, so a chapter's frames go out in the order given."""
    pending = [r for r in records if r.status is TaskState.PENDING]
    return sorted(pending, key=lambda r: (r.created_at, r.local_id))


def submit_budget(in_flight: int, limit: int | None) -> int | None:
    """How many pending tasks to try this pass: all (None) unless a local cap is configured.

    With no cap the service's 50430 is the signal: the pass stops submitting at the first
    concurrency refusal (see `stop_submitting`).
    """
    if limit is None:
        return None
    return max(0, limit - in_flight)


def stop_submitting(error: AsyncImgError) -> bool:
    """After this submit error, the rest of the queue waits for the next pass."""
    return error.retryable or isinstance(error, ConcurrencyLimited) or is_setup_problem(error)


def in_flight(records: Sequence[TaskRecord]) -> list[TaskRecord]:
    return [r for r in records if r.status in IN_FLIGHT and r.task_id]
