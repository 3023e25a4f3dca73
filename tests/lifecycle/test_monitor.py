"""Monitor: passes until nothing is unfinished, a pass limit, and safe cancellation."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from asyncimg import constants
from asyncimg.lifecycle.check import PassSummary
from asyncimg.lifecycle.monitor import monitor
from asyncimg.store.states import TaskState
from asyncimg.store.store import TaskStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import Env, Start

RESULT = constants.ACTION_GET_RESULT


def _advance_each_pass(env: Env, seconds: float) -> Callable[[PassSummary], None]:
    def on_pass(_summary: PassSummary) -> None:
        env.advance(seconds)

    return on_pass


async def test_monitor_stops_by_itself_when_everything_is_finished(start: Start) -> None:
    env = await start(concurrency=2)
    for i in range(5):
        env.add(f"f{i}")
    env.emu.inject("review_failure")  # one ends failed: finished too
    outcome = await monitor(env.checker(), interval=0, on_pass=_advance_each_pass(env, 10))
    assert not outcome.interrupted
    assert outcome.last is not None and outcome.last.unfinished == 0
    assert outcome.passes == len(outcome.summaries) == 4
    assert all(s.unfinished > 0 for s in outcome.summaries[:-1])
    statuses = sorted(r.status.value for r in env.load_all())
    assert statuses == ["completed"] * 4 + ["failed"]


async def test_monitor_with_nothing_to_do_runs_one_pass(start: Start) -> None:
    env = await start()
    outcome = await monitor(env.checker(), interval=3600)
    assert outcome.passes == 1 and outcome.last is not None
    assert outcome.last.line() == "no tasks"


async def test_max_passes_stops_a_monitor_that_would_wait_longer(start: Start) -> None:
    env = await start()
    env.add("slowpoke")
    seen: list[PassSummary] = []
    outcome = await monitor(env.checker(), interval=0, on_pass=seen.append, max_passes=3)
    assert outcome.passes == 3 and seen == outcome.summaries
    assert outcome.last is not None and outcome.last.unfinished == 1
    assert [r.status for r in env.load_all()] == [TaskState.SUBMITTED]


async def test_keep_running_does_not_stop_when_done(start: Start) -> None:
    env = await start()
    outcome = await monitor(env.checker(), interval=0, until_done=False, max_passes=2)
    assert outcome.passes == 2


async def test_interval_is_waited_between_passes(start: Start) -> None:
    env = await start()
    env.add("f1")
    job = asyncio.create_task(monitor(env.checker(), interval=3600))
    await env.wait_until(lambda: env.emu.stats()["tasks_submitted"] == 1)
    await asyncio.sleep(0.05)
    assert not job.done()  # sitting in the hour-long wait, not spinning
    assert env.emu.stats()["requests"].get(RESULT, 0) == 0
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job


def _assert_folder_intact(env: Env, *folders: Path) -> None:
    report = TaskStore(env.tasks_dir).load_all()
    assert report.problems == [] and report.removed_duplicates == []
    for folder in folders:
        if folder.exists():
            temps = [p for p in folder.rglob(".*") if p.suffix in (".tmp", ".part")]
            assert temps == []
    for record in report.records:
        for result in record.results:  # every image a record names is whole
            with Image.open(result.path) as img:
                img.load()


async def test_cancel_mid_poll_leaves_every_record_loadable(start: Start) -> None:
    env = await start(slow_seconds=600.0)  # the slow poll is held until released
    records = [env.add(f"f{i}") for i in range(4)]
    await env.run_pass()
    env.advance(10)
    env.emu.inject("slow", action=RESULT)
    job = asyncio.create_task(monitor(env.checker(poll_concurrency=1), interval=0))
    await env.wait_until(lambda: env.emu.stats()["faults_fired"].get("slow", 0) == 1)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    env.emu.release_slow()
    _assert_folder_intact(env, env.tasks_dir, env.out_dir)
    # Nothing was lost: a new monitor finishes the job.
    outcome = await monitor(env.checker(), interval=0)
    assert outcome.last is not None and outcome.last.counts["completed"] == len(records)


async def test_cancel_mid_download_leaves_no_partial_image(start: Start) -> None:
    env = await start(images_per_task=4)
    for i in range(6):
        env.add(f"f{i}", params={"force_single": False})
    await env.run_pass()
    env.advance(10)
    job = asyncio.create_task(monitor(env.checker(), interval=0))
    await env.wait_until(lambda: env.emu.stats()["image_downloads"] >= 3)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    _assert_folder_intact(env, env.tasks_dir, env.out_dir)
    statuses = {r.status for r in env.load_all()}
    assert statuses <= {TaskState.SUBMITTED, TaskState.COMPLETED}
    outcome = await monitor(env.checker(), interval=0)
    assert outcome.last is not None and outcome.last.counts["completed"] == 6
    assert len(list(env.out_dir.glob("*.png"))) == 24


async def _boom() -> None:
    raise ValueError("boom")


async def test_sigint_between_passes_stops_the_monitor_cleanly(start: Start) -> None:
    env = await start()
    env.add("f1")
    loop = asyncio.get_running_loop()

    def interrupt(_summary: PassSummary) -> None:
        loop.call_soon(os.kill, os.getpid(), signal.SIGINT)

    outcome = await monitor(env.checker(), interval=3600, on_pass=interrupt)
    assert outcome.interrupted and outcome.passes == 1
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert [r.status for r in env.load_all()] == [TaskState.SUBMITTED]
    # The caller's task is not left "cancelling": its next TaskGroup reports the real error.
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    with pytest.raises(ExceptionGroup):
        async with asyncio.TaskGroup() as group:
            group.create_task(_boom())


async def test_sigint_mid_pass_stops_at_the_network_wait(start: Start) -> None:
    env = await start(slow_seconds=600.0)  # the slow poll is held until released
    for i in range(3):
        env.add(f"f{i}")
    await env.run_pass()
    env.advance(10)
    env.emu.inject("slow", action=RESULT)
    loop = asyncio.get_running_loop()
    loop.call_soon(_kill_when, env, loop)
    outcome = await monitor(env.checker(poll_concurrency=1), interval=0)
    env.emu.release_slow()
    assert outcome.interrupted and outcome.passes == 0 and outcome.last is None
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    _assert_folder_intact(env, env.tasks_dir, env.out_dir)


def _kill_when(env: Env, loop: asyncio.AbstractEventLoop) -> None:
    """SIGINT as soon as the emulator is sitting on the slow poll."""
    if env.emu.stats()["faults_fired"].get("slow", 0):
        os.kill(os.getpid(), signal.SIGINT)
    else:
        loop.call_later(0.002, _kill_when, env, loop)
