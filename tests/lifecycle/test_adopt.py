"""`Workspace.adopt`: a task id the folder does not know (a lost reply, a record that could
not be written, a task submitted by hand) is attached to it, and a check pass downloads it.
Also `Workspace.clean(failed=True)`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asyncimg.api import ADOPTED_PROMPT, Refused
from asyncimg.lifecycle.submit import request_fields, stale_submit
from asyncimg.protocol.errors import AuthError, InvalidInput
from asyncimg.store.record import TaskRecord
from asyncimg.store.states import TaskState, transition

if TYPE_CHECKING:
    from conftest import Env, Start

S = TaskState


def _billed(env: Env) -> int:
    return int(env.emu.stats()["tasks_submitted"])


def _snapshot(env: Env) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(env.tasks_dir.glob("*.json"))}


async def _lost_reply(env: Env, name: str) -> tuple[TaskRecord, str]:
    """A frame whose submit reached the API but whose answer never reached the record (the
    submitter was killed mid-request): the record is pending, marked mid-submit; the API
    has a task. Returns the record and the task id (as found in the service's console)."""
    record = env.add(name)
    marked = transition(record, S.PENDING, now=env.now(), submit_started_at=env.now())
    env.store.save(marked)
    task_id = await env.client.submit(record.req_key, request_fields(record))
    return marked, task_id


async def test_adopt_into_an_unconfirmed_record_then_a_pass_completes_it(start: Start) -> None:
    env = await start()
    marked, task_id = await _lost_reply(env, "f1")
    lost = stale_submit(marked, now=env.now())
    env.store.save(lost)
    assert lost.status is S.UNCONFIRMED

    report = await env.workspace().adopt(task_id, lost.output_path)
    assert report.took_over is S.UNCONFIRMED and report.warnings == []
    adopted = env.load(lost)
    assert adopted.local_id == lost.local_id and adopted.status is S.SUBMITTED
    assert adopted.task_id == task_id and adopted.attempts == 1
    assert adopted.last_error is None and adopted.submit_started_at is None
    assert adopted.submit_time == pytest.approx(env.now())
    assert [p.name for p in env.tasks_dir.glob("*.json")] == [f"{task_id}.json"]

    env.advance(10)
    summary = await env.run_pass()
    assert summary.completed == 1 and summary.submitted == 0
    done = env.load(lost)
    assert done.status is S.COMPLETED and (env.out_dir / "f1.png").is_file()
    assert _billed(env) == 1  # one frame, one billed task


async def test_adopt_into_a_pending_record_left_mid_submit(start: Start) -> None:
    env = await start()
    marked, task_id = await _lost_reply(env, "f1")
    report = await env.workspace().adopt(task_id, marked.output_path)
    assert report.took_over is S.PENDING
    adopted = env.load(marked)
    assert adopted.status is S.SUBMITTED and adopted.task_id == task_id
    assert adopted.submit_started_at is None
    env.advance(10)
    assert (await env.run_pass()).completed == 1
    assert _billed(env) == 1


async def test_adopt_a_task_submitted_elsewhere_as_a_new_record(
    start: Start, chdir_tmp: Path
) -> None:
    env = await start()
    fields = {"prompt": "a heron", "width": 1024, "height": 1024}
    by_hand = await env.client.submit("jimeng_t2i_v40", fields)
    report = await env.workspace().adopt(by_hand, "frames/heron.png")
    assert report.took_over is None
    record = report.record
    assert record.status is S.SUBMITTED and record.task_id == by_hand
    assert record.output_path == "frames/heron.png" and record.filename == "heron.png"
    assert record.prompt == ADOPTED_PROMPT and record.req_key == "jimeng_t2i_v40"
    assert record.working_dir == str(chdir_tmp) and record.attempts == 1
    assert env.load(record).task_id == by_hand
    env.advance(10)
    assert (await env.run_pass()).completed == 1
    assert (chdir_tmp / "frames" / "heron.png").is_file()
    assert _billed(env) == 1


async def test_adopt_refuses_a_task_id_the_folder_already_has(start: Start) -> None:
    env = await start()
    record = env.add("f1")
    await env.run_pass()
    held = env.load(record)
    before = _snapshot(env)
    with pytest.raises(Refused, match="already in"):
        await env.workspace().adopt(held.task_id or "", str(env.out_dir / "other.png"))
    assert _snapshot(env) == before
    assert env.emu.stats()["requests"].get("CVSync2AsyncGetResult", 0) == 0  # not even asked


async def test_adopt_refuses_a_task_the_api_does_not_know(start: Start) -> None:
    env = await start()
    with pytest.raises(Refused, match="does not know this task"):
        await env.workspace().adopt("1234567890123456789", str(env.out_dir / "f1.png"))
    assert _snapshot(env) == {}


async def test_adopt_refuses_a_task_past_the_retention(start: Start) -> None:
    env = await start()
    _, task_id = await _lost_reply(env, "f1")
    env.advance(13 * 3600)
    before = _snapshot(env)
    with pytest.raises(Refused):
        await env.workspace().adopt(task_id, str(env.out_dir / "f1.png"))
    assert _snapshot(env) == before


async def test_adopt_with_a_wrong_key_is_a_setup_problem(start: Start) -> None:
    env = await start(secret_key="not-the-client-secret")
    with pytest.raises(AuthError):
        await env.workspace().adopt("1234567890123456789", str(env.out_dir / "f1.png"))
    assert _snapshot(env) == {}


async def test_adopt_refuses_a_folder_as_output(start: Start) -> None:
    env = await start()
    env.out_dir.mkdir()
    with pytest.raises(InvalidInput, match="is a folder"):
        await env.workspace().adopt("1234567890123456789", str(env.out_dir))


# -- clean --failed ---------------------------------------------------------------------------


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


async def _some_of_each(env: Env) -> dict[str, TaskRecord]:
    """Two completed, two failed (review), one pending frame."""
    env.emu.inject("review_failure", count=2)
    names = ["bad1", "bad2", "ok1", "ok2"]
    records = {}
    for name in names:  # a second apart, so they go out (and fail) in this order
        records[name] = env.add(name)
        env.advance(1)
    await env.run_pass()
    env.advance(10)
    await env.run_pass()
    records["later"] = env.add("later")
    loaded = {name: env.load(r) for name, r in records.items()}
    assert [loaded[n].status for n in names] == [S.FAILED, S.FAILED, S.COMPLETED, S.COMPLETED]
    return loaded


async def test_clean_failed_archives_or_deletes_failed_records_only(start: Start) -> None:
    env = await start()
    records = await _some_of_each(env)
    images = _digests(env.out_dir)
    assert set(images) == {"ok1.png", "ok2.png"}
    workspace = env.workspace()

    archive = env.root / "archive"
    report = workspace.clean(failed=True, archive=archive)
    assert (report.completed, report.failed) == (0, 2)
    archived = sorted(p.name for p in archive.iterdir())
    assert archived == sorted(f"{records[n].task_id}.json" for n in ("bad1", "bad2"))
    assert {r.filename for r in env.load_all()} == {"ok1.png", "ok2.png", "later.png"}
    assert _digests(env.out_dir) == images
    assert workspace.clean_failed() == 0


async def test_clean_completed_and_failed_together_deletes_both(start: Start) -> None:
    env = await start()
    await _some_of_each(env)
    # A failed frame whose image file exists (an earlier attempt saved it): kept too.
    (env.out_dir / "bad1.png").write_bytes((env.out_dir / "ok1.png").read_bytes())
    images = _digests(env.out_dir)
    report = env.workspace().clean(completed=True, failed=True)
    assert (report.completed, report.failed) == (2, 2)
    assert [r.filename for r in env.load_all()] == ["later.png"]
    assert _digests(env.out_dir) == images
