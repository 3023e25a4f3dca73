"""The check pass's pure decisions: every status and every error kind, one answer each."""

from __future__ import annotations

import pytest

from asyncimg.lifecycle import decide
from asyncimg.lifecycle.download import DownloadAbandoned, ImageCheckFailed, SaveFailed
from asyncimg.protocol.client import Result, TaskStatus
from asyncimg.protocol.errors import (
    AsyncImgError,
    AuthError,
    ConcurrencyLimited,
    ConfigError,
    ConnectFailed,
    EmptyResult,
    InputRejected,
    InvalidInput,
    NetworkError,
    NoProgress,
    OutputRejected,
    RateLimited,
    ReplyUnreadable,
    RequestRefused,
    ServerError,
    TaskGone,
    classify_business,
    classify_gateway,
)
from asyncimg.store.record import TaskRecord
from asyncimg.store.states import TaskState

S = TaskState


def _record(
    status: TaskState = S.PENDING,
    *,
    task_id: str | None = None,
    created_at: float = 100.0,
    local_id: str | None = None,
) -> TaskRecord:
    if task_id is None and status not in (S.PENDING, S.FAILED, S.UNCONFIRMED):
        task_id = f"t{created_at:.0f}{status.value}"
    extra = {"local_id": local_id} if local_id else {}
    return TaskRecord(
        task_id=task_id,
        output_path="out/f.png",
        filename="f.png",
        prompt="p",
        full_prompt="p",
        status=status,
        created_at=created_at,
        updated_at=created_at,
        **extra,
    )


# -- statuses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (TaskStatus.IN_QUEUE, S.SUBMITTED),
        (TaskStatus.GENERATING, S.PROCESSING),
        (TaskStatus.PROCESSING, S.PROCESSING),
    ],
)
def test_in_progress_statuses_map_to_the_guides_states(status: TaskStatus, state: S) -> None:
    assert decide.state_for_status(status) is state
    decision = decide.after_poll(Result("t1", status))
    assert decision == decide.Decision(state)
    assert not decision.download and not decision.fails


@pytest.mark.parametrize(
    "images",
    [
        {"image_urls": ["http://x/0.png"]},
        {"images_base64": ["aGVsbG8="]},
        {"image_urls": ["http://x/0.png", "http://x/1.png"], "images_base64": ["aGVsbG8="]},
    ],
)
def test_done_with_images_means_download_and_keep_state_until_saved(
    images: dict[str, list[str]],
) -> None:
    decision = decide.after_poll(Result("t1", TaskStatus.DONE, **images))
    assert decision.download is True
    assert decision.state is None  # completed only once the files are verified on disk
    assert decision.error is None and not decision.fails


@pytest.mark.parametrize(
    ("result", "kind", "code"),
    [
        (Result("t1", TaskStatus.DONE, request_id="r1"), EmptyResult, 10000),
        (Result("t1", TaskStatus.NOT_FOUND, request_id="r1"), TaskGone, "not_found"),
        (Result("t1", TaskStatus.EXPIRED, request_id="r1"), TaskGone, "expired"),
    ],
)
def test_gone_or_empty_results_fail_resubmittable(
    result: Result, kind: type[AsyncImgError], code: object
) -> None:
    decision = decide.after_poll(result)
    assert decision.state is S.FAILED and decision.fails
    assert not decision.download
    assert isinstance(decision.error, kind)
    assert decision.error.resubmittable and not decision.error.retryable
    assert decision.error.code == code and decision.error.request_id == "r1"
    assert "resubmit" in decide.failure_reason(decision.error)


def test_every_wire_status_has_a_decision() -> None:
    for status in TaskStatus:
        decision = decide.after_poll(Result("t1", status, image_urls=["u"]))
        if status in (TaskStatus.NOT_FOUND, TaskStatus.EXPIRED):
            assert decision.fails
        elif status is TaskStatus.DONE:
            assert decision.download
        else:
            assert decision.state in (S.SUBMITTED, S.PROCESSING)


