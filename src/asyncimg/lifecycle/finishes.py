"""When tasks of one kind finish, learned from what polls saw: a distribution fitted to
intervals, not to guessed times.

A poll never sees a task finish; it sees it done, and the poll before saw it running. So
each finished task says only "it took more than L and at most R seconds". The previous rule
guessed one time per task inside that interval (the median of what was already learned);
guesses feed the plan, the plan decides where polls look, and the looks become the next
guesses, so errors stick. Here each finished task counts as an even spread over its own
interval, and the fitted CDF is the average of those spreads: nothing is guessed, and it
errs on the side of a wider window. In a simulated chapter (one slot, 10-60 s tasks, each
polled by the plan learned from the ones before, 40 seeds) the fitted CDF was off the truth
by 0.054 on average at 15/20/35/50/58 s, the old guesses by 0.093
(tests/lifecycle/test_finishes.py keeps a smaller version of that check).

Turnbull's estimate (the maximum-likelihood fit for interval data) was tried and is worse
here: it puts all mass on a few "innermost" intervals, the plan then polls at those same
few times, and later polls cannot tell it anything new.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

#: Intervals narrower than this count as exact durations (a step in the CDF): a slope of
#: 1 / width would lose the rest of the CDF to rounding.
EXACT_BELOW = 1e-9

Interval = tuple[float, float]
"""A finished task: still running `lo` s after its submit, done by `hi` s (lo <= hi; an
exact duration is (x, x))."""


@dataclass(frozen=True)
class Finishes:
    """A fitted distribution of finish times (seconds after submit): a piecewise-linear
    CDF through `knots` ((t, F(t)), t and F nondecreasing, F from 0 to 1)."""

    knots: tuple[tuple[float, float], ...]
    n: int
    """How many finished tasks it was fitted to."""

    @property
    def lo(self) -> float:
        return self.knots[0][0]

    @property
    def hi(self) -> float:
        return self.knots[-1][0]

    def cdf(self, t: float) -> float:
        """The share of tasks finished `t` s after submit."""
        knots = self.knots
        if t < knots[0][0]:
            return 0.0
        if t >= knots[-1][0]:
            return 1.0
        i = bisect.bisect_right(knots, t, key=_time) - 1  # the last knot at or before t
        (t0, f0), (t1, f1) = knots[i], knots[i + 1]
        return f0 + (f1 - f0) * (t - t0) / (t1 - t0)

    def quantile(self, q: float) -> float:
        """The time by which a share `q` of tasks has finished."""
        knots = self.knots
        if q <= 0.0:
            return knots[0][0]
        for (t0, f0), (t1, f1) in itertools.pairwise(knots):
            if f1 >= q and f1 > f0:
                return t0 + (t1 - t0) * (q - f0) / (f1 - f0)
        return knots[-1][0]

    def mean(self) -> float:
        return sum(
            (f1 - f0) * (t0 + t1) / 2 for (t0, f0), (t1, f1) in itertools.pairwise(self.knots)
        )


def _time(knot: tuple[float, float]) -> float:
    return knot[0]


def fit(intervals: Sequence[Interval]) -> Finishes | None:
    """The average of even spreads over these intervals; None when there are none.
    Refitted only when they change (cached by value: the scheduler asks for every task's
    odds several times a second)."""
    return fit_clean(tuple(clean(lo, hi) for lo, hi in intervals))


def clean(lo: float, hi: float) -> Interval:
    """An interval as the fit takes it: never before the submit, never ending before it
    starts."""
    lo = max(0.0, lo)
    hi = max(lo, hi)
    return (hi, hi) if hi - lo < EXACT_BELOW else (lo, hi)


@lru_cache(maxsize=64)
def fit_clean(intervals: tuple[Interval, ...]) -> Finishes | None:
    """:func:`fit` of intervals already passed through :func:`clean`."""
    if not intervals:
        return None
    n = len(intervals)
    # Sweep the ends in time order: between two ends the CDF rises at a constant slope
    # (the sum of 1 / (n * width) over the intervals open there); an exact duration is a
    # step of 1 / n.
    slope_change: dict[float, float] = {}
    steps: dict[float, float] = {}
    for lo, hi in intervals:
        if hi > lo:
            rate = 1.0 / (n * (hi - lo))
            slope_change[lo] = slope_change.get(lo, 0.0) + rate
            slope_change[hi] = slope_change.get(hi, 0.0) - rate
        else:
            steps[hi] = steps.get(hi, 0.0) + 1.0 / n
    times = sorted(set(slope_change) | set(steps))
    knots: list[tuple[float, float]] = []
    cum, slope, last = 0.0, 0.0, times[0]
    for t in times:
        cum += max(0.0, slope) * (t - last)  # sums of floats may dip below 0 by a hair
        knots.append((t, min(1.0, cum)))
        if t in steps:
            cum += steps[t]
            knots.append((t, min(1.0, cum)))
        slope += slope_change.get(t, 0.0)
        last = t
    knots[-1] = (knots[-1][0], 1.0)
    if len(knots) == 1:  # one exact duration: a step at it
        knots.insert(0, (knots[0][0], 0.0))
    return Finishes(tuple(knots), n)
