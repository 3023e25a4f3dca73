"""The monitor's scheduling decisions: pure functions of recorded state and a clock.

The account's quota is the speed limit (about one unfinished task and one submit per second
on an ordinary account), so the scheduler keeps every slot busy and notices a finished task
soon, with few calls. Each question it asks has one answer here, tested directly:

- how long a task of this model and size takes (:class:`EtaModel`, learned from the folder);
- when to poll an in-flight task next (:func:`poll_plan`, :func:`plan_size`,
  :func:`next_poll_delay`: a few polls placed where the learned durations say the task
  will finish, as many as the poll rate allows);
- how many tasks may be in flight (:class:`Cap`: slow start, then additive increase after
  clean completions, and a drop to what is in flight on 50430);
- how fast to submit and poll (:class:`Rate`: doubled until a 50429, then halved on each
  and grown slowly without one).

No I/O and no clock reads: time comes in as arguments.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from asyncimg.lifecycle.finishes import Finishes, Interval, clean, fit_clean

# -- how long a task takes ----------------------------------------------------------------

#: Before anything is learned: Jimeng 4.0 at 2K takes roughly 10-60 s (research §4).
PRIOR_MEAN_S = 20.0
PRIOR_STD_S = 15.0
#: Observations needed before the folder's own figures replace the prior entirely.
TRUST_AFTER = 3
#: Durations kept per bucket for the poll plan (the most recent ones).
KEEP_SAMPLES = 64

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
    """Generation time per (model, size), learned from finished tasks; a prior before that.

    Keeps running figures (mean, spread: for the ETA shown to the user) and, for the most
    recent tasks, the interval each was seen to finish in (still running at one poll, done
    at the next): :func:`~asyncimg.lifecycle.finishes.fit` turns them into the distribution
    that shapes each task's poll plan (:func:`poll_plan`) and its odds of still running.
    """

    stats: Mapping[Bucket, _Stats] = field(default_factory=dict)
    recent: Mapping[Bucket, tuple[Interval, ...]] = field(default_factory=dict)
    prior: Estimate = Estimate(PRIOR_MEAN_S, PRIOR_STD_S, 0)

    @classmethod
    def learn(cls, finished: Iterable[tuple[Bucket, Interval]], **kwargs: Any) -> EtaModel:
        model = cls(**kwargs)
        for bucket, (running, done) in finished:
            model = model.observe_between(bucket, running, done)
        return model

    def observe(self, bucket: Bucket, seconds: float) -> EtaModel:
        """A task took exactly `seconds` (as far as is known)."""
        return self.observe_between(bucket, seconds, seconds)

    def observe_between(self, bucket: Bucket, running: float, done: float) -> EtaModel:
        """A task was seen running `running` s after submit and done `done` s after: it
        took somewhere in between (the whole interval is kept; the running figures take
        its midpoint)."""
        if not (math.isfinite(running) and math.isfinite(done)) or running < 0 or done < running:
            return self
        stats = dict(self.stats)
        stats[bucket] = stats.get(bucket, _Stats()).add((running + done) / 2)
        recent = dict(self.recent)
        kept = recent.get(bucket, ())[-(KEEP_SAMPLES - 1) :]
        recent[bucket] = (*kept, clean(running, done))
        return replace(self, stats=stats, recent=recent)

    def _own(self, bucket: Bucket) -> Bucket | None:
        """This bucket if it has figures, else the same model's best-known size."""
        own = self.stats.get(bucket)
        if own is not None and own.n:
            return bucket
        same = [(s.n, b) for b, s in self.stats.items() if b[0] == bucket[0] and s.n]
        return max(same)[1] if same else None

    def finishes(self, bucket: Bucket) -> Finishes | None:
        """When recent tasks of this bucket (or of the same model at another size) finished,
        as a fitted distribution; None before any has."""
        own = self._own(bucket)
        return fit_clean(self.recent.get(own, ())) if own is not None else None

    def estimate(self, bucket: Bucket) -> Estimate:
        """This bucket's figures; another size of the same model before it has its own; the
        prior before anything. Few samples are blended with the prior, and the spread never
        drops below a tenth of the mean (one quick task must not make polls miss the rest)."""
        key = self._own(bucket)
        if key is None:
            return self.prior
        own = self.stats[key]
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
#: The most poll points in one task's plan ((k + 2) / 3 = 3.3 polls per task); the poll
#: budget (:func:`budget_points`) usually allows fewer.
MAX_PLAN_POINTS = 8
#: GetResult calls per frame a run aims to stay under, on average (issue 7: at most 3).
POLLS_PER_TASK = 2.9


