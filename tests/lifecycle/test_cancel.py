"""`asyncimg cancel` against the emulator's CVCancelTask (issue 10, research §5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asyncimg.lifecycle.cancel import Plan, cancel_tasks, plan
from asyncimg.lifecycle.config import Config
from asyncimg.lifecycle.submit import TaskRequest, build_record
from asyncimg.store.states import TaskState as S
from asyncimg.store.states import transition

if TYPE_CHECKING:
    from conftest import Env, Start


async def _cancel(env: Env, *keys: str) -> list[str]:
    outcomes = await cancel_tasks(env.store, env.client, keys, clock=env.now)
    return [o.line for o in outcomes]


async def test_cancel_queued_generating_pending_and_finished(start: Start) -> None:
    env = await start()
    queued = env.add("queued")
    running = env.add("running")
    await env.run_pass()
    queued, running = env.store.get(queued.local_id), env.store.get(running.local_id)
    assert queued.task_id and running.task_id
    local = env.add("local")  # never sent

    env.advance(1)  # both still in_queue (30 % of 10 s)
    [line] = await _cancel(env, queued.task_id)
    assert "cancelled by the service" in line
    record = env.store.get(queued.local_id)
    assert record.status is S.FAILED and record.last_error is not None
    assert record.last_error.kind == "Cancelled" and record.last_error.resubmittable
    assert record.cancel is not None and record.cancel.outcome == "cancelled"
    assert env.emu.stats()["tasks_unfinished"] == 1  # its slot is free

    env.advance(4)  # `running` is generating now
    [line] = await _cancel(env, running.task_id)
    assert "refused" in line and "generating" in line
    record = env.store.get(running.local_id)
    assert record.status in (S.SUBMITTED, S.PROCESSING)  # it keeps running
    assert record.cancel is not None and record.cancel.outcome == "refused"
    assert record.cancel.code == 50215

    [line] = await _cancel(env, local.local_id)
    assert "never sent" in line
    assert env.store.get(local.local_id).status is S.FAILED

    env.advance(10)
    summary = await env.run_pass()
    assert summary.completed == 1  # the refused one finished; nothing was resubmitted
    assert env.emu.stats()["tasks_submitted"] == 2
    [line] = await _cancel(env, running.task_id)
    assert "already completed" in line
    [line] = await _cancel(env, "no-such-task")
    assert "no-such-task" in line


def test_plan_by_state() -> None:
    record = build_record(TaskRequest("p", "out.png", size="1024x1024"), Config(), now=1.0)
    assert plan(record) is Plan.LOCAL
    marked = transition(record, S.PENDING, now=2.0, submit_started_at=2.0)
    assert plan(marked) is Plan.UNKNOWN_ID
    assert plan(transition(record, S.UNCONFIRMED, now=2.0)) is Plan.UNKNOWN_ID
    sent = transition(record, S.SUBMITTED, now=2.0, task_id="123")
    assert plan(sent) is Plan.ASK
    assert plan(transition(sent, S.FAILED, now=3.0)) is Plan.FINISHED
