"""`asyncimg cancel`: withdraw frames, asking the service (`CVCancelTask`) where it has them.

The service cancels only tasks still `in_queue` (research §5, S8); a task already
generating is refused, and that refusal is recorded on the task, which keeps running.
Best effort: whether a cancelled task is billed is undocumented.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from asyncimg.i18n import N_, _
from asyncimg.lifecycle.decide import is_poll_setup_problem
from asyncimg.lifecycle.explain import plain
from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.base import Store
from asyncimg.store.record import CancelInfo, ErrorInfo, TaskRecord
from asyncimg.store.states import IN_FLIGHT, TaskState, transition
from asyncimg.store.store import AmbiguousTaskKey, TaskNotFound


class Cancelled(AsyncImgError):
    """The frame was withdrawn at the user's request."""

    resubmittable = True
    hint = N_("asyncimg retry TASK submits it again (a new, billed task)")


class Plan(StrEnum):
    """What `cancel` does with a record, by its state."""

    ASK = "ask"  # in flight with a task id: ask the service
    LOCAL = "local"  # pending: never sent, withdraw it here
    UNKNOWN_ID = "unknown_id"  # unconfirmed: the service may have it, under an id we lack
    FINISHED = "finished"  # completed or failed: nothing to cancel


def plan(record: TaskRecord) -> Plan:
    """Pure: what cancelling `record` means."""
    if record.status in IN_FLIGHT and record.task_id:
        return Plan.ASK
    if record.status is TaskState.PENDING and record.submit_started_at is None:
        return Plan.LOCAL
    if record.status in (TaskState.PENDING, TaskState.UNCONFIRMED):
        # A pending record with a submit marker whose lock we hold: its submitter died
        # mid-request, so the service may have it (it is unconfirmed in all but name).
        return Plan.UNKNOWN_ID
    return Plan.FINISHED


@dataclass(frozen=True)
class Outcome:
    key: str
    line: str
    cancelled: bool = False
    could_not_ask: bool = False


async def cancel_tasks(
    store: Store,
    client: VisualClient,
    keys: Sequence[str],
    *,
    clock: Callable[[], float],
) -> list[Outcome]:
    """Cancel each key (a task id, a local id, or a prefix `show` accepts), in order.
    A call that could not be answered (credentials, clock, network) stops at once."""
    outcomes: list[Outcome] = []
    for key in keys:
        outcome = await _cancel_one(store, client, key, clock)
        outcomes.append(outcome)
        if outcome.could_not_ask:
            break
    return outcomes


async def _cancel_one(
    store: Store, client: VisualClient, key: str, clock: Callable[[], float]
) -> Outcome:
    try:
        found = store.get(key)
    except (TaskNotFound, AmbiguousTaskKey) as exc:
        return Outcome(key, f"{key}: {str(exc).strip(chr(39) + chr(34))}")
    with store.lock(found) as held:
        record = store.reload(found) if held else None
        if record is None:
            return Outcome(
                key, _("{key}: busy (another asyncimg is working on it); try again").format(key=key)
            )
        name = f"{record.task_id or record.local_id} ({record.output_path})"
        what = plan(record)
        if what is Plan.FINISHED:
            return Outcome(
                key,
                _("{name}: already {status}; nothing to cancel").format(
                    name=name, status=_(record.status.value)
                ),
            )
        if what is Plan.UNKNOWN_ID:
            return Outcome(
                key,
                _(
                    "{name}: unconfirmed, so its task id is unknown and it cannot be cancelled; "
                    "it is not resubmitted while you leave it (see asyncimg adopt)"
                ).format(name=name),
            )
        now = clock()
        if what is Plan.LOCAL:
            store.save(_withdrawn(record, now, N_("withdrawn before it was sent")))
            return Outcome(
                key, _("{name}: cancelled (it was never sent)").format(name=name), cancelled=True
            )
        assert record.task_id is not None
        try:
            await client.cancel(record.req_key, record.task_id)
        except AsyncImgError as exc:
            if is_poll_setup_problem(exc) or exc.retryable:
                # Not the service's answer about this task: nothing to record.
                return Outcome(
                    key,
                    _("{name}: could not ask the service: {error}").format(
                        name=name, error=plain(exc)
                    ),
                    could_not_ask=True,
                )
            info = CancelInfo(
                time=now,
                outcome="refused",
                message=exc.message,
                code=exc.code,
                request_id=exc.request_id,
            )
            store.save(transition(record, record.status, now=now, cancel=info))
            return Outcome(
                key,
                _(
                    "{name}: the service refused to cancel it ({error}); a task already "
                    "generating cannot be cancelled, so it keeps running"
                ).format(name=name, error=plain(exc)),
            )
        store.save(_withdrawn(record, now, N_("CVCancelTask accepted while in_queue")))
        return Outcome(key, _("{name}: cancelled by the service").format(name=name), cancelled=True)


def _withdrawn(record: TaskRecord, now: float, how: str) -> TaskRecord:
    error = Cancelled(_("cancelled at your request ({how})").format(how=_(how)), code="cancelled")
    return transition(
        record,
        TaskState.FAILED,
        now=now,
        last_error=ErrorInfo.from_exception(error, now),
        cancel=CancelInfo(time=now, outcome="cancelled", message=how),
        submit_started_at=None,
    )
