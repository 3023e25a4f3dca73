"""The check pass's pure decisions: every status and every error kind, one answer each."""

from __future__ import annotations

import pytest

from asyncimg.lifecycle import decide
from asyncimg.lifecycle.download import ImageCheckFailed, SaveFailed
from asyncimg.protocol.client import Result, TaskStatus
from asyncimg.protocol.errors import (
    AsyncImgError,
    AuthError,
    ConcurrencyLimited,
    ConfigError,
    EmptyResult,
    InputRejected,
    InvalidInput,
    NetworkError,
    OutputRejected,
    RateLimited,
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
    if task_id is None and status is not S.PENDING and status is not S.FAILED:
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
    ServerError("reply has no data.status"),
    ImageCheckFailed("the image is incomplete or corrupt"),
    SaveFailed("out.png: cannot write image"),
]

WAITING_DOES_NOT_HELP: list[AsyncImgError] = [
    *(classify_business(c, "", "r") for c in (50411, 50412, 50413, 50518, 50512, 50200)),
    classify_business(50511, "", "r"),
    classify_business(50519, "", "r"),
    *(classify_business(c, "", "r", 500) for c in (50520, 50521, 50522)),
    classify_business(50400, "", "r"),
    *(
        classify_gateway(c, "", "r", 400)
        for c in (
            "MissingParameter",
            "MissingRequestInfo",
            "InvalidActionOrVersion",
            "InvalidAuthorization",
            "InvalidCredential",
            "InvalidTimestamp",
            "InvalidAccessKey",
            "SignatureDoesNotMatch",
            "InvalidSecretToken",
            "AccessDenied",
        )
    ),
    InvalidInput("size", "720x1280", "area too small"),
    ConfigError("VOLC_ACCESSKEY is not set"),
    TaskGone("gone", code="not_found"),
    EmptyResult("no image"),
]


def _id(error: AsyncImgError) -> str:
    return f"{error.kind}-{error.code}"


@pytest.mark.parametrize("error", WAITING_HELPS, ids=_id)
def test_retryable_errors_keep_the_task_and_note_the_error(error: AsyncImgError) -> None:
    decision = decide.after_error(error)
    assert decision.state is None and not decision.fails
    assert decision.error is error
    assert decide.stop_submitting(error)


SETUP_PROBLEMS = [e for e in WAITING_DOES_NOT_HELP if isinstance(e, AuthError | ConfigError)]
TASK_PROBLEMS = [e for e in WAITING_DOES_NOT_HELP if e not in SETUP_PROBLEMS]


@pytest.mark.parametrize("error", TASK_PROBLEMS, ids=_id)
def test_other_errors_fail_the_task(error: AsyncImgError) -> None:
    decision = decide.after_error(error)
    assert decision.state is S.FAILED and decision.fails
    assert decision.error is error
    assert not decide.stop_submitting(error)


@pytest.mark.parametrize("error", SETUP_PROBLEMS, ids=_id)
def test_setup_problems_never_fail_an_accepted_task(error: AsyncImgError) -> None:
    # A wrong key, a skewed clock or an expired token is not the task's fault: failing it
    # would drop its result, and `retry` would pay for the frame again.
    assert decide.is_setup_problem(error)
    decision = decide.after_error(error)
    assert decision.state is None and decision.error is error
    assert decide.stop_submitting(error)
    # A submit refused for setup reasons created no task: failing that record is safe.
    assert decide.after_submit_error(error).state is S.FAILED


def test_error_classes_split_as_the_spec_says() -> None:
    kinds = {type(e) for e in WAITING_DOES_NOT_HELP}
    assert {InputRejected, InvalidInput, OutputRejected, AuthError, ConfigError} <= kinds
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
        NetworkError("timed out"),
    ],
    ids=_id,
)
def test_submit_limits_and_outages_leave_the_task_pending(error: AsyncImgError) -> None:
    decision = decide.after_submit_error(error)
    assert decision.state is S.PENDING and not decision.fails
    assert decision.error is error
    assert decide.stop_submitting(error)


@pytest.mark.parametrize(
    "error",
    [
        classify_business(50200, "prompt too long", "r"),
        classify_business(50412, "", "r"),
        classify_business(50400, "", "r"),
        classify_gateway("SignatureDoesNotMatch", "", "r", 401),
        classify_gateway("InvalidTimestamp", "", "r", 400),
        InvalidInput("character_images[0]", "chars/x.png", "no such file"),
        ConfigError("VOLC_SECRETKEY is not set"),
    ],
    ids=_id,
)
def test_submit_input_and_auth_errors_fail_the_task(error: AsyncImgError) -> None:
    decision = decide.after_submit_error(error)
    assert decision.state is S.FAILED and decision.fails
    assert decision.error is error


def test_concurrency_limit_pends_even_if_marked_not_retryable() -> None:
    error = ConcurrencyLimited("limit", code=50430, retryable=False)
    assert decide.after_submit_error(error).state is S.PENDING
    assert decide.stop_submitting(error)


def test_failure_reason_is_one_line_with_the_hint_and_request_id() -> None:
    error = classify_business(50511, "", "req-123")
    reason = decide.failure_reason(error)
    assert "\n" not in reason
    assert "output image failed review" in reason and "50511" in reason
    assert "req-123" in reason and "resubmit" in reason
    plain = AsyncImgError("something")
    assert decide.failure_reason(plain) == "something"


# -- the local queue --------------------------------------------------------------------------


def test_pending_in_order_is_oldest_first_and_only_pending() -> None:
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
    ordered = decide.pending_in_order([a, *others, b, d, c])
    assert [r.local_id for r in ordered] == ["bb", "zz", "d", "a"]
    assert decide.pending_in_order(others) == []


@pytest.mark.parametrize(
    ("flying", "limit", "budget"),
    [(0, None, None), (50, None, None), (0, 4, 4), (1, 4, 3), (4, 4, 0), (9, 4, 0)],
)
def test_submit_budget(flying: int, limit: int | None, budget: int | None) -> None:
    assert decide.submit_budget(flying, limit) == budget


def test_in_flight_is_submitted_and_processing_with_a_task_id() -> None:
    records = [_record(s, created_at=float(i)) for i, s in enumerate(TaskState)]
    flying = decide.in_flight(records)
    assert sorted(r.status.value for r in flying) == ["processing", "submitted"]
    assert all(r.task_id for r in flying)


def test_after_download_error_gives_up_only_on_repeated_corrupt_images() -> None:
    from asyncimg.lifecycle.download import DownloadAbandoned
    from asyncimg.protocol.errors import NetworkError

    corrupt = ImageCheckFailed("the image is incomplete or corrupt", request_id="r1")
    early = decide.after_download_error(corrupt, 2, 3)
    assert early.state is None and early.error is corrupt
    final = decide.after_download_error(corrupt, 3, 3)
    assert final.state is S.FAILED
    assert isinstance(final.error, DownloadAbandoned)
    assert final.error.resubmittable and not final.error.retryable
    assert final.error.request_id == "r1" and "3 downloads in a row" in final.error.message
    network = decide.after_download_error(NetworkError("reset"), 9, 3)
    assert network.state is None  # the network is never the image's fault
