"""What a check pass does with each answer: pure decisions, no I/O, tested directly.

The check pass (check.py) asks these functions and then applies the answer through
the state machine; nothing here touches disk or network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from asyncimg.i18n import _
from asyncimg.lifecycle.download import DownloadAbandoned, ImageCheckFailed, SaveFailed
from asyncimg.protocol.client import Result, TaskStatus
from asyncimg.protocol.errors import (
    AsyncImgError,
    AuthError,
    ConcurrencyLimited,
    ConfigError,
    NoProgress,
    ReplyUnreadable,
    RequestRefused,
)
from asyncimg.protocol.retry import submit_outcome_unknown
from asyncimg.store.record import TaskRecord
from asyncimg.store.states import IN_FLIGHT, TaskState

# An accepted task whose polls make no progress (no data, an unknown status, an image URL
# that will not download) fails only after this many polls in a row *and* this long, so a
# short outage never gives up a paid image, and `monitor` still always ends.
MAX_STALLED_PASSES = 10
MIN_STALLED_S = 600.0

# A done task whose image fails the image checks (truncated, corrupt, too many pixels) is
# fetched again, each time from a fresh poll, until both of these have passed since the first
# corrupt download of the run: then the result itself is broken and the frame fails, with the
# command that resubmits it. A CDN glitch of a few seconds never costs a second bill.
MAX_CORRUPT_DOWNLOADS = 3
MIN_CORRUPT_S = 60.0
# Passes far apart (`check` from cron): corrupt twice this long apart fails the frame too,
# rather than waiting for a third download until the service forgets the task (~12 h).
MAX_CORRUPT_S = 3600.0
# The scheduler refetches a corrupt image after its floor, doubling per corrupt download up
# to this: about seven downloads before MIN_CORRUPT_S has passed, not one per second.
MAX_REFETCH_DELAY_S = 30.0


@dataclass(frozen=True)
class Decision:
    """Where a task goes next. `state=None` keeps the current state (errors are still noted).

    `stalled`: this poll made no progress (counted toward `MAX_STALLED_PASSES`); `halt`: a
    setup problem that every other task would hit too, so the pass stops.
    """

    state: TaskState | None
    download: bool = False
    error: AsyncImgError | None = None
    stalled: bool = False
    halt: bool = False

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
    """Credentials, clock, token, permission, or our request refused as malformed: wrong for
    every task alike, never one task's fault, so it never changes a task's state."""
    return isinstance(error, AuthError | ConfigError | RequestRefused)


def is_poll_setup_problem(error: AsyncImgError) -> bool:
    """A setup problem, or 50200 on a poll: the poll body is ours, so a parameter error in
    answer to it says nothing about the task."""
    return is_setup_problem(error) or error.code == 50200


def after_error(error: AsyncImgError) -> Decision:
    """A poll of an accepted task raised.

    Waiting-can-help errors never fail a task, and neither do setup problems: failing an
    accepted task would lose its result and `retry` would pay for it again. A reply that
    makes no sense counts toward the stall limit (see `after_stall`).
    """
    if is_poll_setup_problem(error):
        if not is_setup_problem(error):  # 50200: say whose request it was
            error = RequestRefused(
                _("the service refused asyncimg's poll as malformed: {message}").format(
                    message=error.message
                ),
                code=error.code,
                request_id=error.request_id,
            )
        return Decision(None, error=error, halt=True)
    if isinstance(error, ReplyUnreadable) and not error.http_status:
        return Decision(None, error=error, stalled=True)
    if error.unrecognised and not error.retryable:
        # A code we do not know is no definitive answer: bounded like a stalled poll.
        return Decision(None, error=error, stalled=True)
    if error.retryable:
        return Decision(None, error=error)
    return Decision(TaskState.FAILED, error=error)


def after_stall(decision: Decision, passes: int, since: float | None, now: float) -> Decision:
    """`decision` (a stalled poll) after `passes` stalled polls in a row, counting this one,
    the first at `since`: it fails the task once both limits are passed."""
    if not decision.stalled or decision.error is None:
        return decision
    started = now if since is None else since
    if passes >= MAX_STALLED_PASSES and now - started >= MIN_STALLED_S:
        gave_up = NoProgress(
            f"no progress in {passes} polls over {int(now - started)} s: {decision.error.message}",
            code=decision.error.code,
            request_id=decision.error.request_id,
        )
        return Decision(TaskState.FAILED, error=gave_up, stalled=True)
    return decision


def after_download_error(
    error: AsyncImgError,
    failures: int,
    since: float | None,
    now: float,
    *,
    retry: str = "asyncimg retry",
) -> Decision:
    """A done task's images could not be fetched, verified or written.

    - corrupt bytes: `failures` corrupt downloads in a row (this one counted), the first at
      `since`. Fetched again until :func:`corrupt_gives_up`; then the result itself is
      broken and the frame fails, resubmittable, its message ending with `retry` (the
      command that resubmits it);
    - the image cannot be written (a folder at the path, a name too long): the task fails
      at once with the reason; `retry --output` fetches it again without resubmitting;
    - anything else (a URL that answers 403/404, a dropped connection): the next poll
      hands out fresh URLs, counted as a stalled poll.
    """
    if isinstance(error, ImageCheckFailed):
        first = now if since is None else since
        if corrupt_gives_up(failures, first, now):
            abandoned = DownloadAbandoned(
                f"the image was corrupt in {failures} downloads over {int(now - first)} s "
                f"(last: {error.message}); the service's result itself is broken: resubmit "
                f"it (billed again) with: {retry}",
                code=error.code,
                request_id=error.request_id,
            )
            return Decision(TaskState.FAILED, error=abandoned)
        return Decision(None, error=error)
    if isinstance(error, SaveFailed):
        return Decision(TaskState.FAILED, error=error)
    if is_setup_problem(error):
        return Decision(None, error=error, halt=True)
    return Decision(None, error=error, stalled=True)


def corrupt_gives_up(failures: int, since: float, now: float) -> bool:
    """Whether `failures` corrupt downloads in a row, the first at `since`, mean the result
    itself is broken: MAX_CORRUPT_DOWNLOADS and MIN_CORRUPT_S both passed, or a second one
    MAX_CORRUPT_S after the first."""
    elapsed = now - since
    if failures >= MAX_CORRUPT_DOWNLOADS and elapsed >= MIN_CORRUPT_S:
        return True
    return failures >= 2 and elapsed >= MAX_CORRUPT_S


def refetch_delay(failures: int, floor: float) -> float:
    """How long the scheduler waits before polling a done task whose image failed again:
    its floor, doubled per corrupt download after the first, at most MAX_REFETCH_DELAY_S
    (never below the floor)."""
    if failures <= 1:
        return floor
    return max(floor, min(floor * 2.0 ** (failures - 1), MAX_REFETCH_DELAY_S))


def after_submit_error(error: AsyncImgError) -> Decision:
    """A submit raised.

    - a setup problem: the state stays (the API never accepted it), the pass stops;
    - an unknown outcome (no reply, a timeout after sending): `unconfirmed`, since the API
      may have created and billed the task;
    - limits and outages that certainly created nothing: stays queued (`pending`);
    - the API's definitive refusal of this frame: `failed`.
    """
    if is_setup_problem(error):
        return Decision(None, error=error, halt=True)
    if submit_outcome_unknown(error):
        return Decision(TaskState.UNCONFIRMED, error=error)
    if error.retryable or isinstance(error, ConcurrencyLimited):
        return Decision(TaskState.PENDING, error=error)
    return Decision(TaskState.FAILED, error=error)


def failure_reason(error: AsyncImgError) -> str:
    """One line for the user: what happened and what to do."""
    text = str(error)
    return f"{text} — {error.hint}" if error.hint else text


def may_resubmit_unconfirmed(record: TaskRecord, budget: int) -> bool:
    """Whether an unconfirmed record may be resubmitted automatically (once per unit of
    `budget`, the config's `max_unconfirmed_resubmits`), never once per pass."""
    return record.status is TaskState.UNCONFIRMED and record.unconfirmed_resubmits < budget


def waits_for_user(record: TaskRecord, budget: int) -> bool:
    """An unconfirmed record whose automatic resubmits are spent: only the user can decide
    (`asyncimg retry` to pay again, `asyncimg adopt` if its task id turns up)."""
    return record.status is TaskState.UNCONFIRMED and not may_resubmit_unconfirmed(record, budget)


def submit_queue(records: Iterable[TaskRecord], unconfirmed_budget: int) -> list[TaskRecord]:
    """What to send, oldest first: pending records, and unconfirmed ones within the budget."""
    queue = [
        r
        for r in records
        if r.status is TaskState.PENDING or may_resubmit_unconfirmed(r, unconfirmed_budget)
    ]
    return sorted(queue, key=lambda r: (r.created_at, r.local_id))


def submit_budget(in_flight: int, limit: int | None) -> int | None:
    """How many queued tasks to try this pass: all (None) unless a local cap is configured.

    With no cap the service's 50430 is the signal: the pass stops submitting at the first
    concurrency refusal (see `stop_submitting`).
    """
    if limit is None:
        return None
    return max(0, limit - in_flight)


def stop_submitting(error: AsyncImgError) -> bool:
    """After this submit error, the rest of the queue waits for the next pass."""
    return (
        error.retryable
        or isinstance(error, ConcurrencyLimited)
        or is_setup_problem(error)
        or submit_outcome_unknown(error)
    )


def in_flight(records: Sequence[TaskRecord]) -> list[TaskRecord]:
    return [r for r in records if r.status in IN_FLIGHT and r.task_id]
