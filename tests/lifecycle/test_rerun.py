"""Reruns are safe: a request whose output already has a record is skipped, replaces a failed
record, or (completed, image gone / `force`) is submitted anew (issue 6, item 4)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from asyncimg import constants
from asyncimg.api import Rerun, generate_image_with_character, rerun_rule
from asyncimg.store.record import ErrorInfo, TaskRecord
from asyncimg.store.states import TaskState, transition
from asyncimg.store.store import TaskStore

if TYPE_CHECKING:
    from conftest import Env, Start

SUBMIT = constants.ACTION_SUBMIT
S = TaskState


def submits(env: Env) -> int:
    return int(env.emu.stats()["requests"].get(SUBMIT, 0))


def put(env: Env, name: str, state: TaskState) -> TaskRecord:
    """A record for out/<name>.png left on disk in `state` (as an earlier run would)."""
    record = env.add(name)
    now = env.now()
    if state is S.UNCONFIRMED:
        note = ErrorInfo(kind="NetworkError", message="no reply", time=now)
        record = transition(record, S.UNCONFIRMED, now=now, last_error=note)
    elif state is not S.PENDING:
        record = transition(record, S.SUBMITTED, now=now, task_id=f"t-{name}", submit_time=now)
        if state is not S.SUBMITTED:
            record = transition(record, state, now=now)
    env.store.save(record)
    return record


def files(env: Env) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(env.tasks_dir.glob("*.json"))}


# -- the rule itself (pure) -------------------------------------------------------------------


def _record(status: TaskState, task_id: str | None = "123") -> TaskRecord:
    return TaskRecord(
        task_id=task_id if status not in (S.PENDING, S.UNCONFIRMED) else None,
        output_path="frames/001.png",
        filename="001.png",
        prompt="p",
        full_prompt="p",
        status=status,
        created_at=0.0,
        updated_at=0.0,
    )


@pytest.mark.parametrize(
    ("status", "image_exists", "force", "action", "reason"),
    [
        (None, False, False, Rerun.NEW, ""),
        (S.PENDING, False, False, Rerun.SKIP, "already queued locally"),
        (S.UNCONFIRMED, False, False, Rerun.SKIP, "outcome unknown (unconfirmed"),
        (S.SUBMITTED, False, False, Rerun.SKIP, "already submitted as task 123"),
        (S.PROCESSING, False, False, Rerun.SKIP, "already submitted as task 123"),
        (S.COMPLETED, True, False, Rerun.SKIP, "already done (task 123)"),
        (S.COMPLETED, False, False, Rerun.NEW, "completed but its image is gone"),
        (S.FAILED, False, False, Rerun.REPLACE, "replaces failed task 123"),
        (S.FAILED, False, True, Rerun.REPLACE, "replaces failed task 123"),
        (S.PENDING, False, True, Rerun.NEW, "--force"),
        (S.SUBMITTED, False, True, Rerun.NEW, "--force"),
        (S.COMPLETED, True, True, Rerun.NEW, "--force"),
    ],
)
def test_rerun_rule(
    status: TaskState | None, image_exists: bool, force: bool, action: Rerun, reason: str
) -> None:
    previous = _record(status) if status is not None else None
    check = rerun_rule(previous, image_exists=image_exists, force=force)
    assert check.action is action
    assert reason in check.reason
    assert check.previous is previous


# -- Workspace.submit -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (S.PENDING, "already queued locally (pending"),
        (S.UNCONFIRMED, "already sent, outcome unknown (unconfirmed"),
        (S.SUBMITTED, "already submitted as task t-f1"),
        (S.PROCESSING, "already submitted as task t-f1"),
    ],
)
async def test_a_frame_queued_or_in_flight_is_skipped_and_not_billed(
    start: Start, state: TaskState, reason: str
) -> None:
    env = await start()
    put(env, "f1", state)
    before = files(env)
    report = await env.workspace().submit([env.request("f1")])
    assert submits(env) == 0
    assert (report.submitted, report.queued, report.rejected) == (0, 0, 0)
    [skipped] = report.skipped
    assert skipped.line().startswith(f"{env.out_dir / 'f1.png'}: skipped — {reason}")
    assert report.exit_code == 0
    assert files(env) == before  # nothing rewritten, nothing added


async def test_a_completed_frame_with_its_image_is_skipped(start: Start) -> None:
    env = await start()
    done = put(env, "f1", S.COMPLETED)
    env.image("x.png")  # any image will do as the saved frame
    env.out_dir.mkdir(parents=True, exist_ok=True)
    (env.root / "chars" / "x.png").rename(env.out_dir / "f1.png")
    report = await env.workspace().submit([env.request("f1")])
    assert submits(env) == 0
    [skipped] = report.skipped
    assert skipped.reason == "already done (task t-f1)"
    assert [r.local_id for r in env.load_all()] == [done.local_id]


async def test_a_completed_frame_whose_image_is_gone_is_submitted_anew(start: Start) -> None:
    env = await start()
    done = put(env, "f1", S.COMPLETED)
    report = await env.workspace().submit([env.request("f1")])
    assert submits(env) == 1 and report.submitted == 1 and report.skipped == []
    records = {r.local_id: r for r in env.load_all()}
    assert records[done.local_id].status is S.COMPLETED  # left as it was
    [new] = [r for r in records.values() if r.local_id != done.local_id]
    assert new.status is S.SUBMITTED


async def test_force_submits_a_separate_record(start: Start) -> None:
    env = await start()
    first = put(env, "f1", S.SUBMITTED)
    report = await env.workspace().submit([env.request("f1")], force=True)
    assert submits(env) == 1 and report.submitted == 1 and report.skipped == []
    assert {r.local_id for r in env.load_all()} >= {first.local_id}
    assert len(env.load_all()) == 2


async def test_records_left_pending_by_an_interrupted_submit_are_not_billed_again(
    start: Start,
) -> None:
    """What a killed `submit` leaves: every record written pending, one marked mid-request."""
    env = await start()
    put(env, "f1", S.PENDING)
    mid = put(env, "f2", S.PENDING)
    env.store.save(transition(mid, S.PENDING, now=env.now(), submit_started_at=env.now()))
    requests = [env.request("f1"), env.request("f2"), env.request("f3")]
    report = await env.workspace().submit(requests)
    assert submits(env) == 1  # only f3, which had no record
    assert report.submitted == 1
    assert sorted(Path(s.request.output_path).name for s in report.skipped) == [
        "f1.png",
        "f2.png",
    ]
    assert len(env.load_all()) == 3


async def test_a_frame_that_failed_on_review_is_replaced_keeping_its_history(
    start: Start,
) -> None:
    env = await start()
    env.emu.inject("review_failure")
    record = env.add("f1")
    await env.run_pass()
    env.advance(10)
    await env.run_pass()
    failed = env.load(record)
    assert failed.status is S.FAILED and failed.task_id
    billed = env.emu.stats()["tasks_submitted"]

    fixed = env.request("f1", prompt="少女站在樱花树下，回眸一笑", style="manga")
    report = await env.workspace().submit([fixed])
    assert env.emu.stats()["tasks_submitted"] == billed + 1
    assert report.submitted == 1 and report.skipped == []
    [again] = env.load_all()
    assert report.replaced == {again.local_id: f"task {failed.task_id}"}
    assert again.local_id == failed.local_id
    assert again.status is S.SUBMITTED and again.task_id != failed.task_id
    assert again.prompt == "少女站在樱花树下，回眸一笑" and again.style == "manga"
    assert again.full_prompt.startswith("少女站在樱花树下，回眸一笑，日系漫画风格")
    assert [(a.task_id, a.status) for a in again.history] == [(failed.task_id, S.FAILED)]
    assert again.history[0].last_error is not None
    assert again.history[0].last_error.code == 50511
    assert [p.name for p in env.tasks_dir.glob("*.json")] == [f"{again.task_id}.json"]
    text = (env.tasks_dir / f"{again.task_id}.json").read_text("utf-8")
    assert "少女站在樱花树下" in text  # Chinese as typed, not \\u escapes


async def test_a_frame_rejected_before_sending_is_replaced_once_fixed(start: Start) -> None:
    """The library path (no up-front check) records a refused size as failed; fixing the
    request and submitting again reuses that record instead of adding a second one."""
    env = await start()
    report = await env.workspace().submit([env.request("f1", size="720x1280")])
    assert report.rejected == 1
    [failed] = env.load_all()
    assert failed.status is S.FAILED and failed.task_id is None

    report = await env.workspace().submit([env.request("f1", size="1440x2560")])
    assert report.submitted == 1
    [again] = env.load_all()
    assert again.local_id == failed.local_id
    assert again.params["width"] == 1440 and again.params["height"] == 2560
    assert [(a.task_id, a.status) for a in again.history] == [(None, S.FAILED)]
    assert env.emu.stats()["tasks_submitted"] == 1


async def test_a_failed_record_busy_in_another_process_is_left_alone(start: Start) -> None:
    env = await start()
    put(env, "f1", S.SUBMITTED)
    [record] = env.load_all()
    failed = transition(
        record,
        S.FAILED,
        now=env.now(),
        last_error=ErrorInfo(kind="OutputRejected", message="review", time=env.now()),
    )
    env.store.save(failed)
    other = TaskStore(env.tasks_dir)
    with other.lock(failed) as held:
        assert held
        report = await env.workspace().submit([env.request("f1")])
    assert submits(env) == 0
    [skipped] = report.skipped
    assert "busy in another process" in skipped.reason
    assert env.load(failed).status is S.FAILED


async def test_one_output_twice_in_one_call_is_submitted_once(
    start: Start, chdir_tmp: Path
) -> None:
    env = await start()
    relative = env.request("f1", output_path="out/../out/f1.png")
    absolute = env.request("f1", output_path=str(chdir_tmp / "out" / "f1.png"))
    report = await env.workspace().submit([relative, absolute])
    assert submits(env) == 1 and report.submitted == 1
    [skipped] = report.skipped
    assert skipped.reason == "same output as an earlier frame of this submit"
    assert len(env.load_all()) == 1


async def test_the_same_file_typed_another_way_is_the_same_frame(
    start: Start, chdir_tmp: Path
) -> None:
    env = await start()
    await env.workspace().submit([env.request("f1", output_path="out/f1.png")])
    again = env.request("f1", output_path=str(chdir_tmp / "out" / "." / "f1.png"))
    report = await env.workspace().submit([again])
    assert submits(env) == 1
    assert [s.reason.split(" as ")[0] for s in report.skipped] == ["already submitted"]


async def test_an_unreadable_record_file_is_reported_and_the_frame_still_goes(
    start: Start,
) -> None:
    env = await start()
    env.tasks_dir.mkdir(parents=True, exist_ok=True)
    (env.tasks_dir / "7392616336519610409.json").write_text("{not json", encoding="utf-8")
    report = await env.workspace().submit([env.request("f1")])
    assert report.submitted == 1
    assert any("7392616336519610409.json" in w for w in report.warnings)


# -- generate_image_with_character ------------------------------------------------------------


@pytest.fixture
def env_vars(monkeypatch: pytest.MonkeyPatch, chdir_tmp: Path) -> Any:
    def _point(env: Env) -> None:
        monkeypatch.setenv("ASYNCIMG_ENDPOINT", env.emu.url)
        monkeypatch.setenv("VOLC_ACCESSKEY", env.emu.config.access_key)
        monkeypatch.setenv("VOLC_SECRETKEY", env.emu.config.secret_key)
        monkeypatch.delenv("VOLC_SESSION_TOKEN", raising=False)

    return _point


async def test_generate_twice_for_a_frame_in_flight_bills_once(
    start: Start, env_vars: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    env = await start()
    env_vars(env)
    tasks = str(env.root / "t")
    out = str(env.root / "frames" / "001.png")
    args: dict[str, Any] = {"tasks_dir": tasks, "size": "1024x1024"}
    assert await asyncio.to_thread(generate_image_with_character, "a fox", out, **args)
    assert capsys.readouterr().err == ""
    assert await asyncio.to_thread(generate_image_with_character, "a fox", out, **args)
    err = capsys.readouterr().err
    [data] = [json.loads(p.read_text("utf-8")) for p in (env.root / "t").glob("*.json")]
    assert err == f"asyncimg: {out}: skipped — already submitted as task {data['task_id']}\n"
    assert env.emu.stats()["tasks_submitted"] == 1
