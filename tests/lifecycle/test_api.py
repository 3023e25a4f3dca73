"""The library API: Workspace.retry / clean_completed and generate_image_with_character."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from asyncimg import constants
from asyncimg.api import generate_image_with_character
from asyncimg.emulator import Emulator, EmulatorConfig
from asyncimg.lifecycle.check import Checker
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.states import TaskState
from asyncimg.store.store import TaskStore

if TYPE_CHECKING:
    from conftest import Env, Start

SUBMIT = constants.ACTION_SUBMIT
S = TaskState


async def _failed_by_review(env: Env, name: str) -> str:
    """A task whose output failed review; returns its task_id."""
    env.emu.inject("review_failure")
    record = env.add(name)
    await env.run_pass()
    env.advance(10)
    await env.run_pass()
    failed = env.load(record)
    assert failed.status is S.FAILED and failed.task_id
    return failed.task_id


# -- retry ------------------------------------------------------------------------------------


async def test_retry_resubmits_and_keeps_the_history(start: Start) -> None:
    env = await start()
    old_id = await _failed_by_review(env, "f1")
    original = TaskStore(env.tasks_dir).get(old_id)
    report = await env.workspace().retry([old_id])
    assert (report.submitted, report.queued, report.rejected) == (1, 0, 0)
    record = TaskStore(env.tasks_dir).get(old_id)  # found through its history
    assert record.status is S.SUBMITTED
    assert record.task_id and record.task_id != old_id
    assert record.attempts == 2 and record.last_error is None
    assert len(record.history) == 1
    earlier = record.history[0]
    assert earlier.task_id == old_id and earlier.status is S.FAILED
    assert earlier.last_error is not None and earlier.last_error.code == 50511
    files = sorted(p.name for p in env.tasks_dir.glob("*.json"))
    assert files == [f"{record.task_id}.json"]  # the old file is gone, nothing duplicated
    # Same parameters, and this time it completes.
    same = ("local_id", "prompt", "full_prompt", "params", "output_path", "created_at")
    assert {k: getattr(record, k) for k in same} == {k: getattr(original, k) for k in same}
    env.advance(10)
    summary = await env.run_pass()
    assert summary.completed == 1
    assert sorted(p.name for p in env.out_dir.iterdir()) == ["f1.png"]


async def test_two_overlapping_retries_submit_the_frame_once(start: Start) -> None:
    env = await start()
    await _failed_by_review(env, "f1")
    before = env.emu.stats()["tasks_submitted"]
    # B reads the folder, then A retries the frame; B goes on with what it read (the
    # timing of two terminals, pinned down by handing B its earlier read).
    late = env.workspace()
    stale = late.store.load_all()
    late.store.load_all = lambda: stale  # type: ignore[method-assign]
    one = await env.workspace().retry(all_failed=True)
    two = await late.retry(all_failed=True)
    assert one.submitted + two.submitted == 1
    assert env.emu.stats()["tasks_submitted"] == before + 1
    loaded = TaskStore(env.tasks_dir).load_all()
    assert loaded.problems == [] and len(loaded.records) == 1
    assert loaded.records[0].status is S.SUBMITTED and len(loaded.records[0].history) == 1


async def test_retry_refuses_a_task_that_has_not_failed(start: Start) -> None:
    env = await start()
    record = env.add("f1")
    await env.run_pass()
    running = env.load(record)
    before = env.store.path_for(running).read_bytes()
    submits = env.emu.stats()["requests"][SUBMIT]
    with pytest.raises(AsyncImgError, match="is submitted; only failed tasks can be retried"):
        await env.workspace().retry([running.task_id or ""])
    assert env.store.path_for(running).read_bytes() == before
    assert env.emu.stats()["requests"][SUBMIT] == submits


async def test_retry_all_failed_leaves_the_others_alone(start: Start) -> None:
    env = await start()
    await _failed_by_review(env, "bad1")
    await _failed_by_review(env, "bad2")
    ok = env.add("ok")
    await env.run_pass()
    report = await env.workspace().retry(all_failed=True)
    assert report.submitted == 2
    records = env.load_all()
    assert sorted(len(r.history) for r in records) == [0, 1, 1]
    assert env.load(ok).attempts == 1 and env.load(ok).history == []


async def test_retry_without_capacity_queues_locally(start: Start) -> None:
    env = await start(concurrency=1)
    old_id = await _failed_by_review(env, "f1")
    env.add("busy")
    await env.run_pass()  # takes the only slot
    report = await env.workspace().retry([old_id])
    assert (report.submitted, report.queued) == (0, 1)
    record = TaskStore(env.tasks_dir).get(old_id)
    assert record.status is S.PENDING and record.task_id is None
    assert record.history[0].task_id == old_id
    assert record.last_error is not None and record.last_error.code == 50430


# -- clean ------------------------------------------------------------------------------------


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


async def test_clean_completed_honours_age_and_archive_and_never_touches_images(
    start: Start,
) -> None:
    env = await start()
    old = env.add("old")
    await env.run_pass()
    env.advance(10)
    await env.run_pass()  # "old" completes at t+10
    env.advance(3600)
    new = env.add("new")
    await env.run_pass()
    env.advance(10)
    await env.run_pass()  # "new" completes an hour later
    await _failed_by_review(env, "bad")
    pending = env.add("later")
    new_task_id = env.load(new).task_id
    images = _digests(env.out_dir)
    assert set(images) == {"old.png", "new.png"}
    workspace = env.workspace()

    assert workspace.clean_completed(older_than=1800) == 1
    assert {r.filename for r in env.load_all()} == {"new.png", "bad.png", "later.png"}
    assert _digests(env.out_dir) == images

    archive = env.root / "archive"
    assert workspace.clean_completed(archive=archive) == 1
    archived = list(archive.iterdir())
    assert [p.name for p in archived] == [f"{new_task_id}.json"]
    assert json.loads(archived[0].read_text("utf-8"))["local_id"] == new.local_id
    assert {r.filename for r in env.load_all()} == {"bad.png", "later.png"}
    assert _digests(env.out_dir) == images
    assert workspace.clean_completed() == 0
    assert env.load(pending).status is S.PENDING
    assert old.local_id not in {r.local_id for r in env.load_all()}


# -- generate_image_with_character ------------------------------------------------------------


@pytest.fixture
def env_vars(monkeypatch: pytest.MonkeyPatch, chdir_tmp: Path) -> Any:
    """Point the environment at an emulator: `env_vars(env)`."""

    def _point(emu: Emulator) -> None:
        monkeypatch.setenv("ASYNCIMG_ENDPOINT", emu.url)
        monkeypatch.setenv("VOLC_ACCESSKEY", emu.config.access_key)
        monkeypatch.setenv("VOLC_SECRETKEY", emu.config.secret_key)
        monkeypatch.delenv("VOLC_SESSION_TOKEN", raising=False)

    return _point


async def _generate(*args: Any, **kwargs: Any) -> bool:
    """The synchronous call, off the loop the emulator runs on."""
    return await asyncio.to_thread(generate_image_with_character, *args, **kwargs)


def _records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text("utf-8")) for p in sorted(folder.glob("*.json"))]


async def test_generate_records_and_submits_then_a_pass_completes_it(
    start: Start, env_vars: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    env = await start()
    env_vars(env.emu)
    char = env.image("lin.png")
    tasks = env.root / "my_tasks"
    out = env.root / "frames" / "001.png"
    ok = await _generate(
        "少女站在樱花树下，回眸一笑",
        str(out),
        [str(char)],
        "manga",
        tasks_dir=str(tasks),
        size="1024x1024",
        scale=0.7,
    )
    assert ok is True
    assert capsys.readouterr().err == ""
    [data] = _records(tasks)
    assert data["status"] == "submitted" and data["task_id"]
    assert (tasks / f"{data['task_id']}.json").is_file()
    assert data["prompt"] == "少女站在樱花树下，回眸一笑"
    assert data["full_prompt"].startswith("少女站在樱花树下，回眸一笑，日系漫画风格")
    assert data["character_images"] == [str(char)] and data["style"] == "manga"
    # force_single by default: one frame, one billed image (issue item 12)
    assert data["params"] == {"width": 1024, "height": 1024, "scale": 0.7, "force_single": True}
    assert data["output_path"] == str(out) and data["filename"] == "001.png"
    # The guide's second step: a check pass over that folder downloads the image.
    env.advance(10)
    store = TaskStore(tasks)
    summary = await Checker(store, env.client, clock=env.now).run_pass()
    assert summary.completed == 1 and out.is_file()


async def test_generate_queued_on_a_limit_is_still_true(
    start: Start, env_vars: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    env = await start(concurrency=1)
    env_vars(env.emu)
    tasks = env.root / "t"
    common: dict[str, Any] = {"tasks_dir": str(tasks), "size": "1024x1024"}
    assert await _generate("one", str(env.root / "1.png"), **common) is True
    assert await _generate("two", str(env.root / "2.png"), **common) is True
    assert capsys.readouterr().err == ""
    assert sorted(d["status"] for d in _records(tasks)) == ["pending", "submitted"]


@pytest.mark.parametrize(
    ("kwargs", "named", "recorded"),
    [
        ({"style": "cubism"}, "style='cubism'", False),
        ({"size": "huge"}, "size='huge'", False),
        ({"size": "720x1280"}, "720", True),
        ({"character_images": ["chars/nobody.png"]}, "chars/nobody.png", True),
        ({"sise": 3}, "sise", True),
    ],
)
async def test_generate_bad_input_is_false_with_one_line(
    start: Start,
    env_vars: Any,
    capsys: pytest.CaptureFixture[str],
    kwargs: dict[str, Any],
    named: str,
    recorded: bool,
) -> None:
    env = await start()
    env_vars(env.emu)
    tasks = env.root / "t"
    ok = await _generate("a fox", str(env.root / "fox.png"), tasks_dir=str(tasks), **kwargs)
    assert ok is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("asyncimg: ") and named in err
    assert "fox.png" in err
    records = _records(tasks)
    if recorded:  # a record the user can fix and retry
        assert [d["status"] for d in records] == ["failed"]
    else:
        assert records == []
    assert env.emu.stats()["requests"].get(SUBMIT, 0) == 0


@pytest.mark.parametrize("missing", ["VOLC_ACCESSKEY", "VOLC_SECRETKEY"])
async def test_generate_without_credentials_is_false_and_writes_nothing(
    start: Start,
    env_vars: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    missing: str,
) -> None:
    env = await start()
    env_vars(env.emu)
    monkeypatch.delenv(missing)
    tasks = env.root / "t"
    ok = await _generate("a fox", str(env.root / "fox.png"), tasks_dir=str(tasks))
    assert ok is False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{missing} is not set" in err
    assert env.emu.config.secret_key not in err
    assert not tasks.exists() or list(tasks.iterdir()) == []
    assert env.emu.stats()["requests"] == {}


def test_generate_called_from_inside_a_running_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chdir_tmp: Path
) -> None:
    """A caller already inside asyncio (a notebook, a bot) gets the same answer."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        emu = Emulator(EmulatorConfig(access_key="AKLTthreaded", secret_key="threaded-secret"))
        box["stop"] = asyncio.Event()
        box["loop"] = asyncio.get_running_loop()
        async with emu:
            box["emu"] = emu
            ready.set()
            await box["stop"].wait()

    server = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    server.start()
    try:
        assert ready.wait(5)
        emu: Emulator = box["emu"]
        monkeypatch.setenv("ASYNCIMG_ENDPOINT", emu.url)
        monkeypatch.setenv("VOLC_ACCESSKEY", "AKLTthreaded")
        monkeypatch.setenv("VOLC_SECRETKEY", "threaded-secret")

        async def caller() -> bool:
            return generate_image_with_character(
                "a fox", str(tmp_path / "fox.png"), tasks_dir=str(tmp_path / "t")
            )

        assert asyncio.run(caller()) is True
        assert [d["status"] for d in _records(tmp_path / "t")] == ["submitted"]
    finally:
        if "loop" in box:
            box["loop"].call_soon_threadsafe(box["stop"].set)
        server.join(5)
