"""`retry` does what it says: every amended record is checked before any is saved, `--prompt`
is for one frame, `--character` replaces the references, unconfirmed frames are retried only
when the user asks (they may already be billed)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from asyncimg import constants
from asyncimg.api import Refused, RetryInvalid
from asyncimg.lifecycle.submit import request_fields, stale_submit
from asyncimg.protocol.errors import InvalidInput
from asyncimg.store.record import TaskRecord
from asyncimg.store.states import TaskState, transition

if TYPE_CHECKING:
    from conftest import Env, Start

S = TaskState
SUBMIT = constants.ACTION_SUBMIT


def _snapshot(env: Env) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(env.tasks_dir.glob("*.json"))}


# -- (b) --prompt is for one frame ------------------------------------------------------------


async def test_retry_failed_with_a_prompt_is_refused_and_changes_nothing(start: Start) -> None:
    env = await start()
    await env.failed_by_review("f1", "f2")
    before, billed = _snapshot(env), env.emu.stats()["tasks_submitted"]
    with pytest.raises(InvalidInput, match="prompt") as refused:
        await env.workspace().retry(all_failed=True, prompt="a new prompt for both?")
    assert "name a single task" in str(refused.value)
    assert _snapshot(env) == before
    assert env.emu.stats()["tasks_submitted"] == billed


async def test_retry_of_two_named_tasks_with_a_prompt_is_refused(start: Start) -> None:
    env = await start()
    one, two = await env.failed_by_review("f1", "f2")
    before = _snapshot(env)
    with pytest.raises(InvalidInput, match="prompt"):
        await env.workspace().retry([one.task_id or "", two.task_id or ""], prompt="p")
    assert _snapshot(env) == before


async def test_retry_of_one_task_with_a_prompt_changes_that_prompt(start: Start) -> None:
    env = await start()
    one, two = await env.failed_by_review("f1", "f2")
    report = await env.workspace().retry([one.task_id or ""], prompt="a fox under the moon")
    assert report.submitted == 1
    again = env.load(one)
    assert again.prompt == "a fox under the moon"
    assert again.full_prompt.startswith("a fox under the moon")
    assert env.load(two).status is S.FAILED and env.load(two).prompt == two.prompt


# -- (c) everything is checked before anything is saved ---------------------------------------


async def test_a_missing_character_in_the_second_frame_retries_neither(start: Start) -> None:
    env = await start()
    lin = env.image("lin.png")
    mei = env.image("mei.png", color=(20, 200, 40))
    # The two frames use different characters; the second one's file has gone since.
    refs = {"f1": [str(lin)], "f2": [str(mei)]}
    first, second = await env.failed_by_review("f1", "f2", refs=refs)
    mei.unlink()
    before, billed = _snapshot(env), env.emu.stats()["tasks_submitted"]

    with pytest.raises(RetryInvalid) as refused:
        await env.workspace().retry(all_failed=True)
    assert len(refused.value.problems) == 1
    problem = refused.value.problems[0]
    assert second.task_id in problem and second.output_path in problem
    assert first.output_path not in problem
    assert "character_images[0]" in problem and "no such file" in problem
    assert _snapshot(env) == before  # nothing re-queued
    assert [r.status for r in env.load_all()] == [S.FAILED, S.FAILED]
    assert env.emu.stats()["tasks_submitted"] == billed


async def test_every_problem_is_listed_at_once(start: Start) -> None:
    env = await start()
    first, second = await env.failed_by_review("f1", "f2")
    before = _snapshot(env)
    # 720x1280 is below jimeng_t2i_v40's minimum area: both frames are named.
    with pytest.raises(RetryInvalid) as refused:
        await env.workspace().retry(all_failed=True, size="720x1280")
    problems = refused.value.problems
    assert len(problems) == 2
    for record in (first, second):
        (problem,) = [p for p in problems if record.output_path in p]
        assert record.task_id in problem and "720" in problem
    assert _snapshot(env) == before


async def test_a_bad_style_is_refused_before_anything_is_read(start: Start) -> None:
    env = await start()
    await env.failed_by_review("f1")
    before = _snapshot(env)
    with pytest.raises(InvalidInput, match="style"):
        await env.workspace().retry(all_failed=True, style="no-such-style")
    assert _snapshot(env) == before


# -- (d) --character replaces the references --------------------------------------------------


async def test_retry_character_replaces_the_references(start: Start) -> None:
    env = await start()
    old = env.image("old.png", color=(1, 2, 3))
    new_a = env.image("new_a.png", color=(200, 10, 10))
    new_b = env.image("new_b.png", color=(10, 10, 200))
    (failed,) = await env.failed_by_review("f1", refs={"f1": [str(old)]})
    assert failed.character_images == [str(old)]

    report = await env.workspace().retry(
        [failed.task_id or ""], characters=[str(new_a), str(new_b)]
    )
    assert report.submitted == 1
    again = env.load(failed)
    assert again.character_images == [str(new_a), str(new_b)]
    sent = env.emu._tasks.get(again.task_id or "")
    assert sent is not None
    assert sent.references == [base64.b64encode(p.read_bytes()).decode() for p in (new_a, new_b)]


async def test_retry_character_with_a_missing_file_changes_nothing(start: Start) -> None:
    env = await start()
    (failed,) = await env.failed_by_review("f1")
    before = _snapshot(env)
    missing = env.root / "chars" / "nobody.png"
    with pytest.raises(RetryInvalid) as refused:
        await env.workspace().retry([failed.task_id or ""], characters=[str(missing)])
    assert str(missing) in refused.value.problems[0]
    assert _snapshot(env) == before


async def test_relative_characters_are_read_from_where_retry_was_run(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = await start()
    (failed,) = await env.failed_by_review("f1")  # recorded from the test's own folder
    here = tmp_path / "elsewhere"
    here.mkdir()
    monkeypatch.chdir(here)
    Image.new("RGB", (256, 256), (9, 9, 9)).save(here / "lin.png")
    await env.workspace().retry([failed.task_id or ""], characters=["lin.png"])
    again = env.load(failed)
    assert again.character_images == [str(here / "lin.png")]
    assert request_fields(again)["binary_data_base64"]


# -- unconfirmed frames: the user decides to pay again ----------------------------------------


async def _unconfirmed(env: Env, name: str) -> TaskRecord:
    """A frame whose submit went out but whose answer never reached the record (the
    submitter was killed mid-request): the API has a task for it, the record does not know."""
    record = env.add(name)
    marked = transition(record, S.PENDING, now=env.now(), submit_started_at=env.now())
    env.store.save(marked)
    await env.client.submit(record.req_key, request_fields(record))  # the lost reply
    lost = stale_submit(marked, now=env.now())
    env.store.save(lost)
    assert lost.status is S.UNCONFIRMED
    return lost


async def test_retry_names_an_unconfirmed_task_and_pays_again(start: Start) -> None:
    env = await start()
    lost = await _unconfirmed(env, "f1")
    assert env.emu.stats()["tasks_submitted"] == 1
    report = await env.workspace().retry([lost.local_id[:8]])
    assert report.submitted == 1
    again = env.load(lost)
    assert again.status is S.SUBMITTED and again.attempts == 1
    assert [a.status for a in again.history] == [S.UNCONFIRMED]
    assert env.emu.stats()["tasks_submitted"] == 2  # the user chose to pay again


async def test_retry_failed_leaves_unconfirmed_tasks_alone_and_unconfirmed_takes_them(
    start: Start,
) -> None:
    env = await start()
    (failed,) = await env.failed_by_review("bad")
    lost = await _unconfirmed(env, "lost")
    report = await env.workspace().retry(all_failed=True)
    assert report.submitted == 1
    assert env.load(lost).status is S.UNCONFIRMED
    assert env.load(failed).status is S.SUBMITTED

    report = await env.workspace().retry(all_unconfirmed=True)
    assert report.submitted == 1
    assert env.load(lost).status is S.SUBMITTED


async def test_retry_still_refuses_a_task_in_flight(start: Start) -> None:
    env = await start()
    record = env.add("f1")
    await env.run_pass()
    running = env.load(record)
    with pytest.raises(Refused, match="is submitted; only failed tasks can be retried"):
        await env.workspace().retry([running.task_id or ""])
