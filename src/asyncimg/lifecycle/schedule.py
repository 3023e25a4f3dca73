"""The monitor's scheduling decisions: pure functions of recorded state and a clock.

The account's quota is the speed limit (about one unfinished task and one submit per second
on an ordinary account), so the scheduler keeps every slot busy and notices a finished task
soon, with few calls. Each question it asks has one answer here, tested directly:

- how long a task of this model and size takes (:class:`EtaModel`, learned from the folder);
- when to poll an in-flight task next (:func:`next_poll_delay`);
- how many tasks may be in flight (:class:`Cap`: slow start, then additive increase after
  clean completions, and a drop to what is in flight on 50430);
- how fast to submit and poll (:class:`Rate`: doubled until a 50429, then halved on each
  and grown slowly without one).

No I/O and no clock reads: time comes in as arguments.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

# -- how long a task takes ----------------------------------------------------------------

#: Before anything is learned: Jimeng 4.0 at 2K takes roughly 10-60 s (research §4).
PRIOR_MEAN_S = 20.0
PRIOR_STD_S = 15.0
#: Observations needed before the folder's own figures replace the prior entirely.
TRUST_AFTER = 3

Bucket = tuple[str, str]


def bucket_of(req_key: str, params: Mapping[str, Any]) -> Bucket:
    """Tasks that take alike: one model at one output size."""
    width, height = params.get("width"), params.get("height")
    if isinstance(width, int) and isinstance(height, int):
        return req_key, f"{width}x{height}"
    size = params.get("size")
    return req_key, str(size) if size is not None else "default"


@dataclass(frozen=True)
class Estimate:
    mean: float
    std: float
    samples: int


@dataclass(frozen=True)
class _Stats:
    """Welford's running mean and sum of squared deviations."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> _Stats:
        n = self.n + 1
        delta = x - self.mean
        mean = self.mean + delta / n
        return _Stats(n, mean, self.m2 + delta * (x - mean))

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0


@dataclass(frozen=True)
class EtaModel:
    """Generation time per (model, size), learned from finished tasks; a prior before that."""

    stats: Mapping[Bucket, _Stats] = field(default_factory=dict)
    prior: Estimate = Estimate(PRIOR_MEAN_S, PRIOR_STD_S, 0)

    @classmethod
    def learn(cls, durations: Iterable[tuple[Bucket, float]], **kwargs: Any) -> EtaModel:
        model = cls(**kwargs)
        for bucket, seconds in durations:
            model = model.observe(bucket, seconds)
        return model

    def observe(self, bucket: Bucket, seconds: float) -> EtaModel:
        if not math.isfinite(seconds) or seconds < 0:
            return self
        stats = dict(self.stats)
        stats[bucket] = stats.get(bucket, _Stats()).add(seconds)
        return replace(self, stats=stats)

    def estimate(self, bucket: Bucket) -> Estimate:
        """This bucket's figures; another size of the same model before it has its own; the
        prior before anything. Few samples are blended with the prior, and the spread never
        drops below a tenth of the mean (one quick task must not make polls miss the rest)."""
        own = self.stats.get(bucket)
        if own is None or own.n == 0:
            same_model = [s for (key, _), s in self.stats.items() if key == bucket[0] and s.n]
            own = max(same_model, key=lambda s: s.n, default=None)
        if own is None:
            return self.prior
        if own.n >= TRUST_AFTER:
            mean, std = own.mean, own.std
        else:
            w = TRUST_AFTER - own.n  # the prior counts as the missing observations
            mean = (own.n * own.mean + w * self.prior.mean) / (own.n + w)
            std = (own.n * own.std + w * self.prior.std) / (own.n + w)
        return Estimate(mean, max(std, mean / 10), own.n)


# -- when to poll -------------------------------------------------------------------------

#: Never poll one task more often than this (the guide's `--interval` is the longest wait).
DEFAULT_POLL_FLOOR_S = 1.0


