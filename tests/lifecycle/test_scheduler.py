"""The monitor's scheduler end to end: the real client, the real emulator, real time.

Tasks take 0.1-0.3 s and the scheduler's floor is 50 ms, so a run lasts a second or two;
every assertion is about outcomes (what was billed, what finished, what the emulator saw),
never about how long something took.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from asyncimg.emulator.config import REALISTIC
from asyncimg.lifecycle.check import Checker
from asyncimg.lifecycle.scheduler import STATE_FILE, Scheduler
from asyncimg.store.states import TaskState
from asyncimg.store.store import TaskStore

if TYPE_CHECKING:
    from conftest import Env, Start

FAST = (0.1, 0.3)


def _scheduler(env: Env, checker: Checker | None = None, **kwargs: Any) -> Scheduler:
    kwargs.setdefault("interval", 0.3)
    kwargs.setdefault("floor", 0.05)
    kwargs.setdefault("watch_every", 0.1)
    kwargs.setdefault("submit_rate", 20.0)  # the default (1/s, adapted) is tested below
    return Scheduler(checker or env.checker(), **kwargs)


async def _run(scheduler: Scheduler) -> Any:
    async with asyncio.timeout(60):
        return await scheduler.run()


async def test_a_chapter_finishes_within_the_accounts_limit(start: Start) -> None:
    # Tasks several poll floors long, so the limit can be measured from when they finished.
    env = await start(clock=time.time, gen_seconds=(0.4, 0.8), concurrency=2)
    for i in range(10):
        env.add(f"f{i:02d}")
    scheduler = _scheduler(env, submit_rate=None)  # the adaptive default
    outcome = await _run(scheduler)
    assert outcome.last.exit_code == 0 and outcome.last.counts["completed"] == 10
    assert scheduler.submits.per_second > 1.0  # no 50429: it sped up
    stats = env.emu.stats()
    assert stats["tasks_submitted"] == 10 and stats["peak_unfinished"] <= 2
    assert stats["errors"].get("50430", 0) <= 3  # learned, not used as the control signal
    assert len(list(env.out_dir.glob("*.png"))) == 10
    # What it learned of the account is kept for the next run.
    state = json.loads((env.tasks_dir / STATE_FILE).read_text())
    assert state["limit"] >= 1 and state["learned"] in (None, 1, 2)


async def test_the_poll_rate_starts_where_the_last_run_left_it_unless_configured(
    start: Start,
) -> None:
    env = await start(clock=time.time, gen_seconds=FAST, concurrency=1)
    env.add("f00")
    state = env.tasks_dir / STATE_FILE
    state.write_text(json.dumps({"poll_rate": 5.5, "submit_rate": 2.0}))
    scheduler = _scheduler(env)
    assert scheduler.polls.per_second == 5.5 and scheduler.polls.ceiling is None
    configured = _scheduler(env, poll_rate=3.0)  # the user's rate is a ceiling
    assert configured.polls.per_second == 3.0 and configured.polls.ceiling == 3.0
    await _run(scheduler)
    assert json.loads(state.read_text())["poll_rate"] == scheduler.polls.per_second


async def test_frames_go_out_strictly_in_batch_order(start: Start) -> None:
    env = await start(clock=time.time, gen_seconds=FAST, concurrency=1)
    records = [env.add(f"f{i:02d}") for i in range(5)]
    await _run(_scheduler(env))
    done = {r.local_id: r for r in TaskStore(env.tasks_dir).load_all().records}
    submitted = [done[r.local_id].submit_time for r in records]
    assert submitted == sorted(submitted)


async def test_a_limit_that_drops_mid_run_is_followed(start: Start) -> None:
    env = await start(clock=time.time, gen_seconds=FAST, concurrency=4)
    for i in range(12):
        env.add(f"f{i:02d}")
    scheduler = _scheduler(env, max_in_flight=4)

    async def drop_limit() -> None:
        await env.wait_until(lambda: env.emu.stats()["tasks_done"] >= 3)
        env.emu.config.concurrency = 1

    dropper = asyncio.create_task(drop_limit())
    outcome = await _run(scheduler)
    await dropper
    assert outcome.last.counts["completed"] == 12
    assert env.emu.stats()["tasks_submitted"] == 12  # a 50430 never billed anything
    assert scheduler.cap.limit <= 2


async def test_two_monitors_on_one_folder_never_submit_a_frame_twice(start: Start) -> None:
    env = await start(clock=time.time, gen_seconds=FAST, concurrency=3)
    for i in range(12):
        env.add(f"f{i:02d}")
    other = Checker(TaskStore(env.tasks_dir), env.new_client(), clock=env.now)
    results = await asyncio.gather(_run(_scheduler(env)), _run(_scheduler(env, other)))
    assert all(r.last.counts["completed"] == 12 for r in results)
    stats = env.emu.stats()
    assert stats["tasks_submitted"] == 12 and stats["image_downloads"] == 12


async def test_records_added_while_it_runs_are_picked_up(start: Start) -> None:
    env = await start(clock=time.time, gen_seconds=(0.5, 0.5))
    env.add("first")
    scheduler = _scheduler(env, until_done=False)
    job = asyncio.create_task(scheduler.run())
    await env.wait_until(lambda: env.emu.stats()["tasks_submitted"] == 1)
    env.add("later")  # as gen_image.py in another process would
    for _ in range(500):
        if len(list(env.out_dir.glob("*.png"))) == 2:
            break
        await asyncio.sleep(0.02)
    scheduler.until_done = True  # now stop once nothing is left
    outcome = await asyncio.wait_for(job, 30)
    assert outcome.last.counts["completed"] == 2
    assert sorted(p.name for p in env.out_dir.glob("*.png")) == ["first.png", "later.png"]
    assert env.emu.stats()["tasks_submitted"] == 2


async def test_a_setup_problem_stops_the_scheduler_with_exit_2(start: Start) -> None:
    env = await start(clock=time.time, gen_seconds=FAST)
    env.add("f1")
    env.emu.config.secret_key = "rotated"  # the account's key changed under us
    outcome = await _run(_scheduler(env))
    assert outcome.last.exit_code == 2 and "SignatureDoesNotMatch" in (outcome.last.halted or "")
    [record] = TaskStore(env.tasks_dir).load_all().records
    assert record.status is TaskState.PENDING


async def test_a_chapter_on_a_realistic_account(start: Start) -> None:
    """The realistic profile (one unfinished task, 2 QPS, 10-60 s a frame) run 200 times
    faster; the scheduler's time constants scaled alike (as `make bench` does)."""
    scale = 200.0
    env = await start(clock=time.time, **(REALISTIC | {"time_scale": scale}))
    for i in range(8):
        env.add(f"f{i:02d}")
    scheduler = _scheduler(
        env,
        interval=30.0 / scale,
        floor=1.0 / scale,
        watch_every=2.0 / scale,
        submit_rate=1.0 * scale,
        poll_rate=4.0 * scale,
        backoff_base=1.0 / scale,
        backoff_cap=15.0 / scale,
    )
    outcome = await _run(scheduler)
    assert outcome.last.counts["completed"] == 8
    stats = env.emu.stats()
    assert stats["tasks_submitted"] == 8 and stats["peak_unfinished"] == 1
    # One slot: it found that with one 50430 and never guessed past it.
    assert stats["errors"].get("50430", 0) <= 2 and scheduler.cap.limit == 1
    # Polls follow a plan, not a tight loop (the first frames, before anything is learned,
    # are polled from the floor up, doubling).
    assert stats["requests"]["CVSync2AsyncGetResult"] <= 8 * 6