# -- errors -----------------------------------------------------------------------------------

WAITING_HELPS: list[AsyncImgError] = [
    classify_business(50429, "", "r"),
    classify_business(50430, "", "r"),
    classify_business(50500, "", "r"),
    classify_business(50501, "", "r"),
    classify_business(59999, "", "r", 503),
    classify_gateway("InternalError", "", "r", 500),
    classify_gateway("InternalServiceTimeout", "", "r", 504),
    classify_gateway("FlowLimitExceeded", "", "r", 429),
    classify_gateway("ServiceUnavailableTemp", "", "r", 503),
    classify_gateway("InternalServiceError", "", "r", 502),
    NetworkError("connection reset"),
    ServerError("the service answered 502"),
]

# Our own request refused (issue item 7): never a task's fault, on a poll or a submit.
REQUEST_REFUSED: list[AsyncImgError] = [
    classify_gateway(c, "", "r", 400)
    for c in ("MissingParameter", "MissingRequestInfo", "InvalidActionOrVersion")
]

WAITING_DOES_NOT_HELP: list[AsyncImgError] = [
    *(classify_business(c, "", "r") for c in (50411, 50412, 50413, 50518, 50512)),
    classify_business(50511, "", "r"),
    classify_business(50519, "", "r"),
    *(classify_business(c, "", "r", 500) for c in (50520, 50521, 50522)),
    classify_business(50400, "", "r"),
    *REQUEST_REFUSED,
    *(
        classify_gateway(c, "", "r", 400)
        for c in (
            "InvalidAuthorization",
            "InvalidCredential",
            "InvalidTimestamp",
            "InvalidAccessKey",
            "SignatureDoesNotMatch",
            "InvalidSecretToken",
            "AccessDenied",
        )
    ),
    ConfigError("VOLC_ACCESSKEY is not set"),
    TaskGone("gone", code="not_found"),
    EmptyResult("no image"),
]


def _id(error: AsyncImgError) -> str:
    return f"{error.kind}-{error.code}"


@pytest.mark.parametrize("error", WAITING_HELPS, ids=_id)
def test_retryable_errors_keep_the_task_and_note_the_error(error: AsyncImgError) -> None:
    decision = decide.after_error(error)
    assert decision.state is None and not decision.fails and not decision.halt
    assert not decision.stalled  # the service's own hiccups never count toward giving up
    assert decision.error is error
    assert decide.stop_submitting(error)


SETUP_PROBLEMS = [
    e for e in WAITING_DOES_NOT_HELP if isinstance(e, AuthError | ConfigError | RequestRefused)
]
TASK_PROBLEMS = [e for e in WAITING_DOES_NOT_HELP if e not in SETUP_PROBLEMS]


@pytest.mark.parametrize("error", TASK_PROBLEMS, ids=_id)
def test_other_errors_fail_the_task(error: AsyncImgError) -> None:
    decision = decide.after_error(error)
    assert decision.state is S.FAILED and decision.fails
    assert decision.error is error
    assert not decide.stop_submitting(error)


@pytest.mark.parametrize("error", SETUP_PROBLEMS, ids=_id)
def test_setup_problems_never_change_a_tasks_state(error: AsyncImgError) -> None:
    # A wrong key, a skewed clock, an expired token or our own malformed request is not
    # the task's fault: failing it would drop its result, and `retry` would pay again.
    assert decide.is_setup_problem(error)
    for decision in (decide.after_error(error), decide.after_submit_error(error)):
        assert decision.state is None and decision.halt and decision.error is error
    assert decide.stop_submitting(error)


def test_50200_on_a_poll_is_our_request_and_halts_but_on_a_submit_fails_the_frame() -> None:
    error = classify_business(50200, "Invalid parameter", "r")
    poll = decide.after_error(error)
    assert poll.state is None and poll.halt
    submit = decide.after_submit_error(error)
    assert submit.state is S.FAILED and not submit.halt


