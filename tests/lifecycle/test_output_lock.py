"""Pay once for every frame, on every path that records or revives one: `retry` (with or
without `--output`), `adopt` and `migrate` make the submit's check ("has this output file a
live record already?") and their save under the store's lock on the output files.

No test races real time: the test holds the lock itself (from a second store object, as a
second process would), waits until the command says it is waiting, records what the holder
would record, and lets go. Without the lock the command would have gone ahead at once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from asyncimg.api import OutputIndex, Refused, migrate_records
from asyncimg.lifecycle.submit import build_record
from asyncimg.store.base import Store
from asyncimg.store.record import TaskRecord
from asyncimg.store.states import TaskState, transition
from asyncimg.store.store import TaskStore

if TYPE_CHECKING:
    from conftest import Env, Start

S = TaskState
T = TypeVar("T")
#: How long a command may take to reach the lock (generous: a loaded machine is slow).
REACH_S = 60


def _billed(env: Env) -> int:
    return int(env.emu.stats()["tasks_submitted"])


def _key(path: Path) -> str:
    return os.path.normpath(path)


async def _while_held(
    store: Store,
    output: Path,
    work: Callable[[Callable[[str], None]], Coroutine[Any, Any, T]],
    meanwhile: Callable[[], object] = lambda: None,
    *,
    waiters: int = 1,
) -> list[T]:
    """Hold `store`'s lock on `output`, start `waiters` runs of `work(on_wait)`, wait until
    each has said it waits, run `meanwhile` (what the holder records), let go; the results."""
    heard: list[str] = []
    all_wait = asyncio.Event()

    def on_wait(line: str) -> None:
        heard.append(line)
        if len(heard) == waiters:
            all_wait.set()

    with store.outputs_lock([_key(output)]) as held:
        assert held
        runs = [asyncio.ensure_future(work(on_wait)) for _ in range(waiters)]
        waiting = asyncio.ensure_future(all_wait.wait())
        await asyncio.wait([waiting, *runs], timeout=REACH_S, return_when="FIRST_COMPLETED")
        waiting.cancel()
        assert not any(run.done() for run in runs)  # none went ahead of the holder
        assert all_wait.is_set(), heard  # each said it waits
        assert all("another asyncimg is recording frames" in line for line in heard)
        meanwhile()
    return list(await asyncio.gather(*runs))


def _recorded(env: Env, store: Store, output: Path) -> TaskRecord:
    """What a submit holding the lock records for `output` (pending) before it lets go."""
    record = build_record(env.request(output.stem), env.config, now=env.now())
    store.save(record)
    return record


# -- retry --------------------------------------------------------------------------------------


@pytest.mark.parametrize("records", [True, False], ids=["holder-records", "holder-records-none"])
async def test_retry_output_waits_for_the_lock_and_never_pays_twice(
    start: Start, records: bool
) -> None:
    env = await start()
    (failed,) = await env.failed_by_review("f1")
    target = env.out_dir / "f2.png"
    other = TaskStore(env.tasks_dir)  # another process's view of the folder
    billed = _billed(env)
    recorded: list[TaskRecord] = []

    async def retry(on_wait: Callable[[str], None]) -> Any:
        return await env.workspace().retry(
            [failed.task_id or ""], output=str(target), on_wait=on_wait
        )

    def meanwhile() -> None:
        assert env.load(failed).status is S.FAILED  # nothing saved while it waited
        if records:
            recorded.append(_recorded(env, other, target))

    (report,) = await _while_held(other, target, retry, meanwhile)
    if records:  # the holder's frame is the one paid for; the retry is left alone
        assert report.submitted == 0 and len(report.taken) == 1, report
        line = report.taken[0].line()
        assert str(target) in line and "already queued locally" in line, line
        assert env.load(failed).status is S.FAILED and env.load(failed).output_path != str(target)
        assert (await env.run_pass()).submitted == 1  # the holder's frame
        assert env.load(recorded[0]).status is S.SUBMITTED
    else:  # nothing there: the retry goes ahead once it has the lock
        assert report.submitted == 1 and report.taken == []
        assert env.load(failed).output_path == str(target)
        assert (await env.run_pass()).submitted == 0
    assert _billed(env) == billed + 1


async def test_two_retries_into_one_output_pay_once(start: Start) -> None:
    """Two `retry TASK --output X` of different tasks at once: the second to get the lock
    finds the first's frame recorded and leaves its own task alone."""
    env = await start()
    one, two = await env.failed_by_review("f1", "f2")
    target = env.out_dir / "same.png"
    billed = _billed(env)
    tasks = iter([one.task_id or "", two.task_id or ""])

    async def retry(on_wait: Callable[[str], None]) -> Any:
        return await env.workspace().retry([next(tasks)], output=str(target), on_wait=on_wait)

    reports = await _while_held(TaskStore(env.tasks_dir), target, retry, waiters=2)
    assert sorted(r.submitted for r in reports) == [0, 1], reports
    assert sorted(len(r.taken) for r in reports) == [0, 1], reports
    assert _billed(env) == billed + 1
    env.advance(10)
    summary = await env.run_pass()
    assert summary.completed == 1 and summary.submitted == 0
    assert _billed(env) == billed + 1 and target.is_file()


