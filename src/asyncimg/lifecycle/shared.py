"""The scheduler's hook for a shared store: what several monitors of one account share.

A monitor on a folder decides alone from its own records. On a shared store
(`asyncimg.store.pg.gate.SharedGate`) the queue, the count of tasks in flight, the learned
cap and the pace of calls belong to the account: the scheduler asks this interface.
"""

from __future__ import annotations

from typing import Any, Protocol

from asyncimg.store.record import TaskRecord


class Gate(Protocol):
    def in_flight(self) -> int:
        """The account's tasks accepted and unfinished, every monitor's."""
        ...

    def claim(self, cap: int, budget: int) -> TaskRecord | None:
        """The next frame to submit (leased to this monitor), or None if none may go now."""
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

    def share(self, limit: int, learned: int | None, probe_after: int) -> None:
        """Record this monitor's view of the cap for the others."""
        ...