def test_request_refusals_are_their_own_kind() -> None:
    assert all(isinstance(e, RequestRefused) for e in REQUEST_REFUSED)
    assert not any(e.retryable or e.resubmittable for e in REQUEST_REFUSED)


def test_error_classes_split_as_the_spec_says() -> None:
    kinds = {type(e) for e in WAITING_DOES_NOT_HELP}
    assert {InputRejected, OutputRejected, AuthError, ConfigError, RequestRefused} <= kinds
    assert {RateLimited, ConcurrencyLimited, ServerError, NetworkError} <= {
        type(e) for e in WAITING_HELPS
    }
    # Output review failures are failed, but a new submission may pass.
    assert all(e.resubmittable for e in WAITING_DOES_NOT_HELP if isinstance(e, OutputRejected))


@pytest.mark.parametrize(
    "error",
    [
        classify_business(50429, "", "r"),
        classify_business(50430, "", "r"),
        classify_business(50500, "", "r"),
        classify_gateway("FlowLimitExceeded", "", "r", 429),
        classify_gateway("ServiceUnavailableTemp", "", "r", 503),
        ConnectFailed("connection refused"),
    ],
    ids=_id,
)
def test_submit_refusals_that_created_nothing_leave_the_task_pending(
    error: AsyncImgError,
) -> None:
    decision = decide.after_submit_error(error)
    assert decision.state is S.PENDING and not decision.fails
    assert decision.error is error
    assert decide.stop_submitting(error)


@pytest.mark.parametrize(
    "error",
    [
        NetworkError("CVSync2AsyncSubmitTask failed: timed out"),
        NetworkError("CVSync2AsyncSubmitTask failed: Server disconnected"),
        ReplyUnreadable("HTTP 502 with a non-JSON reply '<html>'", http_status=502),
        ReplyUnreadable("submit answered success without a data.task_id"),
        classify_gateway("InternalError", "", "r", 500),
        classify_gateway("InternalServiceTimeout", "", "r", 504),
        classify_gateway("InternalServiceError", "", "r", 502),
    ],
    ids=_id,
)
def test_submit_outcomes_that_may_hide_a_task_make_it_unconfirmed(error: AsyncImgError) -> None:
    decision = decide.after_submit_error(error)
    assert decision.state is S.UNCONFIRMED and not decision.fails
    assert decide.stop_submitting(error)


@pytest.mark.parametrize(
    "error",
    [
        classify_business(50200, "prompt too long", "r"),
        classify_business(50412, "", "r"),
        InvalidInput("character_images[0]", "chars/x.png", "no such file"),
    ],
    ids=_id,
)
def test_submit_input_errors_fail_the_task(error: AsyncImgError) -> None:
    decision = decide.after_submit_error(error)
    assert decision.state is S.FAILED and decision.fails
    assert decision.error is error


def test_concurrency_limit_pends_even_if_marked_not_retryable() -> None:
    error = ConcurrencyLimited("limit", code=50430, retryable=False)
    assert decide.after_submit_error(error).state is S.PENDING
    assert decide.stop_submitting(error)


# -- stalled polls ----------------------------------------------------------------------------


def test_a_reply_without_data_is_a_stalled_poll_not_a_failure() -> None:
    error = ReplyUnreadable("poll reply has no data object")
    decision = decide.after_error(error)
    assert decision.stalled and decision.state is None


@pytest.mark.parametrize(
    ("passes", "elapsed", "fails"),
    [
        (1, 0.0, False),
        (decide.MAX_STALLED_PASSES - 1, 10_000.0, False),  # many seconds, too few polls
        (decide.MAX_STALLED_PASSES, decide.MIN_STALLED_S - 1, False),  # many polls, too soon
        (decide.MAX_STALLED_PASSES, decide.MIN_STALLED_S, True),
        (50, 5_000.0, True),
    ],
)
def test_stalled_polls_fail_only_past_both_limits(passes: int, elapsed: float, fails: bool) -> None:
    stalled = decide.Decision(None, error=ReplyUnreadable("no data"), stalled=True)
    decision = decide.after_stall(stalled, passes, 1000.0, 1000.0 + elapsed)
    assert decision.fails is fails
    if fails:
        assert isinstance(decision.error, NoProgress) and decision.error.resubmittable
        assert "no data" in decision.error.message


