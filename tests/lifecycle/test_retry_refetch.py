"""`retry --output`: a paid result that could not be saved is fetched again, not paid again.

A done task whose image cannot be written (here: a folder sits at its output path) fails the
task at once, so `monitor` ends. While the service keeps the result (~12 h after submission)
`retry` puts the same task id back in flight, optionally to a new output path, and the next
check pass downloads it: the emulator is never asked for a new task. Past that, or for any
other failure, retry resubmits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from PIL import Image

from asyncimg import constants
from asyncimg.api import RetryInvalid, can_refetch
from asyncimg.protocol.errors import NoProgress
from asyncimg.store.record import ErrorInfo, TaskRecord
from asyncimg.store.states import TaskState, transition

if TYPE_CHECKING:
    from conftest import Env, Start

S = TaskState
SUBMIT = constants.ACTION_SUBMIT


def _billed(env: Env) -> int:
    return int(env.emu.stats()["tasks_submitted"])


async def _save_failed(env: Env, name: str) -> TaskRecord:
    """A task the API finished whose image could not be written (a folder at its path);
    `monitor` fails it and ends. Returns the failed record."""
    record = env.add(name)
    await env.run_pass()  # accepted
    blocked = env.out_dir / f"{name}.png"
    blocked.mkdir(parents=True)
    env.advance(10)  # done on the service
    outcome = await env.workspace().monitor(interval=0)
    assert outcome.passes == 1 and not outcome.interrupted  # it ended by itself
    assert outcome.last is not None and outcome.last.unfinished == 0
    assert outcome.last.exit_code == 1
    failed = env.load(record)
    assert failed.status is S.FAILED and failed.task_id
    assert failed.last_error is not None and failed.last_error.kind == "SaveFailed"
    assert str(blocked) in failed.last_error.message  # the reason names the path
    return failed


async def test_a_save_failure_fails_the_task_and_retry_output_fetches_it_again(
    start: Start,
) -> None:
    env = await start()
    failed = await _save_failed(env, "f1")
    billed = _billed(env)
    new_path = env.root / "elsewhere" / "f1.png"

    report = await env.workspace().retry([failed.task_id or ""], output=str(new_path))
    assert [r.local_id for r in report.refetched] == [failed.local_id]
    assert report.batch.outcomes == [] and report.exit_code == 0
    again = env.load(failed)
    assert again.status is S.SUBMITTED and again.task_id == failed.task_id
    assert again.output_path == str(new_path) and again.filename == "f1.png"
    assert again.last_error is None and again.attempts == failed.attempts
    assert [(a.task_id, a.status) for a in again.history] == [(failed.task_id, S.FAILED)]

    summary = await env.run_pass()  # polls the same task id and downloads it
    assert summary.completed == 1 and summary.submitted == 0
    done = env.load(failed)
    assert done.status is S.COMPLETED and done.task_id == failed.task_id
    assert [r.path for r in done.results] == [str(new_path)]
    with Image.open(new_path) as img:
        assert img.size == (1024, 1024)
    assert (env.out_dir / "f1.png").is_dir()  # the folder in the way is left alone
    assert _billed(env) == billed  # nothing new was submitted, nothing new billed
    assert env.emu.stats()["requests"][SUBMIT] == 1


async def test_retry_without_output_fetches_again_once_the_folder_is_fixed(
    start: Start,
) -> None:
    env = await start()
    failed = await _save_failed(env, "f1")
    blocked = env.out_dir / "f1.png"

    # Still a folder there: refused before anything is saved (it would only fail again).
    before = env.store.path_for(failed).read_bytes()
    with pytest.raises(RetryInvalid) as refused:
        await env.workspace().retry([failed.task_id or ""])
    assert len(refused.value.problems) == 1
    assert "output_path" in refused.value.problems[0] and "is a folder" in refused.value.problems[0]
    assert env.store.path_for(failed).read_bytes() == before

    blocked.rmdir()  # the user fixes the folder
    report = await env.workspace().retry(all_failed=True)
    assert len(report.refetched) == 1 and report.submitted == 0
    summary = await env.run_pass()
    assert summary.completed == 1
    assert env.load(failed).output_path == failed.output_path
    assert blocked.is_file()
    assert _billed(env) == 1


async def test_past_the_retention_retry_output_resubmits(start: Start) -> None:
    env = await start()
    failed = await _save_failed(env, "f1")
    env.advance(constants.RESULT_RETENTION_S + 1)  # the service has dropped the result
    assert not can_refetch(failed, env.now())
    new_path = env.root / "elsewhere" / "f1.png"

    report = await env.workspace().retry([failed.task_id or ""], output=str(new_path))
    assert report.refetched == [] and report.submitted == 1
    assert _billed(env) == 2
    again = env.load(failed)
    assert again.status is S.SUBMITTED and again.task_id != failed.task_id
    assert again.output_path == str(new_path) and again.attempts == 2
    assert [a.task_id for a in again.history] == [failed.task_id]
    env.advance(10)
    summary = await env.run_pass()
    assert summary.completed == 1 and new_path.is_file()


async def test_a_fix_to_the_request_resubmits_even_within_the_retention(start: Start) -> None:
    env = await start()
    failed = await _save_failed(env, "f1")
    (env.out_dir / "f1.png").rmdir()
    report = await env.workspace().retry([failed.task_id or ""], size="1024x1536")
    assert report.refetched == [] and report.submitted == 1  # a new image was asked for
    again = env.load(failed)
    assert again.task_id != failed.task_id
    assert (again.params["width"], again.params["height"]) == (1024, 1536)


async def test_a_task_that_made_no_progress_is_polled_again_not_resubmitted(
    start: Start,
) -> None:
    env = await start()
    record = env.add("f1")
    await env.run_pass()
    accepted = env.load(record)
    # The check pass gave up on it (no progress over many polls); the service still has it.
    now = env.now()
    stalled = NoProgress("no progress in 10 polls over 600 s: reply has no data object")
    failed = transition(
        accepted, S.FAILED, now=now, last_error=ErrorInfo.from_exception(stalled, now)
    )
    env.store.save(failed)
    env.advance(10)

    report = await env.workspace().retry(all_failed=True)
    assert len(report.refetched) == 1 and report.submitted == 0
    summary = await env.run_pass()
    assert summary.completed == 1
    assert env.load(record).task_id == accepted.task_id
    assert _billed(env) == 1


async def test_other_failures_are_resubmitted_as_before(start: Start) -> None:
    env = await start()
    env.emu.inject("review_failure")
    record = env.add("f1")
    await env.run_pass()
    env.advance(10)
    await env.run_pass()
    failed = env.load(record)
    assert failed.last_error is not None and failed.last_error.kind == "OutputRejected"
    assert not can_refetch(failed, env.now())
    report = await env.workspace().retry([failed.task_id or ""])
    assert report.refetched == [] and report.submitted == 1
    assert _billed(env) == 2