def budget_points(spent: int, finished: int, total: int, per_task: float = POLLS_PER_TASK) -> int:
    """The most plan points the poll budget allows for the next task: what is left of
    `per_task` polls per frame over the run, shared by the frames not yet finished, as
    (k + 2) / 3 polls each. The first frames are polled before anything is learned (more
    polls), so later ones get fewer points; a run that starts learned (a previous chapter
    in the folder) spends the budget on denser plans, where it buys the most."""
    left = max(1, total - finished)
    per_left = (per_task * max(total, finished + 1) - spent) / left
    return max(2, min(MAX_PLAN_POINTS, math.floor(3 * per_left - 2)))


#: A finish should be noticed within about this many poll floors (1.5 s by default) where
#: the plan's points can afford it (:func:`poll_plan`'s `max_gap`): quick tasks on a
#: roomy account. Slow ones (10-60 s on one slot) cannot at 3 polls a task, and do not try.
STALE_GAP_FLOORS = 1.5
#: Plans are sized to use at most this share of the poll rate (the rest: tails, retries).
POLL_HEADROOM = 0.85


def plan_fractions(k: int) -> tuple[float, ...]:
    """Where in the finish window a plan of k polls looks, as fractions of the window.

    The gaps shrink linearly (k, k - 1, ..., 1 parts): for finish times spread evenly over
    the window this spends (k + 2) / 3 polls per task and leaves the slot idle
    (2k + 1) / (3k(k + 1)) of the window after the finish on average, the least idle time
    for that many polls (a later poll is reached less often, so it is cheaper to look
    densely late than early). k = 2: 1.33 polls, idle 0.28; k = 6: 2.67 polls, idle 0.10.
    """
    k = max(1, k)
    total = k * (k + 1) / 2
    out: list[float] = []
    acc = 0.0
    for j in range(k):
        acc += k - j
        out.append(acc / total)
    return tuple(out)


def poll_plan(
    finishes: Finishes | None, k: int, *, max_gap: float | None = None
) -> tuple[float, ...]:
    """The elapsed times (since submit) at which a task is polled: k points placed by
    :func:`plan_fractions` on the learned distribution's quantiles. Empty when nothing is
    learned yet.

    `max_gap`: when k points can cover the window with no gap longer than this, none is
    (:func:`cap_gaps`): a finish is then noticed within `max_gap` wherever it falls. The
    least-idle plan looks sparsely early, so a quick task may wait most of the window."""
    if finishes is None:
        return ()
    plan = tuple(finishes.quantile(q) for q in plan_fractions(k))
    if max_gap is None or finishes.hi - finishes.lo > k * max_gap:
        return plan
    gaps = [b - a for a, b in itertools.pairwise((finishes.lo, *plan))]
    return tuple(itertools.accumulate(cap_gaps(gaps, max_gap), initial=finishes.lo))[1:]


def cap_gaps(gaps: Sequence[float], cap: float) -> list[float]:
    """The same total split into the same number of gaps, none above `cap`: what the long
    ones lose goes to the short ones in proportion to their length (water-filling). The
    total must fit (len(gaps) * cap >= sum(gaps))."""
    out = list(gaps)
    for _ in range(len(out)):
        excess = sum(g - cap for g in out if g > cap)
        if excess <= 1e-12:
            break
        room = [g for g in out if g < cap]
        total_room = sum(room)
        out = [
            cap if g >= cap else g + excess * (g / total_room if total_room else 1 / len(room))
            for g in out
        ]
    return out


def plan_size(poll_rate: float, slots: int, finishes: Finishes | None) -> int:
    """The most plan points whose polls fit the poll rate with `slots` tasks in flight.

    A slot turns over every mean + idle seconds and spends (k + 2) / 3 polls doing so.
    """
    if finishes is None:
        return MAX_PLAN_POINTS
    width, mean = finishes.hi - finishes.lo, finishes.mean()
    for k in range(MAX_PLAN_POINTS, 1, -1):
        idle = width * (2 * k + 1) / (3 * k * (k + 1))
        per_second = max(1, slots) * (k + 2) / 3 / max(mean + idle, 1e-3)
        if per_second <= poll_rate * POLL_HEADROOM:
            return k
    return 1


