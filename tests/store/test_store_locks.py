"""Per-task locks: two processes never handle one task together."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from asyncimg.store import TaskRecord, TaskState, TaskStore, transition
from asyncimg.store.locks import all_slots

# Runs in a child process: take the task's lock, say whether we got it, hold it until
# the parent writes a line (or closes stdin).
CHILD = textwrap.dedent(
    """
    import sys
    from asyncimg.store import TaskStore
    store = TaskStore(sys.argv[1])
    record = store.get(sys.argv[2])
    with store.lock(record) as held:
        print("held" if held else "busy", flush=True)
        sys.stdin.readline()
    """
)


def make_record() -> TaskRecord:
    return TaskRecord(
        task_id="7392",
        output_path="out/a.png",
        filename="a.png",
        prompt="p",
        full_prompt="p",
        status=TaskState.SUBMITTED,
        submit_time=1.0,
        created_at=1.0,
        updated_at=1.0,
    )


@contextmanager
def child_lock(root: Path, key: str) -> Iterator[str]:
    """Start a child that tries the lock; yields its answer while it keeps holding."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.write("\n")
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_another_process_holding_the_lock_makes_us_skip(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    record = make_record()
    store.save(record)
    with child_lock(tmp_path, "7392") as answer:
        assert answer == "held"
        with store.lock(record) as held:
            assert held is False
    with store.lock(record) as held:  # released when the child let go
        assert held is True


def test_we_hold_it_and_another_process_is_refused(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    record = make_record()
    store.save(record)
    with store.lock(record) as held:
        assert held
        # The record file is replaced (new inode) while locked: the lock must survive.
        store.save(transition(record, TaskState.PROCESSING, now=2.0))
        with child_lock(tmp_path, "7392") as answer:
            assert answer == "busy"
    with child_lock(tmp_path, "7392") as answer:
        assert answer == "held"


def test_lock_is_not_reentrant_within_one_store(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    record = make_record()
    other = record.model_copy(update={"local_id": "f" * 32, "task_id": "8000"})
    with store.lock(record) as first:
        assert first
        with store.lock(record) as second:
            assert not second
        with TaskStore(tmp_path).lock(record) as from_second_store:
            assert not from_second_store
        with store.lock(other) as unrelated:
            assert unrelated
    with store.lock(record) as again:
        assert again


def test_lock_files_live_in_dot_locks_and_are_private(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    record = make_record()
    with store.lock(record):
        lock_file = tmp_path / ".locks" / f"{record.local_id}.lock"
        assert lock_file.exists()
        assert (lock_file.stat().st_mode & 0o777) == 0o600
        assert (lock_file.parent.stat().st_mode & 0o777) == 0o700
    store.save(record)
    assert [r.task_id for r in store.load_all().records] == ["7392"]


def test_delete_removes_an_unheld_lock_file_but_not_a_held_one(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    record = make_record()
    store.save(record)
    lock_file = tmp_path / ".locks" / f"{record.local_id}.lock"
    with child_lock(tmp_path, "7392") as answer:
        assert answer == "held"
        store.delete(record)
        assert lock_file.exists()  # someone holds it: unlinking would orphan them
    store.delete(record)
    assert not lock_file.exists()


def test_all_slots_takes_every_slot_or_frees_the_ones_it_took() -> None:
    busy = {7}
    released: list[str] = []

    def take(slot: int) -> str | None:
        return None if slot in busy else f"h{slot}"

    held: set[int] = set()
    with all_slots([3, 7, 9], held, take, released.append) as got:
        assert not got and held == set()
        assert released == []  # freed on the way out, not before
    assert released == ["h3"]  # the one taken before the busy slot; 9 never tried

    released.clear()
    with all_slots([3, 9], held, take, released.append) as got:
        assert got and held == {3, 9}
        with all_slots([9], held, take, released.append) as again:
            assert not again  # a slot this caller holds counts as busy
    assert held == set() and released == ["h3", "h9"]