async def test_retry_failed_resubmits_one_of_two_failed_records_of_one_output(
    start: Start,
) -> None:
    """Two failed records of one file (a `--force` earlier): `retry --failed` used to
    resubmit both, paying for the frame twice."""
    env = await start()
    first, second = await env.failed_by_review("f1", "f1")
    billed = _billed(env)
    report = await env.workspace().retry(all_failed=True)
    assert report.submitted == 1 and len(report.taken) == 1, report
    assert report.taken[0].record.local_id == second.local_id  # oldest first
    assert env.load(first).status is S.SUBMITTED and env.load(second).status is S.FAILED
    assert _billed(env) == billed + 1


async def test_a_refetch_is_not_refused_by_another_live_record(start: Start) -> None:
    """A refetch pays nothing (the same task id goes back in flight), so another record
    of the file does not stop it; it still waits for the lock."""
    env = await start()
    env.add("f1")
    await env.run_pass()  # accepted
    (env.out_dir / "f1.png").mkdir(parents=True)  # its image cannot be saved: failed
    env.advance(10)
    await env.workspace().monitor(interval=0)
    [saved] = env.load_all()
    assert saved.status is S.FAILED and saved.last_error is not None
    assert saved.last_error.kind == "SaveFailed"
    target = env.out_dir / "f2.png"
    other = TaskStore(env.tasks_dir)
    billed = _billed(env)

    async def retry(on_wait: Callable[[str], None]) -> Any:
        return await env.workspace().retry(
            [saved.task_id or ""], output=str(target), on_wait=on_wait
        )

    (report,) = await _while_held(other, target, retry, lambda: _recorded(env, other, target))
    assert len(report.refetched) == 1 and report.taken == [] and report.submitted == 0
    assert _billed(env) == billed


# -- submit ----------------------------------------------------------------------------------


async def test_submit_never_replaces_a_failed_record_while_an_older_one_is_live(
    start: Start,
) -> None:
    """The latest record of the file failed but an older one is still queued: replacing
    the failed one paid for the frame a second time."""
    env = await start()
    queued = env.add("f1")
    env.advance(1)
    newer = env.add("f1")
    env.store.save(transition(newer, S.FAILED, now=env.now()))
    index = OutputIndex(env.load_all())
    live = index.live(newer)
    assert live is not None and live.local_id == queued.local_id
    report = await env.workspace().submit([env.request("f1")])
    assert report.submitted == 0 and len(report.skipped) == 1, report
    assert "already queued locally" in report.skipped[0].reason
    assert env.load(newer).status is S.FAILED
    assert _billed(env) == 0


# -- adopt -----------------------------------------------------------------------------------


async def test_adopt_waits_for_the_lock_and_gives_the_id_to_the_frame_recorded_meanwhile(
    start: Start,
) -> None:
    """Decided before the lock, adopt made a record of its own beside the frame a submit
    had just recorded, and the next pass paid for that frame a second time."""
    env = await start()
    target = env.out_dir / "f1.png"
    by_hand = await env.client.submit("jimeng_t2i_v40", {"prompt": "a heron", "size": 1024**2})
    other = TaskStore(env.tasks_dir)
    recorded: list[TaskRecord] = []

    async def adopt(on_wait: Callable[[str], None]) -> Any:
        return await env.workspace().adopt(by_hand, str(target), on_wait=on_wait)

    def meanwhile() -> None:
        assert env.load_all() == []  # nothing saved while it waited
        recorded.append(_recorded(env, other, target))

    (report,) = await _while_held(other, target, adopt, meanwhile)
    assert report.took_over is S.PENDING and report.record.local_id == recorded[0].local_id
    assert [r.task_id for r in env.load_all()] == [by_hand]
    env.advance(10)
    summary = await env.run_pass()
    assert summary.completed == 1 and summary.submitted == 0
    assert _billed(env) == 1 and target.is_file()