def next_poll_delay(
    elapsed: float, plan: Sequence[float], *, floor: float, ceiling: float
) -> float:
    """Seconds until the next poll of a task submitted `elapsed` seconds ago.

    With a plan: its next point. Past the plan's last point (the task is late): the plan's
    last gap, growing with the lateness. Without a plan (nothing learned): at the floor,
    then doubling (1, 2, 4, 8 ... s after submit). Always within [floor, ceiling].
    """
    if not plan:
        delay = max(floor, elapsed)
    else:
        ahead = [p for p in plan if p > elapsed + 1e-6]
        if ahead:
            delay = ahead[0] - elapsed
        else:
            last_gap = plan[-1] - plan[-2] if len(plan) > 1 else plan[-1] / 2
            delay = max(last_gap, (elapsed - plan[-1]) / 2)
    return min(max(delay, floor), max(ceiling, floor))


def running_odds(finishes: Finishes | None, elapsed: float, seen_running: float) -> float:
    """How likely a task is still running `elapsed` s after submit, when a poll saw it
    running `seen_running` s after submit: (1 - F(elapsed)) / (1 - F(seen_running)) over
    the learned distribution. 1 until enough is learned; never below `MIN_ODDS`."""
    if finishes is None or finishes.n < ODDS_AFTER:
        return 1.0
    if seen_running >= finishes.hi:
        return 1.0  # seen running later than anything learned: it is late, not done
    survive_now = 1.0 - finishes.cdf(elapsed)
    survive_seen = 1.0 - finishes.cdf(min(seen_running, elapsed))
    return min(1.0, max(MIN_ODDS, survive_now / survive_seen))


#: A task never counts as surely finished until a poll says so.
MIN_ODDS = 0.02
#: Durations needed before odds are given at all: the first ones to be seen are the
#: quickest (the slow ones are still running), so a few early samples run short.
ODDS_AFTER = 6


Span = tuple[float, float, float]
"""A finished task: submitted, last seen running (or submitted), seen done."""


def running_at(moment: float, spans: Iterable[Span], finishes: Finishes | None) -> float:
    """How many of these tasks were still running at `moment`. Each finished between its
    last poll that saw it running and the one that saw it done; where in between follows
    the learned distribution (evenly, before anything is learned)."""

    def cdf(elapsed: float) -> float:
        return elapsed if finishes is None else finishes.cdf(elapsed)

    count = 0.0
    for submitted, running, done in spans:
        if moment <= running:
            count += 1.0
        elif moment < done:
            lo, mid, hi = (cdf(t - submitted) for t in (running, moment, done))
            count += (hi - mid) / (hi - lo) if hi > lo else (done - moment) / (done - running)
    return count


def chance_all_busy(odds: Sequence[float], limit: int) -> float:
    """The chance that at least `limit` of these tasks are still running, each with its
    own odds (the exact Poisson-binomial tail, by dynamic programming over the tasks)."""
    if limit <= 0:
        return 1.0
    dist = [1.0]  # dist[j]: the chance that j are running (j == limit: at least limit)
    for p in odds:
        grown = [0.0] * min(len(dist) + 1, limit + 1)
        for j, q in enumerate(dist):
            grown[j] += q * (1.0 - p)
            grown[min(j + 1, limit)] += q * p
        dist = grown
    return dist[limit] if len(dist) > limit else 0.0


def has_free_slot(odds: Sequence[float], limit: int, risk: float) -> bool:
    """May one more task go to an account that takes `limit` unfinished tasks, when ours
    are still running with these odds? Only if the chance that every slot is still busy
    is at most `risk` (a refusal, 50430, costs nothing but the call): a task the polls
    have not yet seen finish may well have, and waiting for the poll would leave its slot
    idle. A one-slot account always waits for the poll: one task's odds say little, and
    its plan polls densely where it is likely to finish."""
    if len(odds) < limit:
        return True
    if limit <= 1:
        return False
    return chance_all_busy(odds, limit) <= risk


# -- how many in flight -------------------------------------------------------------------

