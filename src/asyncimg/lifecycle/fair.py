"""Which queued frame goes out next when several batches share one account. Pure.

Oldest first within a batch; across batches, round-robin: the batch with the fewest frames
in flight goes next (ties: the batch whose oldest queued frame is oldest), so a chapter
of 500 frames submitted first does not starve a chapter of 10 submitted after it. A batch
with a higher priority goes before every batch of a lower one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """A queued frame as the queue sees it."""

    local_id: str
    batch: str
    priority: int
    created_at: float


def pick(candidates: Iterable[Candidate], in_flight: Mapping[str, int]) -> Candidate | None:
    """The frame to submit next, given how many of each batch are in flight now."""
    pool = list(candidates)
    if not pool:
        return None
    top = max(c.priority for c in pool)
    heads: dict[str, Candidate] = {}
    for c in pool:
        if c.priority != top:
            continue
        head = heads.get(c.batch)
        if head is None or (c.created_at, c.local_id) < (head.created_at, head.local_id):
            heads[c.batch] = c
    return min(
        heads.values(),
        key=lambda h: (in_flight.get(h.batch, 0), h.created_at, h.local_id),
    )


def order(candidates: Iterable[Candidate], in_flight: Mapping[str, int]) -> list[Candidate]:
    """The whole queue in the order `pick` sends it if nothing finishes meanwhile."""
    pool = list(candidates)
    flying = dict(in_flight)
    out: list[Candidate] = []
    while pool:
        chosen = pick(pool, flying)
        assert chosen is not None
        out.append(chosen)
        pool.remove(chosen)
        flying[chosen.batch] = flying.get(chosen.batch, 0) + 1
    return out
