"""The scheduler's pure decisions: ETA, next poll, in-flight cap (AIMD), call rates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asyncimg.lifecycle import schedule
from asyncimg.lifecycle.schedule import Cap, Estimate, EtaModel, Rate, bucket_of, next_poll_delay

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
    learned = EtaModel.learn([(PORTRAIT, s) for s in (3.0, 4.0, 5.0)])
    estimate = learned.estimate(PORTRAIT)
    assert estimate.mean == pytest.approx(4.0) and estimate.std == pytest.approx(1.0)


def test_another_size_of_the_same_model_borrows_its_figures() -> None:
    learned = EtaModel.learn([(PORTRAIT, s) for s in (30.0, 40.0, 50.0)])
    square = learned.estimate(bucket_of(V40, {"width": 2048, "height": 2048}))
    assert square.mean == pytest.approx(40.0)
    assert learned.estimate(("jimeng_t2i_v31", "default")) == learned.prior


def test_the_spread_never_collapses_to_zero() -> None:
    learned = EtaModel.learn([(PORTRAIT, 10.0)] * 5)
    assert learned.estimate(PORTRAIT).std == pytest.approx(1.0)  # a tenth of the mean


def test_nonsense_durations_are_ignored() -> None:
    model = EtaModel().observe(PORTRAIT, -1.0).observe(PORTRAIT, float("nan"))
    assert model.estimate(PORTRAIT) == model.prior


ETA = Estimate(mean=30.0, std=10.0, samples=10)


@pytest.mark.parametrize(
    ("elapsed", "delay"),
    [
        (0.0, 20.0),  # nothing before the earliest likely finish (mean - std)
        (15.0, 5.0),
        (20.0, 5.0),  # then every half spread
        (45.0, 5.0),
        (60.0, 15.0),  # late: backing off in proportion
    ],
)
def test_polls_are_dense_around_the_expected_finish(elapsed: float, delay: float) -> None:
    assert next_poll_delay(elapsed, ETA, floor=1.0, ceiling=30.0) == pytest.approx(delay)


@given(
    elapsed=st.floats(0, 1e5),
    mean=st.floats(0.1, 1e4),
    std=st.floats(0.01, 1e4),
    floor=st.floats(0.1, 5),
    ceiling=st.floats(0.1, 600),
)
def test_the_next_poll_is_always_within_floor_and_ceiling(
    elapsed: float, mean: float, std: float, floor: float, ceiling: float
) -> None:
    delay = next_poll_delay(elapsed, Estimate(mean, std, 3), floor=floor, ceiling=ceiling)
    assert floor <= delay <= max(floor, ceiling)


def test_slow_start_grows_the_cap_each_saturated_completion_until_a_limit_reply() -> None:
    cap = Cap()
    for expected in (2, 3, 4):
        cap = cap.after_completion(saturated=True)
        assert cap.limit == expected
    assert cap.after_completion(saturated=False) == cap  # no evidence: no change
    cap = cap.after_limit_reply(in_flight=3)
    assert cap.limit == 3 and cap.learned == 3


def test_after_the_limit_is_known_the_cap_probes_slowly_and_backs_off_on_refusal() -> None:
    cap = Cap(limit=2, learned=2)
    for _ in range(schedule.PROBE_EVERY * 2 - 1):
        cap = cap.after_completion(saturated=True)
    assert cap.limit == 2
    cap = cap.after_completion(saturated=True)
    assert cap.limit == 3  # one probe above the learned limit
    refused = cap.after_limit_reply(in_flight=2)
    assert refused.limit == 2 and refused.probe_after == schedule.PROBE_EVERY * 2


def test_a_limit_that_drops_drops_the_cap_to_what_is_in_flight() -> None:
    cap = Cap(limit=8, learned=8).after_limit_reply(in_flight=3)
    assert cap.limit == 3 and cap.learned == 3
    assert Cap(limit=4).after_limit_reply(in_flight=0).limit == 1  # never below one


def test_the_configured_ceiling_is_never_passed() -> None:
    cap = Cap(limit=2, ceiling=2)
    assert cap.after_completion(saturated=True).limit == 2
    assert cap.free_slots(1) == 1 and cap.free_slots(5) == 0


def test_rates_double_until_a_limit_reply_then_halve_and_grow_slowly() -> None:
    rate = Rate(1.0)
    for _ in range(schedule.GROW_AFTER):
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


def test_limit_backoff_doubles_and_is_capped() -> None:
    assert [schedule.limit_backoff(n) for n in (1, 2, 3, 4, 5, 9)] == [1, 2, 4, 8, 15, 15]