#: After the account's limit is known, probe one above it after this many clean completions
#: per slot; each refused probe doubles the wait, so a fixed limit costs few 50430s.
PROBE_EVERY = 10


#: The chance of a 50430 a submit on the odds may take (:func:`has_free_slot`): halved on
#: each 50430 that such a submit drew, raised a little by each one that went through, and
#: kept within [MIN_RISK, MAX_RISK] so that refusals stay well under 0.1 per frame.
START_RISK = 0.1
MAX_RISK = 0.2
MIN_RISK = 0.005
RISK_GROWTH = 1.02


@dataclass(frozen=True)
class Cap:
    """The account's concurrency limit as far as this run knows it, and when one more task
    may go (AIMD on 50430 replies).

    `limit` is the account's count of unfinished tasks, not ours: a task of ours that has
    finished but is not yet polled still counts for us, not for the account, so
    :meth:`free` weighs each of ours by the odds that it is still running.

    Slow start (nothing learned): one slot more than is in flight, grown on each accepted
    submit (as TCP grows per ack), so the queue finds the limit with one 50430 instead of a
    round per doubling. Then `learned` is the limit, and the cap probes one above it after
    `probe_after` clean completions per slot; a refused probe doubles that wait.
    """

    limit: int = 1
    learned: int | None = None
    ceiling: int | None = None
    clean: int = 0
    probe_after: int = PROBE_EVERY
    risk: float = START_RISK
    measured: bool = False
    """`learned` has been measured (:meth:`after_measured`), not just counted."""
    proven: int = 0
    """The most unfinished tasks the account has been seen to hold at once
    (:meth:`after_proven`): its limit is at least this, whatever a measure says."""

    def free(self, odds: Sequence[float]) -> bool:
        """May one more go, with ours in flight still running at these odds?"""
        if len(odds) < self.limit:
            return True
        if self.learned is None:
            return False  # finding the limit: count only what is surely ours
        return has_free_slot(odds, self.limit, self.risk)

    def after_limit_reply(self, odds: Sequence[float]) -> Cap:
        """A 50430 while ours were in flight with these odds of still running."""
        n = len(odds)
        if self.learned is not None and self.limit > self.learned:
            # A refused probe: back to what is known, and probe later.
            return replace(self, limit=self.learned, clean=0, probe_after=self.probe_after * 2)
        if self.learned is not None and n >= self.limit:
            # Counting a task as finished that was not: count more carefully.
            return replace(self, risk=max(MIN_RISK, self.risk / 2), clean=0)
        # Fewer than the limit of ours were in flight: the account takes fewer (the first
        # limit found, or one that dropped). The account's count is at most ours: those
        # expected still running.
        limit = max(1, min(n, math.ceil(sum(odds) - 1e-9)))
        # Refused with fewer of ours than the account once held: its limit dropped, and
        # what it held before proves nothing any more.
        proven = self.proven if n >= self.proven else 0
        return replace(self, limit=limit, learned=limit, clean=0, proven=proven)

    def after_measured(self, running: float) -> Cap:
        """A 50430 came while `running` of ours (measured afterwards, from when each was
        last seen running and seen done) were unfinished on the account: its limit. The
        measure is only as sharp as the polls, so once measured it moves the limit one step
        at a time; the first measure replaces a count (which includes ours that had finished
        unseen) outright."""
        if self.learned is None:
            return self
        if self.limit > self.learned:
            return self  # a refused probe says no more than the known limit
        target = max(1, self.proven, round(running))
        if self.ceiling is not None:
            target = min(target, self.ceiling)
        if target == self.learned:
            return replace(self, measured=True)
        step = 1 if target > self.learned else -1
        limit = self.learned + step if self.measured else target
        risk = START_RISK if limit < self.learned else self.risk
        return replace(self, limit=limit, learned=limit, risk=risk, clean=0, measured=True)

    def after_proven(self, held: int) -> Cap:
        """The account held `held` unfinished tasks at once: it accepted a submit while
        `held - 1` of ours were surely running (a later poll saw each still running). A
        measure of a 50430 is only an estimate, and it runs low when finishes are placed
        early; this is a fact, so the known limit never stays below it."""
        if self.ceiling is not None:
            held = min(held, self.ceiling)
        if held <= self.proven:
            return self
        if self.learned is None or held <= self.learned:
            return replace(self, proven=held)
        limit = max(self.limit, held)
        return replace(self, proven=held, learned=held, limit=limit)

    def after_accept(self, odds: Sequence[float]) -> Cap:
        """A submit was accepted; `odds` for ours in flight now (the new one included)."""
        if self.learned is None:
            if len(odds) < self.limit:
                return self
            return self._grow(len(odds) + 1, clean=0)
        if len(odds) > self.limit:  # went on the odds, and they held
            return replace(self, risk=min(MAX_RISK, self.risk * RISK_GROWTH))
        return self

    def after_completion(self, *, saturated: bool) -> Cap:
        """A task finished; `saturated`: every slot was busy when it did."""
        if not saturated:
            return self
        if self.learned is None:
            return self._grow(self.limit + 1, clean=0)
        clean = self.clean + 1
        if self.limit > self.learned and clean >= self.probe_after * self.learned:
            return replace(self, learned=self.limit, clean=0)  # the probe held
        if self.limit == self.learned and clean >= self.probe_after * self.limit:
            return self._grow(self.limit + 1, clean=0)
        return replace(self, clean=clean)

    def _grow(self, limit: int, *, clean: int) -> Cap:
        if self.ceiling is not None:
            limit = min(limit, self.ceiling)
        return replace(self, limit=max(1, limit), clean=clean)


