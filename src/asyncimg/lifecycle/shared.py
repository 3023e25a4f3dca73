"""The scheduler's hook for a shared store: what several monitors of one account share.

A monitor on a folder decides alone from its own records. On a shared store
(`asyncimg.store.pg.gate.SharedGate`) the queue, the count of tasks in flight, the learned
cap and the pace of calls belong to the account: the scheduler asks this interface.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from asyncimg.lifecycle.decide import stop_submitting
from asyncimg.lifecycle.schedule import Cap
from asyncimg.lifecycle.submit import BatchOutcome, SubmitOutcome, submit_records
from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.base import Store
from asyncimg.store.record import TaskRecord

Clock = Callable[[], float]


class Gate(Protocol):
    def in_flight(self) -> int:
        """The account's tasks accepted and unfinished, every monitor's."""
        ...

    def claim(self, cap: int, budget: int) -> TaskRecord | None:
        """The next frame to submit (leased to this monitor), or None if none may go now."""
        ...

    def may_poll(self, record: TaskRecord) -> bool:
        """Whether this monitor is the one that polls `record` (one poller per task)."""
        ...

    async def pace(self, action: str, per_second: float) -> None:
        """Wait for this monitor's turn to make one `action` ("submit", "poll") call."""
        ...

    def changes(self) -> list[TaskRecord]:
        """Records this monitor works on that anyone wrote since the last call."""
        ...

    def learned(self) -> dict[str, Any]:
        """The shared cap state: `limit`, `learned`, `probe_after` (those known)."""
        ...

    def update_cap(self, change: Callable[[Cap], Cap], mine: Cap) -> Cap:
        """Apply one event to the account's one shared cap; the cap after it."""
        ...

    def share(self, limit: int, learned: int | None, probe_after: int) -> None:
        """Record this monitor's view of the cap for the others."""
        ...


async def submit_through(
    gate: Gate,
    client: VisualClient,
    store: Store,
    records: Sequence[TaskRecord],
    *,
    clock: Clock,
    unconfirmed_budget: int,
) -> BatchOutcome:
    """`submit` on a shared store: frames go out in the account's queue order while the
    account's shared cap has room; the rest stay queued for whichever monitor has room
    first. The outcome lists `records` (others' frames sent on the way are saved too)."""
    outcomes: dict[str, SubmitOutcome] = {}
    halted: AsyncImgError | None = None
    limit = int(gate.learned().get("limit") or 1)
    for _ in range(len(records)):
        claimed = gate.claim(limit, unconfirmed_budget)
        if claimed is None:
            break
        batch = await submit_records(
            client, store, [claimed], clock=clock, unconfirmed_budget=unconfirmed_budget
        )
        [outcome] = batch.outcomes
        outcomes[claimed.local_id] = outcome
        if batch.halted is not None:
            halted = batch.halted
            break
        if outcome.error is not None and stop_submitting(outcome.error):
            break
    ordered = [outcomes.get(r.local_id, SubmitOutcome(store.reload(r) or r)) for r in records]
    return BatchOutcome(ordered, halted)
