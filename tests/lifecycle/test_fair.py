"""Fair submission across batches: the pure choice."""

from __future__ import annotations

from asyncimg.lifecycle.fair import Candidate, order, pick


def c(local_id: str, batch: str, at: float, priority: int = 0) -> Candidate:
    return Candidate(local_id, batch, priority, at)


def test_oldest_first_within_a_batch() -> None:
    queue = [c("b", "ch1", 2.0), c("a", "ch1", 1.0), c("c", "ch1", 3.0)]
    assert [x.local_id for x in order(queue, {})] == ["a", "b", "c"]


def test_round_robin_across_batches_even_when_one_came_first() -> None:
    big = [c(f"big{i}", "ch1", float(i)) for i in range(5)]
    small = [c(f"small{i}", "ch2", 100.0 + i) for i in range(2)]
    sent = [x.local_id for x in order(big + small, {})]
    assert sent[:4] == ["big0", "small0", "big1", "small1"]
    assert sent[4:] == ["big2", "big3", "big4"]


def test_the_batch_with_fewer_in_flight_goes_next() -> None:
    queue = [c("a", "ch1", 1.0), c("b", "ch2", 2.0)]
    chosen = pick(queue, {"ch1": 2, "ch2": 0})
    assert chosen is not None and chosen.local_id == "b"


def test_a_priority_batch_goes_before_every_other() -> None:
    queue = [c("a", "ch1", 1.0), c("p1", "urgent", 9.0, priority=5), c("p2", "urgent", 10.0, 5)]
    assert [x.local_id for x in order(queue, {"urgent": 3})][:2] == ["p1", "p2"]


def test_nothing_queued() -> None:
    assert pick([], {}) is None