# -- how fast -----------------------------------------------------------------------------

#: Ordinary accounts: about one submit per second (research §4); polls are cheaper.
DEFAULT_SUBMIT_RATE = 1.0
# Polls: public clients keep to 2-5 QPS in total (research §4); start just under 5, then
# learn the account's poll quota (growing by a quarter after POLL_PATIENCE clean polls that
# waited for the rate, backing off by a quarter on each 50429).
DEFAULT_POLL_RATE = 4.0
RATE_FLOOR = 0.2
#: Grow the rate by this fraction after this many calls in a row without a 50429.
RATE_GROWTH = 0.25
GROW_AFTER = 5
#: Before the first 50429 the rate doubles after this many clean calls that waited for it.
SLOW_START_AFTER = 2
#: Polls grow more patiently than submits (a rate near the account's poll quota draws
#: 50429s from network jitter alone): a quarter more after this many clean polls that
#: waited for the rate, about one probe per 30 s of saturated polling. With 50 the bench's
#: (b) drew 13-14 poll 50429s a run (0.07 a frame) for no clear gain in makespan.
POLL_PATIENCE = 150


@dataclass(frozen=True)
class Rate:
    """Calls per second for one action. Like the cap: slow start (doubled after every
    `SLOW_START_AFTER` clean calls until the first 50429), then backed off on each 50429 and
    grown by a quarter after 4 × `GROW_AFTER` clean calls; never above `ceiling` or below
    `RATE_FLOOR`. It only grows while it is what holds the calls back (`binding`): a rate
    that is never used up says nothing about the account's limit."""

    per_second: float
    ceiling: float | None = None
    clean: int = 0
    limited: bool = False
    """A 50429 has been seen: growth is slow from now on."""
    patience: int = GROW_AFTER * 4
    """Clean calls that waited for the rate before a limited rate grows by a quarter."""

    def after_limit_reply(self) -> Rate:
        """Back off: halved the first time (the limit is somewhere below), by a quarter
        after that (near the limit, network jitter alone draws the odd 50429)."""
        factor = 0.75 if self.limited else 0.5
        return replace(
            self, per_second=max(RATE_FLOOR, self.per_second * factor), clean=0, limited=True
        )

    def after_success(self, *, binding: bool = True) -> Rate:
        needed = self.patience if self.limited else SLOW_START_AFTER
        clean = min(self.clean + 1, needed)
        if clean < needed or not binding:
            return replace(self, clean=clean)
        grown = self.per_second * (1 + RATE_GROWTH if self.limited else 2.0)
        if self.ceiling is not None:
            grown = min(grown, self.ceiling)
        return replace(self, per_second=grown, clean=0)


def limit_backoff(refusals: int, *, base: float = 1.0, cap: float = 15.0) -> float:
    """Seconds to wait before submitting again after `refusals` 50429s in a row (public
    clients back off 2-15 s on limits, research §7)."""
    return min(cap, base * 2.0 ** max(0, refusals - 1))