def test_after_stall_leaves_other_decisions_alone() -> None:
    plain = decide.Decision(S.PROCESSING)
    assert decide.after_stall(plain, 99, 0.0, 1e6) is plain


# -- unconfirmed submits ----------------------------------------------------------------------


def _unconfirmed(spent: int, created_at: float = 100.0) -> TaskRecord:
    return TaskRecord(
        output_path="out/u.png",
        filename="u.png",
        prompt="p",
        full_prompt="p",
        status=S.UNCONFIRMED,
        created_at=created_at,
        updated_at=created_at,
        unconfirmed_resubmits=spent,
    )


@pytest.mark.parametrize(
    ("spent", "budget", "resubmit"), [(0, 1, True), (1, 1, False), (0, 0, False), (2, 3, True)]
)
def test_unconfirmed_resubmits_stay_within_the_budget(
    spent: int, budget: int, resubmit: bool
) -> None:
    record = _unconfirmed(spent)
    assert decide.may_resubmit_unconfirmed(record, budget) is resubmit
    assert decide.waits_for_user(record, budget) is not resubmit
    assert (record in decide.submit_queue([record], budget)) is resubmit


def test_submit_queue_is_oldest_first_over_pending_and_unconfirmed() -> None:
    waiting = _unconfirmed(1, created_at=10.0)
    again = _unconfirmed(0, created_at=150.0)
    pending = _record(created_at=200.0)
    older = _record(created_at=50.0)
    flying = _record(S.SUBMITTED, created_at=1.0)
    queue = decide.submit_queue([pending, waiting, flying, again, older], 1)
    assert queue == [older, again, pending]


def test_failure_reason_is_one_line_with_the_hint_and_request_id() -> None:
    error = classify_business(50511, "", "req-123")
    reason = decide.failure_reason(error)
    assert "\n" not in reason
    assert "output image failed review" in reason and "50511" in reason
    assert "req-123" in reason and "resubmit" in reason
    plain = AsyncImgError("something")
    assert decide.failure_reason(plain) == "something"


# -- the local queue --------------------------------------------------------------------------


def test_submit_queue_is_oldest_first_and_only_queued() -> None:
    a = _record(created_at=300.0, local_id="a")
    b = _record(created_at=100.0, local_id="zz")
    c = _record(created_at=100.0, local_id="bb")  # same time: local_id breaks the tie
    d = _record(created_at=200.0, local_id="d")
    others = [
        _record(S.SUBMITTED, created_at=50.0),
        _record(S.PROCESSING, created_at=50.0),
        _record(S.FAILED, created_at=50.0),
        _record(S.COMPLETED, created_at=50.0),
    ]
    ordered = decide.submit_queue([a, *others, b, d, c], 1)
    assert [r.local_id for r in ordered] == ["bb", "zz", "d", "a"]
    assert decide.submit_queue(others, 1) == []


@pytest.mark.parametrize(
    ("flying", "limit", "budget"),
    [(0, None, None), (50, None, None), (0, 4, 4), (1, 4, 3), (4, 4, 0), (9, 4, 0)],
)
def test_submit_budget(flying: int, limit: int | None, budget: int | None) -> None:
    assert decide.submit_budget(flying, limit) == budget


def test_in_flight_is_submitted_and_processing_with_a_task_id() -> None:
    states = [s for s in TaskState if s is not S.UNCONFIRMED]
    records = [_record(s, created_at=float(i)) for i, s in enumerate(states)]
    flying = decide.in_flight(records)
    assert sorted(r.status.value for r in flying) == ["processing", "submitted"]
    assert all(r.task_id for r in flying)


