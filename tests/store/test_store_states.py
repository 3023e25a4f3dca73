"""The state machine: the table, the one way to move, the three revivals (each keeping the
earlier attempt in history), and that nothing else moves status."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from asyncimg.protocol.errors import AsyncImgError, OutputRejected
from asyncimg.store import (
    ErrorInfo,
    IllegalTransition,
    TaskRecord,
    TaskState,
    can_transition,
    retry_record,
    transition,
)
from asyncimg.store.record import ResultFile
from asyncimg.store.states import (
    REVIVALS,
    complete,
    is_revival,
    refetch_record,
    resubmit_unconfirmed,
)

P, U, S, R, C, F = (
    TaskState.PENDING,
    TaskState.UNCONFIRMED,
    TaskState.SUBMITTED,
    TaskState.PROCESSING,
    TaskState.COMPLETED,
    TaskState.FAILED,
)

# Written out independently of the implementation's tables, so a wrong table fails here.
EXPECTED = {
    (P, P), (P, U), (P, S), (P, R), (P, F),
    (U, U), (U, S), (U, R),
    (S, S), (S, R), (S, C), (S, F),
    (R, S), (R, R), (R, C), (R, F),
}  # fmt: skip
#: Only retry_record / resubmit_unconfirmed (→ pending) and refetch_record (failed →
#: submitted) make these; plain transition refuses them.
REVIVED = {(F, P), (U, P), (F, S)}
ALL_PAIRS = [(a, b) for a in TaskState for b in TaskState]


def make(status: TaskState = P, **extra: Any) -> TaskRecord:
    task_id = None if status in (P, U) else "t-100"
    data: dict[str, Any] = {
        "task_id": task_id,
        "output_path": "out/frame_01.png",
        "filename": "frame_01.png",
        "prompt": "a cat",
        "full_prompt": "a cat, watercolour",
        "status": status,
        "created_at": 10.0,
        "updated_at": 10.0,
        "local_id": "0123456789abcdef0123456789abcdef",
    }
    data.update(extra)
    return TaskRecord.model_validate(data)


def changes_for(old: TaskRecord, new: TaskState) -> dict[str, Any]:
    """The minimum a caller must change for the record to stay consistent in `new`."""
    if new in (P, U) and old.task_id is not None:
        return {"task_id": None}
    if new in (S, R, C) and old.task_id is None:
        return {"task_id": "t-200"}
    return {}


def test_state_values_are_the_guides_strings() -> None:
    assert [s.value for s in TaskState] == [
        "pending",
        "unconfirmed",
        "submitted",
        "processing",
        "completed",
        "failed",
    ]


@pytest.mark.parametrize(("old", "new"), ALL_PAIRS)
def test_can_transition_matches_the_table(old: TaskState, new: TaskState) -> None:
    assert can_transition(old, new) is ((old, new) in EXPECTED)


@pytest.mark.parametrize(("old", "new"), ALL_PAIRS)
def test_is_revival_matches_the_table(old: TaskState, new: TaskState) -> None:
    assert is_revival(old, new) is ((old, new) in REVIVED)
    assert (new in REVIVALS[old]) is ((old, new) in REVIVED)


@pytest.mark.parametrize(("old", "new"), sorted(EXPECTED))
def test_every_allowed_transition_works(old: TaskState, new: TaskState) -> None:
    record = make(old)
    moved = transition(record, new, now=99.0, **changes_for(record, new))
    assert moved.status is new
    assert moved.updated_at == 99.0
    assert record.status is old  # the input is untouched


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (C, C),
        (C, F),
        (C, P),
        (C, S),
        (F, F),
        (F, P),
        (F, S),
        (F, U),
        (F, C),
        (P, C),
        (S, P),
        (R, P),
        (S, U),
        (U, P),
        (U, F),
        (U, C),
    ],
)
def test_forbidden_transitions_raise_naming_task_and_states(old: TaskState, new: TaskState) -> None:
    record = make(old)
    with pytest.raises(IllegalTransition) as info:
        transition(record, new, now=99.0, **changes_for(record, new))
    text = str(info.value)
    assert (record.task_id or record.local_id) in text
    assert old.value in text and new.value in text
    assert isinstance(info.value, AsyncImgError)


def test_status_cannot_be_assigned() -> None:
    record = make(S)
    with pytest.raises(ValidationError):
        record.status = C  # type: ignore[misc]
    with pytest.raises(ValidationError):
        record.task_id = "other"  # type: ignore[misc]
    assert record.status is S


def test_transition_refuses_status_and_unknown_fields() -> None:
    record = make(S)
    with pytest.raises(TypeError, match="status"):
        transition(record, R, now=1.0, status=C)
    with pytest.raises(TypeError, match="updated_at"):
        transition(record, R, now=1.0, updated_at=5.0)
    with pytest.raises(TypeError, match="task_ID"):
        transition(record, R, now=1.0, task_ID="typo")


def test_transition_validates_the_result() -> None:
    with pytest.raises(ValidationError, match="needs a task_id"):
        transition(make(P), S, now=1.0)
    with pytest.raises(ValidationError, match="cannot have a task_id"):
        transition(make(P), U, now=1.0, task_id="t-1")
    with pytest.raises(ValidationError):
        transition(make(S), R, now=1.0, attempts="many")


def test_completing_fills_completed_time() -> None:
    done = transition(make(R), C, now=50.0)
    assert done.completed_time == 50.0
    given_time = transition(make(R), C, now=50.0, completed_time=45.0)
    assert given_time.completed_time == 45.0


def test_complete_records_the_files_and_clears_the_download_and_stall_counters() -> None:
    err = ErrorInfo(kind="ImageCheckFailed", message="truncated", time=20.0, retryable=True)
    busy = make(
        R,
        last_error=err,
        download_failures=2,
        corrupt_since=20.0,
        stalled_passes=3,
        stalled_since=15.0,
    )
    files = [ResultFile(path="out/frame_01.png", sha256="ab" * 32, bytes=10, width=1, height=1)]
    done = complete(busy, now=50.0, results=files)
    assert done.status is C and done.completed_time == 50.0 and done.results == files
    assert done.last_error is None and done.download_failures == 0
    assert done.corrupt_since is None and done.stalled_passes == 0 and done.stalled_since is None
    with pytest.raises(IllegalTransition):
        complete(make(P), now=50.0, results=files)


def test_same_state_records_a_new_error() -> None:
    err = ErrorInfo(kind="NetworkError", message="timeout", time=20.0, retryable=True)
    again = transition(make(R), R, now=20.0, last_error=err)
    assert again.status is R and again.last_error == err and again.updated_at == 20.0


def test_retry_record_keeps_the_earlier_attempt() -> None:
    exc = OutputRejected("output image failed review", code=50511, request_id="req-1")
    failed = transition(
        make(R, submit_time=11.0, attempts=1),
        F,
        now=30.0,
        last_error=ErrorInfo.from_exception(exc, 30.0),
    )
    again = retry_record(failed, now=40.0)
    assert again.status is P
    assert again.task_id is None and again.submit_time is None and again.last_error is None
    assert again.results == [] and again.updated_at == 40.0
    assert again.attempts == 1  # counts accepted submissions, not retries
    (earlier,) = again.history
    assert earlier.task_id == "t-100" and earlier.submit_time == 11.0
    assert earlier.status is F and earlier.retried_at == 40.0
    assert earlier.last_error is not None and earlier.last_error.code == 50511
    twice = retry_record(
        transition(transition(again, S, now=41.0, task_id="t-2"), F, now=42.0), now=43.0
    )
    assert [a.task_id for a in twice.history] == ["t-100", "t-2"]


@pytest.mark.parametrize("status", [P, S, R, C])
def test_retry_record_only_from_failed_or_unconfirmed(status: TaskState) -> None:
    with pytest.raises(IllegalTransition):
        retry_record(make(status), now=1.0)


def test_retry_record_of_an_unconfirmed_record_keeps_the_unknown_attempt() -> None:
    lost = make(U, unconfirmed_resubmits=1, submit_started_at=None)
    again = retry_record(lost, now=50.0)
    assert again.status is P and again.unconfirmed_resubmits == 0  # the user chose to pay
    (earlier,) = again.history
    assert earlier.status is U and earlier.task_id is None


def test_resubmit_unconfirmed_spends_one_unit_of_the_budget() -> None:
    lost = make(U)
    again = resubmit_unconfirmed(lost, now=20.0)
    assert again.status is P and again.unconfirmed_resubmits == 1
    assert [a.status for a in again.history] == [U]
    with pytest.raises(IllegalTransition):
        resubmit_unconfirmed(make(P), now=21.0)


def test_refetch_record_polls_the_same_task_again_without_a_new_submission() -> None:
    failed = make(F, task_id="t-9", submit_time=5.0, attempts=1, download_failures=2)
    again = refetch_record(failed, now=30.0, output_path="elsewhere/frame.png")
    assert again.status is S and again.task_id == "t-9" and again.attempts == 1
    assert again.output_path == "elsewhere/frame.png" and again.filename == "frame.png"
    assert again.download_failures == 0 and again.last_error is None
    (earlier,) = again.history
    assert earlier.task_id == "t-9" and earlier.status is F
    with pytest.raises(IllegalTransition):
        refetch_record(make(F, task_id=None), now=31.0)  # never accepted: nothing to fetch


REVIVERS: list[tuple[TaskState, TaskState, Callable[..., TaskRecord]]] = [
    (F, P, retry_record),
    (U, P, retry_record),
    (U, P, resubmit_unconfirmed),
    (F, S, refetch_record),
]


def test_the_revivers_cover_every_revival() -> None:
    assert {(old, new) for old, new, _ in REVIVERS} == REVIVED


@pytest.mark.parametrize(("old", "new", "revive"), REVIVERS)
def test_only_the_revival_functions_revive_a_record_and_they_keep_the_attempt(
    old: TaskState, new: TaskState, revive: Callable[..., TaskRecord]
) -> None:
    """A plain transition that revived a record would drop the earlier attempt (its task id
    and error): the evidence that the frame may have been billed before."""
    err = ErrorInfo(kind="NetworkError", message="no reply", time=20.0, retryable=True)
    before = retry_record(make(F, task_id="t-0"), now=5.0).history  # one earlier attempt
    ended = make(old, last_error=err, submit_time=None if old is U else 11.0)
    ended = TaskRecord.model_validate({**ended.model_dump(), "history": before})
    with pytest.raises(IllegalTransition) as info:
        transition(ended, new, now=30.0, **changes_for(ended, new))
    assert (info.value.old, info.value.new) == (old, new)
    assert not can_transition(old, new)
    revived = revive(ended, now=30.0)
    assert revived.status is new and revived.updated_at == 30.0
    assert ended.status is old  # the input is untouched
    first, last = revived.history
    assert first == before[0]
    assert last.task_id == ended.task_id and last.status is old
    assert last.last_error == err and last.retried_at == 30.0
    assert last.submit_time == ended.submit_time


def test_history_is_written_only_by_a_revival() -> None:
    """No caller may rewrite or drop the earlier attempts, with or without a move."""
    retried = retry_record(make(F), now=20.0)
    with pytest.raises(TypeError, match="history"):
        transition(retried, P, now=21.0, history=[])
    with pytest.raises(TypeError, match="history"):
        retry_record(make(F), now=21.0, history=[])
    amended = transition(retried, P, now=22.0, prompt="a dog")
    assert amended.history == retried.history  # a plain move keeps it as it is


def test_unconfirmed_records_never_carry_a_task_id() -> None:
    with pytest.raises(ValidationError):
        make(U, task_id="t-1")


@given(st.lists(st.sampled_from(list(TaskState)), max_size=40))
def test_random_sequences_only_move_along_the_table(targets: list[TaskState]) -> None:
    record = make(P)
    seen = [record.status]
    now = 100.0
    for target in targets:
        now += 1.0
        before = record
        try:
            if (record.status, target) == (F, P) or (record.status, target) == (U, P):
                record = retry_record(record, now=now)
            elif (record.status, target) == (F, S):
                record = refetch_record(record, now=now)
            else:
                record = transition(record, target, now=now, **changes_for(record, target))
        except IllegalTransition:
            never_sent = (before.status, target) == (F, S) and before.task_id is None
            assert never_sent or (before.status, target) not in EXPECTED | REVIVED
            assert record is before
            continue
        assert (before.status, target) in EXPECTED | REVIVED
        revived = (before.status, target) in REVIVED
        assert len(record.history) == len(before.history) + revived  # evidence only grows
        seen.append(record.status)
    for a, b in itertools.pairwise(seen):
        assert (a, b) in EXPECTED | REVIVED
    if C in seen:
        assert seen[-1] is C  # completed is final
