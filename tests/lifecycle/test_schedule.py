"""The scheduler's pure decisions: ETA, next poll, in-flight cap (AIMD), call rates."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncimg.lifecycle import schedule
from asyncimg.lifecycle.finishes import Finishes, fit
from asyncimg.lifecycle.schedule import Cap, EtaModel, Rate, bucket_of, next_poll_delay

V40 = "jimeng_t2i_v40"
PORTRAIT = bucket_of(V40, {"width": 1440, "height": 2560})


def test_buckets_are_model_and_size() -> None:
    assert PORTRAIT == (V40, "1440x2560")
    assert bucket_of(V40, {"size": 4194304}) == (V40, "4194304")
    assert bucket_of(V40, {}) == (V40, "default")


def test_the_prior_holds_until_something_is_learned_then_the_folder_wins() -> None:
    model = EtaModel()
    assert model.estimate(PORTRAIT) == model.prior
    one = model.observe(PORTRAIT, 4.0)
    blended = one.estimate(PORTRAIT)
    assert 4.0 < blended.mean < model.prior.mean and blended.samples == 1
    learned = EtaModel.learn([(PORTRAIT, (s, s)) for s in (3.0, 4.0, 5.0)])
    estimate = learned.estimate(PORTRAIT)
    assert estimate.mean == pytest.approx(4.0) and estimate.std == pytest.approx(1.0)


def test_another_size_of_the_same_model_borrows_its_figures() -> None:
    learned = EtaModel.learn([(PORTRAIT, (s, s)) for s in (30.0, 40.0, 50.0)])
    square = learned.estimate(bucket_of(V40, {"width": 2048, "height": 2048}))
    assert square.mean == pytest.approx(40.0)
    assert learned.estimate(("jimeng_t2i_v31", "default")) == learned.prior


def test_the_spread_never_collapses_to_zero() -> None:
    learned = EtaModel.learn([(PORTRAIT, (10.0, 10.0))] * 5)
    assert learned.estimate(PORTRAIT).std == pytest.approx(1.0)  # a tenth of the mean


def test_nonsense_durations_are_ignored() -> None:
    model = EtaModel().observe(PORTRAIT, -1.0).observe(PORTRAIT, float("nan"))
    model = model.observe_between(PORTRAIT, 5.0, 4.0)  # done before it was seen running
    assert model.estimate(PORTRAIT) == model.prior and model.finishes(PORTRAIT) is None


# -- where the polls go --------------------------------------------------------------------


def test_plan_fractions_shrink_their_gaps_linearly_and_end_at_the_window() -> None:
    assert schedule.plan_fractions(1) == (1.0,)
    assert schedule.plan_fractions(2) == pytest.approx((2 / 3, 1.0))
    assert schedule.plan_fractions(4) == pytest.approx((0.4, 0.7, 0.9, 1.0))


def _uniform_cost(fractions: tuple[float, ...]) -> tuple[float, float]:
    """Expected polls and idle share of the window for finishes spread evenly over it,
    computed numerically (not from the formulas in the docstring)."""
    points = [0.0, *fractions]
    polls = sum(1 - p for p in points[:-1])
    idle = sum((b - a) ** 2 / 2 for a, b in itertools.pairwise(points))
    return polls, idle


@pytest.mark.parametrize("k", [2, 3, 4, 6])
def test_plans_spend_few_polls_and_beat_evenly_spaced_ones(k: int) -> None:
    polls, idle = _uniform_cost(schedule.plan_fractions(k))
    assert polls == pytest.approx((k + 2) / 3)
    assert idle == pytest.approx((2 * k + 1) / (3 * k * (k + 1)))
    # The evenly spaced plan with the most points that spends no more polls idles longer.
    m = max(n for n in range(1, 20) if _uniform_cost(_evenly(n))[0] <= polls + 1e-9)
    assert _uniform_cost(_evenly(m))[1] > idle


def _evenly(n: int) -> tuple[float, ...]:
    return tuple((j + 1) / n for j in range(n))


def _even(lo: float, hi: float, n: int = 20) -> Finishes:
    """Finishes spread evenly over [lo, hi]: n back-to-back intervals."""
    step = (hi - lo) / n
    fitted = fit([(lo + i * step, lo + (i + 1) * step) for i in range(n)])
    assert fitted is not None
    return fitted


def test_a_plan_puts_its_polls_at_the_learned_quantiles() -> None:
    plan = schedule.poll_plan(_even(1.0, 4.0), 2)  # 1-4 s, evenly
    assert plan == pytest.approx((3.0, 4.0))
    assert schedule.poll_plan(None, 3) == ()


def test_plan_size_follows_the_poll_budget() -> None:
    quick = _even(1.0, 4.0)  # scenario (b): 8 slots, 1-4 s
    assert schedule.plan_size(4.0, 8, quick) == 2  # 3 points would need ~4.3 polls/s
    assert schedule.plan_size(40.0, 8, quick) == schedule.MAX_PLAN_POINTS
    assert schedule.plan_size(0.5, 8, quick) == 1
    slow = _even(10.0, 60.0)  # a real account: 1 slot, 10-60 s
    assert schedule.plan_size(2.0, 1, slow) == schedule.MAX_PLAN_POINTS
    assert schedule.plan_size(2.0, 1, None) == schedule.MAX_PLAN_POINTS


@pytest.mark.parametrize(
    ("elapsed", "delay"),
    [
        (0.0, 20.0),  # the plan's first point
        (20.0, 10.0),  # then the next
        (30.0, 5.0),
        (35.0, 5.0),  # past the plan: its last gap
        (61.0, 13.0),  # late: backing off in proportion to the lateness
    ],
)
def test_the_next_poll_is_the_plans_next_point(elapsed: float, delay: float) -> None:
    plan = (20.0, 30.0, 35.0)
    assert next_poll_delay(elapsed, plan, floor=1.0, ceiling=30.0) == pytest.approx(delay)


def test_before_anything_is_learned_polls_double_from_the_floor() -> None:
    assert [next_poll_delay(e, (), floor=1.0, ceiling=30.0) for e in (0, 1, 2, 4, 40)] == [
        1.0,
        1.0,
        2.0,
        4.0,
        30.0,
    ]


@given(
    elapsed=st.floats(0, 1e5),
    plan=st.lists(st.floats(0.01, 1e4), max_size=6).map(lambda xs: tuple(sorted(xs))),
    floor=st.floats(0.1, 5),
    ceiling=st.floats(0.1, 600),
)
def test_the_next_poll_is_always_within_floor_and_ceiling(
    elapsed: float, plan: tuple[float, ...], floor: float, ceiling: float
) -> None:
    delay = next_poll_delay(elapsed, plan, floor=floor, ceiling=ceiling)
    assert floor <= delay <= max(floor, ceiling)


# -- what a poll that sees "done" teaches ----------------------------------------------------


def test_a_poll_that_sees_done_teaches_the_interval_it_finished_in() -> None:
    model = EtaModel().observe_between(PORTRAIT, 2.0, 4.0)
    finishes = model.finishes(PORTRAIT)
    assert finishes is not None
    # Somewhere in 2-4 s, nothing said where: spread evenly, not pinned at 3 s.
    assert finishes.cdf(2.5) == pytest.approx(0.25) and finishes.quantile(0.75) == 3.5
    # The ETA shown to the user takes the midpoint, blended with the prior (20 s) at first.
    assert model.estimate(PORTRAIT).mean == pytest.approx((3.0 + 2 * 20.0) / 3)


def test_the_odds_a_task_still_runs_follow_the_learned_durations() -> None:
    finishes = _even(1.0, 4.0)
    assert schedule.running_odds(finishes, 0.5, 0.0) == 1.0  # before the quickest
    assert schedule.running_odds(finishes, 2.5, 0.0) == pytest.approx(0.5)
    assert schedule.running_odds(finishes, 10.0, 0.0) == schedule.MIN_ODDS
    # Seen running at 3 s: of what is left after 3 s, half is left after 3.5 s.
    assert schedule.running_odds(finishes, 3.5, 3.0) == pytest.approx(0.5)
    # Seen running past everything learned: late, still counted as running.
    assert schedule.running_odds(finishes, 9.0, 8.0) == 1.0
    # Too little learned: every task counts as running.
    few = fit([(1.0, 2.0), (2.0, 3.0), (3.0, 4.0)])
    assert schedule.running_odds(few, 10.0, 0.0) == 1.0


def test_a_refusal_is_measured_afterwards_from_when_each_task_finished() -> None:
    samples = _even(1.0, 4.0)
    spans = [
        (0.0, 0.0, 1.8),  # never polled before done; 1-4 s tasks cannot be done at 0.5
        (0.0, 1.0, 3.0),  # seen running after the moment
        (0.0, 0.0, 0.4),  # finished before it (an odd one: the window says 1 s at least)
    ]
    assert schedule.running_at(0.5, spans, samples) == pytest.approx(2.0, abs=0.01)
    # Before anything is learned: evenly between the two polls.
    assert schedule.running_at(0.5, [(0.0, 0.0, 1.0)], None) == pytest.approx(0.5)


# -- how many in flight ---------------------------------------------------------------------


def test_slow_start_keeps_one_more_slot_than_in_flight_until_a_limit_reply() -> None:
    cap = Cap()
    assert cap.free([]) and not cap.free([1.0])
    for n in (1, 2, 3):
        cap = cap.after_accept([1.0] * n)
        assert cap.limit == n + 1
    assert cap.after_accept([1.0]) == cap  # fewer in flight than the cap: nothing new
    cap = cap.after_limit_reply([1.0] * 3)
    assert cap.limit == 3 and cap.learned == 3


def test_once_the_limit_is_known_a_task_likely_finished_frees_its_slot() -> None:
    cap = Cap(limit=8, learned=8)
    assert cap.free([1.0] * 7)
    assert not cap.free([1.0] * 8)
    assert cap.free([1.0] * 6 + [0.02] * 4)  # four of ours are almost surely done
    assert not cap.free([1.0] * 7 + [0.5])  # a coin flip is not a free slot
    # Eight each likely running, but all eight at once is unlikely: 0.6 ** 8 = 0.017.
    assert cap.free([0.6] * 8) and not cap.free([0.8] * 8)  # 0.8 ** 8 = 0.17
    assert not Cap(limit=1, learned=1).free([0.02])  # one slot: always wait for the poll


def test_the_chance_that_every_slot_is_busy_is_the_exact_tail() -> None:
    assert schedule.chance_all_busy([0.5, 0.5], 2) == pytest.approx(0.25)
    assert schedule.chance_all_busy([0.5, 0.5, 0.5], 2) == pytest.approx(0.5)  # 4 of 8 cases
    assert schedule.chance_all_busy([1.0, 0.2, 0.0], 2) == pytest.approx(0.2)
    assert schedule.chance_all_busy([0.9], 2) == 0.0  # fewer tasks than slots
    assert schedule.chance_all_busy([], 0) == 1.0


def test_a_refused_guess_makes_the_count_more_careful_and_accepted_ones_less() -> None:
    cap = Cap(limit=8, learned=8)
    refused = cap.after_limit_reply([1.0] * 6 + [0.02] * 4)
    assert refused.limit == 8 and refused.risk == pytest.approx(cap.risk / 2)
    accepted = refused.after_accept([1.0] * 9)
    assert accepted.risk == pytest.approx(refused.risk * schedule.RISK_GROWTH)
    bold = Cap(limit=8, learned=8, risk=schedule.MAX_RISK).after_accept([1.0] * 9)
    assert bold.risk == schedule.MAX_RISK
    careful = Cap(limit=8, learned=8, risk=schedule.MIN_RISK).after_limit_reply([1.0] * 9)
    assert careful.risk == schedule.MIN_RISK


def test_a_measured_refusal_sets_the_limit() -> None:
    counted = Cap(limit=12, learned=12, risk=0.01)  # a count: ours that finished unseen too
    cap = counted.after_measured(9.7)
    assert cap.limit == 10 and cap.learned == 10 and cap.measured
    assert cap.risk == schedule.START_RISK
    lowered = cap.after_measured(7.8)  # once measured, one step at a time: it is noisy
    assert lowered.limit == 9 and lowered.learned == 9
    assert lowered.after_measured(8.2).limit == 8
    assert lowered.after_measured(9.4) == lowered
    assert Cap(limit=3, learned=3, measured=True).after_measured(4.6).limit == 4
    assert Cap(limit=3, learned=2).after_measured(2.6) == Cap(limit=3, learned=2)  # a probe
    assert Cap(limit=4, learned=4, ceiling=4).after_measured(6.0).limit == 4
    assert Cap(limit=1, learned=1).after_measured(0.2).limit == 1
    assert Cap().after_measured(3.0) == Cap()  # nothing learned: a 50430 teaches first


def test_after_the_limit_is_known_the_cap_probes_slowly_and_backs_off_on_refusal() -> None:
    cap = Cap(limit=2, learned=2)
    for _ in range(schedule.PROBE_EVERY * 2 - 1):
        cap = cap.after_completion(saturated=True)
    assert cap.limit == 2
    cap = cap.after_completion(saturated=True)
    assert cap.limit == 3 and cap.learned == 2  # one probe above the learned limit
    refused = cap.after_limit_reply([1.0, 1.0])
    assert refused.limit == 2 and refused.probe_after == schedule.PROBE_EVERY * 2
    held = cap
    for _ in range(schedule.PROBE_EVERY * 2):
        held = held.after_completion(saturated=True)
    assert held.limit == 3 and held.learned == 3  # the probe held


def test_a_limit_that_drops_drops_the_cap_to_what_is_in_flight() -> None:
    cap = Cap(limit=8, learned=8).after_limit_reply([1.0] * 3)
    assert cap.limit == 3 and cap.learned == 3
    assert Cap(limit=4).after_limit_reply([]).limit == 1  # never below one


def test_the_configured_ceiling_is_never_passed() -> None:
    cap = Cap(limit=2, ceiling=2)
    assert cap.after_completion(saturated=True).limit == 2
    assert cap.after_accept([1.0, 1.0]).limit == 2
    assert cap.free([1.0]) and not cap.free([1.0, 1.0])


# -- how fast -------------------------------------------------------------------------------


def test_rates_double_until_a_limit_reply_then_back_off_and_grow_slowly() -> None:
    rate = Rate(1.0)
    for _ in range(schedule.SLOW_START_AFTER):
        rate = rate.after_success()
    assert rate.per_second == 2.0  # slow start
    rate = rate.after_limit_reply()
    assert rate.per_second == 1.0 and rate.limited
    for _ in range(schedule.GROW_AFTER * 4 - 1):
        rate = rate.after_success()
    assert rate.per_second == 1.0  # slowly now
    rate = rate.after_success()
    assert rate.per_second == pytest.approx(1.0 + schedule.RATE_GROWTH)
    assert rate.after_limit_reply().per_second == pytest.approx(0.75 * rate.per_second)
    assert Rate(0.3).after_limit_reply().per_second == schedule.RATE_FLOOR
    capped = Rate(4.0, ceiling=4.0)
    for _ in range(schedule.GROW_AFTER):
        capped = capped.after_success()
    assert capped.per_second == 4.0


def test_a_rate_that_holds_nothing_back_does_not_grow() -> None:
    rate = Rate(1.0)
    for _ in range(50):
        rate = rate.after_success(binding=False)
    assert rate.per_second == 1.0
    assert rate.after_success(binding=True).per_second == 2.0  # at once when it binds


def test_a_poll_rate_probes_the_quota_patiently() -> None:
    polls = Rate(schedule.DEFAULT_POLL_RATE, limited=True, patience=schedule.POLL_PATIENCE)
    for _ in range(schedule.POLL_PATIENCE - 1):
        polls = polls.after_success()
    assert polls.per_second == schedule.DEFAULT_POLL_RATE  # submits would have grown by now
    polls = polls.after_success()
    assert polls.per_second == pytest.approx(schedule.DEFAULT_POLL_RATE * 1.25)
    over = polls.after_limit_reply()  # above the quota: back by a quarter, not halved
    assert over.per_second == pytest.approx(0.75 * polls.per_second) and over.clean == 0


def test_limit_backoff_doubles_and_is_capped() -> None:
    assert [schedule.limit_backoff(n) for n in (1, 2, 3, 4, 5, 9)] == [1, 2, 4, 8, 15, 15]


def test_what_the_account_was_seen_to_hold_is_a_floor_under_the_limit() -> None:
    cap = Cap(limit=7, learned=7, measured=True)
    proven = cap.after_proven(8)  # it took an eighth while seven of ours surely ran
    assert proven.limit == 8 and proven.learned == 8 and proven.proven == 8
    assert proven.after_proven(6) == proven  # a smaller count says nothing new
    # A 50430 measured at 7.4 running cannot take the limit below what was held.
    assert proven.after_measured(7.4).limit == 8
    assert Cap(limit=3, learned=3, ceiling=4).after_proven(6).limit == 4  # the ceiling holds
    dropped = proven.after_limit_reply([1.0] * 3)  # refused with 3 of ours: it dropped
    assert dropped.limit == 3 and dropped.proven == 0
    assert dropped.after_measured(3.2).limit == 3
    slow_start = Cap(limit=5).after_proven(4)  # nothing learned yet: only remembered
    assert slow_start.limit == 5 and slow_start.learned is None and slow_start.proven == 4


def test_gaps_are_capped_by_moving_the_excess_to_the_short_ones() -> None:
    capped = schedule.cap_gaps([2.0, 0.67, 0.33], 1.5)
    assert max(capped) == pytest.approx(1.5) and sum(capped) == pytest.approx(3.0)
    assert capped[1] / capped[2] == pytest.approx(0.67 / 0.33)  # shared in proportion
    assert schedule.cap_gaps([1.0, 1.0], 1.5) == [1.0, 1.0]  # nothing to do


def test_a_plan_notices_quick_finishes_within_the_gap_when_its_points_can_afford_it() -> None:
    quick = _even(1.0, 4.0)
    plan = schedule.poll_plan(quick, 2, max_gap=1.5)  # least idle: (3, 4), a 2 s first gap
    assert plan == pytest.approx((2.5, 4.0))
    gaps = [b - a for a, b in itertools.pairwise((1.0, *plan))]
    assert max(gaps) <= 1.5 + 1e-9
    slow = _even(10.0, 60.0)  # 50 s in 5 points: no plan fits 1.5 s gaps; unchanged
    assert schedule.poll_plan(slow, 5, max_gap=1.5) == schedule.poll_plan(slow, 5)


def test_the_poll_budget_shares_what_is_left_among_the_frames_left() -> None:
    # 30 frames, nothing spent: 2.9 polls each allows (k + 2) / 3 <= 2.9, k = 6.
    assert schedule.budget_points(0, 0, 30) == 6
    # The first five cost 25 polls (learning): 62 left for 25 frames, 2.48 each: k = 5.
    assert schedule.budget_points(25, 5, 30) == 5
    # Thrifty so far (a learned folder): 87 - 40 = 47 for 10 frames, 4.7 each: capped.
    assert schedule.budget_points(40, 20, 30) == schedule.MAX_PLAN_POINTS
    assert schedule.budget_points(200, 10, 30) == 2  # overspent: the least plan still polls
    assert schedule.budget_points(0, 0, 0) >= 2  # nothing known: no division by zero
