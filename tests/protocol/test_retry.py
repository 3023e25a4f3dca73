"""The retry policy, directly."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from asyncimg import constants
from asyncimg.protocol import errors as E
from asyncimg.protocol.retry import retry_delay, should_retry

SUBMIT, POLL = constants.ACTION_SUBMIT, constants.ACTION_GET_RESULT


def test_polls_retry_every_retryable_kind_until_the_budget() -> None:
    for err in (E.RateLimited("x"), E.ServerError("x"), E.NetworkError("x")):
        assert should_retry(err, action=POLL, attempt=1, max_attempts=3)
        assert not should_retry(err, action=POLL, attempt=3, max_attempts=3)


def test_never_retry_what_waiting_cannot_fix() -> None:
    for err in (E.AuthError("x"), E.InputRejected("x"), E.OutputRejected("x"), E.TaskGone("x")):
        assert not should_retry(err, action=POLL, attempt=1, max_attempts=9)


def test_submit_is_never_blindly_repeated() -> None:
    # No reply: the task may exist; repeating would bill twice.
    assert not should_retry(E.NetworkError("x"), action=SUBMIT, attempt=1, max_attempts=3)
    # Capacity frees in minutes: the caller queues the task instead.
    assert not should_retry(E.ConcurrencyLimited("x"), action=SUBMIT, attempt=1, max_attempts=3)
    # The service answered with an error code: no task was created, repeating is safe.
    for code in (50429, 50500, 50501):
        err = E.classify_business(code, "", None, 500)
        assert should_retry(err, action=SUBMIT, attempt=1, max_attempts=3)
    # A code-less server error (e.g. a proxy's page) may hide a created task.
    assert not should_retry(E.ServerError("x"), action=SUBMIT, attempt=1, max_attempts=3)


def test_review_service_errors_are_not_retried() -> None:
    err = E.classify_business(50520, "", None, 500)
    assert not should_retry(err, action=POLL, attempt=1, max_attempts=3)


def test_delay_grows_and_is_capped() -> None:
    delays = [retry_delay(a, base=1, cap=8, jitter=1.0) for a in range(1, 7)]
    assert delays == [1, 2, 4, 8, 8, 8]


def test_retry_after_wins_when_longer() -> None:
    assert retry_delay(1, base=1, cap=8, jitter=1.0, retry_after=20) == 20
    assert retry_delay(3, base=1, cap=8, jitter=1.0, retry_after=0.5) == 4


@given(attempt=st.integers(1, 50), jitter=st.floats(0, 1), base=st.floats(0.01, 5))
def test_delay_bounds(attempt: int, jitter: float, base: float) -> None:
    d = retry_delay(attempt, base=base, cap=30, jitter=jitter)
    ceiling = min(30, base * 2 ** (attempt - 1))
    assert ceiling / 2 - 1e-9 <= d <= ceiling + 1e-9


def test_submit_is_not_repeated_after_gateway_errors_that_may_have_reached_the_service() -> None:
    for code, status in (
        ("InternalServiceTimeout", 504),
        ("InternalServiceError", 502),
        ("InternalError", 500),
    ):
        err = E.classify_gateway(code, "", None, status)
        assert err.retryable
        assert not should_retry(err, action=SUBMIT, attempt=1, max_attempts=3)
        assert should_retry(err, action=POLL, attempt=1, max_attempts=3)
    unavailable = E.classify_gateway("ServiceUnavailableTemp", "", None, 503)
    assert should_retry(unavailable, action=SUBMIT, attempt=1, max_attempts=3)


def test_submit_is_not_repeated_after_replies_that_may_hide_a_created_task() -> None:
    from asyncimg.protocol.client import _parse_envelope

    with_html = None
    try:
        _parse_envelope(SUBMIT, 504, b"<html>504 Gateway Time-out</html>")
    except E.ServerError as exc:
        with_html = exc
    assert with_html is not None and with_html.retryable
    assert not should_retry(with_html, action=SUBMIT, attempt=1, max_attempts=3)
    no_task_id = E.ServerError("submit succeeded without a data.task_id")
    assert not should_retry(no_task_id, action=SUBMIT, attempt=1, max_attempts=3)
    assert should_retry(no_task_id, action=POLL, attempt=1, max_attempts=3)
    flow = E.classify_gateway("FlowLimitExceeded", "", None, 429)
    assert should_retry(flow, action=SUBMIT, attempt=1, max_attempts=3)
