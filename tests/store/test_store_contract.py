"""One contract, two stores: the folder (`TaskStore`) and PostgreSQL (`PgStore`).

Every test here runs against both; what only a shared store does (versions, leases,
machines) is in test_pg_store.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asyncimg.store import TaskRecord, TaskState, transition
from asyncimg.store.base import Store
from asyncimg.store.locks import output_slots
from asyncimg.store.pg.store import PgStore
from asyncimg.store.states import (
    accept,
    refetch_record,
    resubmit_unconfirmed,
    retry_record,
)
from asyncimg.store.store import AmbiguousTaskKey, TaskNotFound, TaskStore

Factory = Callable[[], Store]


@pytest.fixture(params=["folder", "postgresql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Factory:
    """Opens another handle on one store, as another process would."""
    if request.param == "folder":
        return lambda: TaskStore(tmp_path / "tasks")
    url = request.getfixturevalue("pg_url")
    opened: list[PgStore] = []

    def make() -> Store:
        store = PgStore(url, machine="m1", state_dir=tmp_path / "state")
        opened.append(store)
        return store

    request.addfinalizer(lambda: [s.close() for s in opened])
    return make


def record(n: int = 1, **extra: Any) -> TaskRecord:
    now = time.time()
    data: dict[str, Any] = {
        "output_path": f"/frames/{n:03d}.png",
        "filename": f"{n:03d}.png",
        "prompt": f"雨夜的小巷，林晓撑着红伞 {n} \u2028 ✓",
        "full_prompt": f"雨夜的小巷 {n}, 日系漫画风格",
        "status": TaskState.PENDING,
        "created_at": now + n / 1000,
        "updated_at": now + n / 1000,
        "params": {"width": 1440, "height": 2560, "force_single": True},
    }
    data.update(extra)
    return TaskRecord.model_validate(data)


def test_save_then_every_reader_sees_it_unchanged(make_store: Factory) -> None:
    store = make_store()
    original = record(1, custom_field={"kept": "保留"})
    store.save(original)
    other = make_store()
    [loaded] = other.load_all().records
    assert loaded.prompt == original.prompt
    assert loaded.model_extra == {**(original.model_extra or {}), **(loaded.model_extra or {})}
    assert (loaded.model_extra or {})["custom_field"] == {"kept": "保留"}
    assert other.reload(original) is not None
    scanned = other.scan()
    assert [t.local_id for t in scanned.tasks] == [original.local_id]
    assert [r.local_id for r in scanned.records] == [original.local_id]


def test_a_transition_saved_by_one_is_seen_by_the_other(make_store: Factory) -> None:
    a, b = make_store(), make_store()
    r = record(1)
    a.save(r)
    current = b.reload(r)
    assert current is not None
    with b.lock(current) as held:
        assert held
        b.save(accept(current, "task-1", now=time.time()))
    after = a.reload(r)
    assert after is not None and after.status is TaskState.SUBMITTED
    assert after.task_id == "task-1"
    assert a.get("task-1").local_id == r.local_id


def test_finished_records_are_listed_in_brief(make_store: Factory) -> None:
    store = make_store()
    r = record(1)
    store.save(r)
    accepted = accept(store.reload(r) or r, "t-9", now=time.time())
    store.save(accepted)
    store.save(transition(accepted, TaskState.COMPLETED, now=time.time(), results=[]))
    scanned = make_store().scan()
    assert [t.status for t in scanned.tasks] == [TaskState.COMPLETED]
    assert scanned.records == []


def test_get_by_prefix_history_and_errors(make_store: Factory) -> None:
    store = make_store()
    first = record(1, local_id="aaaa1111" + "0" * 24)
    second = record(2, local_id="aaaa2222" + "0" * 24)
    store.save(first)
    store.save(second)
    assert store.get("aaaa1").local_id == first.local_id
    with pytest.raises(AmbiguousTaskKey):
        store.get("aaaa")
    with pytest.raises(TaskNotFound):
        store.get("zzzz")
    accepted = accept(store.reload(first) or first, "old-task", now=time.time())
    store.save(accepted)
    failed = transition(accepted, TaskState.FAILED, now=time.time())
    store.save(failed)
    store.save(retry_record(failed, now=time.time()))
    assert store.get("old-task").local_id == first.local_id  # an earlier task id finds it


@pytest.mark.parametrize(
    ("ended", "revive"),
    [
        (TaskState.FAILED, retry_record),
        (TaskState.UNCONFIRMED, retry_record),
        (TaskState.UNCONFIRMED, resubmit_unconfirmed),
        (TaskState.FAILED, refetch_record),
    ],
)
def test_a_revival_saves_and_its_earlier_attempt_is_read_back(
    make_store: Factory, ended: TaskState, revive: Callable[..., TaskRecord]
) -> None:
    """Plain `transition` refuses these moves; the three functions that make them must
    still save, on the folder and past PostgreSQL's state-machine check."""
    a, b = make_store(), make_store()
    r = record(1)
    a.save(r)
    now = time.time()
    if ended is TaskState.FAILED:
        sent = accept(a.reload(r) or r, "t-old", now=now)
        a.save(sent)
        last = transition(sent, ended, now=now)
    else:
        last = transition(a.reload(r) or r, ended, now=now)
    a.save(last)
    current = b.reload(r)
    assert current is not None and current.status is ended
    with b.lock(current) as held:
        assert held
        b.save(revive(current, now=now + 1))
    after = make_store().reload(r)
    assert after is not None
    assert after.status is (TaskState.SUBMITTED if revive is refetch_record else TaskState.PENDING)
    [earlier] = after.history
    assert earlier.status is ended and earlier.task_id == last.task_id
    if ended is TaskState.FAILED:  # its task id still finds it
        assert make_store().get("t-old").local_id == r.local_id