def next_poll_delay(elapsed: float, eta: Estimate, *, floor: float, ceiling: float) -> float:
    """Seconds until the next poll of a task submitted `elapsed` seconds ago.

    Nothing before the earliest likely finish (mean - std); then densely, every half
    spread, until well past the expected finish (mean + 2 std); later, backing off in
    proportion to how late it is. Always within [floor, ceiling].
    """
    early = eta.mean - eta.std
    if elapsed < early:
        delay = early - elapsed
    elif elapsed < eta.mean + 2 * eta.std:
        delay = eta.std / 2
    else:
        delay = (elapsed - eta.mean) / 2
    return min(max(delay, floor), max(ceiling, floor))


# -- how many in flight -------------------------------------------------------------------

#: After the account's limit is known, probe one above it after this many clean completions
#: per slot; each refused probe doubles the wait, so a fixed limit costs few 50430s.
PROBE_EVERY = 4


@dataclass(frozen=True)
class Cap:
    """How many tasks may be in flight: AIMD on the account's concurrency limit.

    Slow start (no limit learned yet): one more slot per completion that finds every slot
    busy, so the cap doubles each round until the first 50430. Then `learned` is what was
    in flight, and the cap probes one above it after `probe_after` clean completions.
    """

    limit: int = 1
    learned: int | None = None
    ceiling: int | None = None
    clean: int = 0
    probe_after: int = PROBE_EVERY

    def after_limit_reply(self, in_flight: int) -> Cap:
        """A 50430 with `in_flight` of ours unfinished: that is the account's limit now."""
        limit = max(1, in_flight)
        probing = self.learned is not None and limit >= self.learned
        return replace(
            self,
            limit=limit,
            learned=limit,
            clean=0,
            probe_after=self.probe_after * 2 if probing else self.probe_after,
        )

    def after_completion(self, *, saturated: bool) -> Cap:
        """A task finished; `saturated`: every slot was busy when it did."""
        if not saturated:
            return self
        if self.learned is None:
            return self._grow(self.limit + 1, clean=0)
        clean = self.clean + 1
        if clean >= self.probe_after * self.limit:
            return self._grow(self.limit + 1, clean=0)
        return replace(self, clean=clean)

    def _grow(self, limit: int, *, clean: int) -> Cap:
        if self.ceiling is not None:
            limit = min(limit, self.ceiling)
        return replace(self, limit=max(1, limit), clean=clean)

    def free_slots(self, in_flight: int) -> int:
        return max(0, self.limit - in_flight)


# -- how fast -----------------------------------------------------------------------------

#: Ordinary accounts: about one submit per second (research §4); polls are cheaper.
DEFAULT_SUBMIT_RATE = 1.0
# Polls: public clients keep to 2-5 QPS in total (research §4); start just under 5.
DEFAULT_POLL_RATE = 4.0
RATE_FLOOR = 0.2
#: Grow the rate by this fraction after this many calls in a row without a 50429.
RATE_GROWTH = 0.25
GROW_AFTER = 5


@dataclass(frozen=True)
class Rate:
    """Calls per second for one action. Like the cap: slow start (doubled after every
    `GROW_AFTER` clean calls until the first 50429), then halved on each 50429 and grown by
    a quarter after 4 × `GROW_AFTER` clean calls; never above `ceiling` or below
    `RATE_FLOOR`."""

    per_second: float
    ceiling: float | None = None
    clean: int = 0
    limited: bool = False
    """A 50429 has been seen: growth is slow from now on."""

    def after_limit_reply(self) -> Rate:
        """Back off: halved the first time (the limit is somewhere below), by a quarter
        after that (near the limit, network jitter alone draws the odd 50429)."""
        factor = 0.75 if self.limited else 0.5
        return replace(
            self, per_second=max(RATE_FLOOR, self.per_second * factor), clean=0, limited=True
        )

    def after_success(self) -> Rate:
        clean = self.clean + 1
        if clean < (GROW_AFTER * 4 if self.limited else GROW_AFTER):
            return replace(self, clean=clean)
        grown = self.per_second * (1 + RATE_GROWTH if self.limited else 2.0)
        if self.ceiling is not None:
            grown = min(grown, self.ceiling)
        return replace(self, per_second=grown, clean=0)


def limit_backoff(refusals: int, *, base: float = 1.0, cap: float = 15.0) -> float:
    """Seconds to wait before submitting again after `refusals` 50429s in a row (public
    clients back off 2-15 s on limits, research §7)."""
    return min(cap, base * 2.0 ** max(0, refusals - 1))