async def test_adopt_refuses_after_the_lock_when_the_holder_adopted_the_task(
    start: Start,
) -> None:
    """Two adopts of one task: the one that waited re-reads the folder under the lock."""
    env = await start()
    target = env.out_dir / "f1.png"
    by_hand = await env.client.submit("jimeng_t2i_v40", {"prompt": "a heron", "size": 1024**2})
    other = TaskStore(env.tasks_dir)

    async def adopt(on_wait: Callable[[str], None]) -> Exception | None:
        try:
            await env.workspace().adopt(by_hand, str(target), on_wait=on_wait)
        except Refused as exc:
            return exc
        return None

    def meanwhile() -> None:  # the holder adopted it first
        record = _recorded(env, other, target)
        other.save(transition(record, S.SUBMITTED, now=env.now(), task_id=by_hand))

    (refused,) = await _while_held(other, target, adopt, meanwhile)
    assert refused is not None and "already in" in str(refused)
    assert len(env.load_all()) == 1


# -- migrate ---------------------------------------------------------------------------------


def _settled(
    env: Env, folder: Path, *names: str, status: TaskState = S.PENDING
) -> list[TaskRecord]:
    store = TaskStore(folder, clock=env.now)
    made = []
    for name in names:
        record = build_record(env.request(name), env.config, now=env.now())
        if status is S.UNCONFIRMED:
            record = transition(record, S.UNCONFIRMED, now=env.now())
        store.save(record)
        made.append(record)
    return made


async def test_migrate_waits_for_the_destinations_lock_and_leaves_a_frame_it_has_in_the_source(
    start: Start,
) -> None:
    env = await start()
    old = env.root / "old_tasks"
    kept, moved = _settled(env, old, "f1", "f2")
    target = env.out_dir / "f1.png"
    other = TaskStore(env.tasks_dir)  # a submit to the destination holds its lock

    async def migrate(on_wait: Callable[[str], None]) -> Any:
        return await migrate_records(TaskStore(old), env.store, on_wait=on_wait)

    def meanwhile() -> None:
        assert env.load_all() == []  # nothing moved while it waited
        _recorded(env, other, target)

    (report,) = await _while_held(other, target, migrate, meanwhile)
    assert report.moved == 1 and len(report.refused) == 1, report
    assert str(target) in report.refused[0] and "already queued locally" in report.refused[0]
    assert [r.local_id for r in TaskStore(old).load_all().records] == [kept.local_id]
    assert {r.output_path for r in env.load_all()} == {str(target), moved.output_path}
    summary = await env.run_pass()  # the destination sends each frame once
    assert summary.submitted == 2 and _billed(env) == 2


async def test_migrate_moves_what_the_destination_would_not_send_again(start: Start) -> None:
    """Only a record the destination would send by itself (pending, unconfirmed) is held
    back by a live record there; a failed one moves (it is paid for only when retried, and
    a retry then finds the live record)."""
    env = await start()
    (live,) = _settled(env, env.tasks_dir, "f1")
    old = env.root / "old_tasks"
    (pending,) = _settled(env, old, "f1")
    (unconfirmed,) = _settled(env, old, "f1", status=S.UNCONFIRMED)
    (failed,) = _settled(env, old, "f1")
    TaskStore(old).save(transition(failed, S.FAILED, now=env.now()))
    report = await migrate_records(TaskStore(old), env.store)
    assert report.moved == 1 and len(report.refused) == 2, report
    assert {r.local_id for r in env.load_all()} == {live.local_id, failed.local_id}
    left = {r.local_id for r in TaskStore(old).load_all().records}
    assert left == {pending.local_id, unconfirmed.local_id}
    retried = await env.workspace().retry(all_failed=True)
    assert retried.submitted == 0 and len(retried.taken) == 1  # f1 is queued already
    assert (await env.run_pass()).submitted == 1 and _billed(env) == 1