def test_get_refuses_a_task_id_two_records_hold(make_store: Factory) -> None:
    store = make_store()
    one, two = record(1), record(2)
    for r in (one, two):
        store.save(r)
        store.save(accept(store.reload(r) or r, "dup-7", now=time.time()))
    with pytest.raises(AmbiguousTaskKey) as refused:
        make_store().get("dup-7")
    assert one.output_path in str(refused.value) and two.output_path in str(refused.value)
    assert one.local_id[:12] in str(refused.value) and two.local_id[:12] in str(refused.value)
    assert make_store().get(two.local_id[:12]).local_id == two.local_id


def test_lock_excludes_another_handle_until_released(make_store: Factory) -> None:
    a, b = make_store(), make_store()
    r = record(1)
    a.save(r)
    with a.lock(r) as held:
        assert held
        with b.lock(r) as other:
            assert not other
        with a.lock(r) as again:
            assert not again  # no re-entry within one handle either
    with b.lock(r) as now_free:
        assert now_free


def test_outputs_lock_excludes_the_same_folder_until_released(make_store: Factory) -> None:
    """A submit holds it from its rerun check through its first saves: a second submit of
    the same frames (another handle, or a second caller of this one) must not get it."""
    a, b = make_store(), make_store()
    chapter = ["/frames/ch1/001.png", "/frames/ch1/002.png"]
    with a.outputs_lock(chapter) as held:
        assert held
        with b.outputs_lock(["/frames/ch1/002.png"]) as other:
            assert not other  # one file of the same folder
        with b.outputs_lock(["/frames/ch1/003.png"]) as other:
            assert not other  # another file of that folder
        with a.outputs_lock(chapter) as again:
            assert not again  # no re-entry within one handle either
        with b.outputs_lock([]) as nothing:
            assert nothing  # no files, nothing to wait for
    with b.outputs_lock(chapter) as now_free:
        assert now_free


def test_outputs_lock_of_other_folders_is_independent(make_store: Factory) -> None:
    a, b = make_store(), make_store()
    mine = "/frames/ch1/001.png"
    other = next(
        f"/frames/ch{n}/001.png"
        for n in range(2, 200)
        if output_slots([f"/frames/ch{n}/001.png"]) != output_slots([mine])
    )
    with a.outputs_lock([mine]) as held, b.outputs_lock([other]) as also:
        assert held and also
    with a.outputs_lock([mine, other]) as both:  # all or nothing
        assert both
        with b.outputs_lock([other]) as busy:
            assert not busy


def test_task_id_owner_finds_another_record_with_the_id(make_store: Factory) -> None:
    store = make_store()
    r = record(1)
    store.save(r)
    store.save(accept(store.reload(r) or r, "dup-1", now=time.time()))
    assert store.task_id_owner("dup-1", "someone-else") is not None
    assert store.task_id_owner("dup-1", r.local_id) is None


def test_delete_and_archive(make_store: Factory, tmp_path: Path) -> None:
    store = make_store()
    one, two = record(1), record(2)
    store.save(one)
    store.save(two)
    store.delete(store.reload(one) or one)
    moved = store.archive(store.reload(two) or two, tmp_path / "archive")
    assert moved.is_file()
    assert "雨夜的小巷" in moved.read_text(encoding="utf-8")
    assert make_store().load_all().records == []