CORRUPT = ImageCheckFailed("the image is incomplete or corrupt (broken data)", request_id="r1")
RETRY = "asyncimg retry 7392 --tasks-dir /p/async_tasks"


def test_a_corrupt_image_is_fetched_again_while_either_limit_is_not_passed() -> None:
    """Three corrupt downloads a second apart (the scheduler refetches at its floor) gave
    up a paid image: a CDN glitch of a few seconds cost a second bill."""
    quick = decide.after_download_error(CORRUPT, 3, 100.0, 102.0, retry=RETRY)
    assert quick.state is None and quick.error is CORRUPT and not quick.stalled
    few = decide.after_download_error(CORRUPT, 2, 100.0, 100.0 + decide.MIN_CORRUPT_S)
    assert few.state is None  # long enough, but corrupt only twice
    once = decide.after_download_error(CORRUPT, 1, 100.0, 100.0 + 10 * decide.MAX_CORRUPT_S)
    assert once.state is None  # one corrupt download says nothing about the result


def test_a_corrupt_image_fails_the_frame_after_three_downloads_and_a_minute() -> None:
    now = 100.0 + decide.MIN_CORRUPT_S
    final = decide.after_download_error(
        CORRUPT, decide.MAX_CORRUPT_DOWNLOADS, 100.0, now, retry=RETRY
    )
    assert final.state is S.FAILED and not final.stalled
    assert isinstance(final.error, DownloadAbandoned)
    assert final.error.resubmittable and not final.error.retryable
    assert final.error.request_id == "r1"
    message = final.error.message
    assert f"corrupt in 3 downloads over {int(decide.MIN_CORRUPT_S)} s" in message
    assert "broken data" in message and message.endswith(RETRY)


def test_a_corrupt_image_seen_again_long_after_fails_whatever_the_count() -> None:
    """Passes far apart (`check` from cron): twice corrupt an hour apart is the result itself
    broken; waiting for a third until the service drops the task (~12 h) only hides why."""
    late = decide.after_download_error(CORRUPT, 2, 100.0, 100.0 + decide.MAX_CORRUPT_S, retry=RETRY)
    assert late.state is S.FAILED and isinstance(late.error, DownloadAbandoned)
    assert "corrupt in 2 downloads over 3600 s" in late.error.message


def test_refetch_delay_doubles_from_the_floor_after_each_corrupt_download() -> None:
    delays = [decide.refetch_delay(n, 1.0) for n in range(9)]
    assert delays == [1.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert decide.refetch_delay(0, 5.0) == 5.0 and decide.refetch_delay(9, 45.0) == 45.0
    # Downloads at 0, 1, 3, 7, 15, 31, 61 s: the seventh is past both limits.
    at = [0.0]
    for n in range(1, 7):
        at.append(at[-1] + decide.refetch_delay(n, 1.0))
    assert at[-1] - at[0] >= decide.MIN_CORRUPT_S and len(at) >= decide.MAX_CORRUPT_DOWNLOADS


@pytest.mark.parametrize(
    "error",
    [
        NetworkError("reset"),
        TaskGone("image URL answered HTTP 403 (URLs are valid 24 h)", code=403),
        TaskGone("image URL answered HTTP 404 (URLs are valid 24 h)", code=404),
        ServerError("image download answered HTTP 502", http_status=502),
    ],
    ids=_id,
)
def test_a_failed_fetch_never_fails_the_task_at_once(error: AsyncImgError) -> None:
    # The next poll hands out fresh URLs; only many stalled polls over a long time give up.
    decision = decide.after_download_error(error, 99, 0.0, 1e6)
    assert decision.state is None and decision.stalled and decision.error is error


def test_an_image_that_cannot_be_written_fails_the_task_with_the_way_out() -> None:
    error = SaveFailed("out.png: cannot write image (Is a directory)")
    decision = decide.after_download_error(error, 0, None, 100.0)
    assert decision.state is S.FAILED
    assert "--output" in decide.failure_reason(error)
