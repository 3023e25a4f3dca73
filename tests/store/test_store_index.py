"""`TaskStore.scan` and its index: finished records are not parsed again while unchanged.

Whether a file was read is observed through `ScanReport.files_read` and a spy on the
store's one reader, never by timing. Most tests set the settle window to 0 so that files
written a moment ago may be cached; one test keeps the real window.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from asyncimg.store import (
    ErrorInfo,
    TaskRecord,
    TaskState,
    TaskStore,
    record_to_json,
    retry_record,
    transition,
)
from asyncimg.store import index as store_index
from asyncimg.store import store as store_module
from asyncimg.store.index import INDEX_NAME, RecordSummary, dump_index, load_index
from asyncimg.store.states import FINISHED

S = TaskState


@pytest.fixture(autouse=True)
def settle_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_index, "SETTLE_NS", 0)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the record files the store opens and parses, in order (by scans and
    full loads, and by the one-record reads of reload and get)."""
    names: list[str] = []
    for reader in ("_read_record_keyed", "_read_record"):
        real = getattr(store_module, reader)

        def spy(path: Path, real: Any = real) -> Any:
            names.append(path.name)
            return real(path)

        monkeypatch.setattr(store_module, reader, spy)
    return names


def record(n: int, **extra: Any) -> TaskRecord:
    data: dict[str, Any] = {
        "output_path": f"frames/{n:03d}.png",
        "filename": f"{n:03d}.png",
        "prompt": f"frame {n}",
        "full_prompt": f"frame {n}, manga",
        "status": "pending",
        "created_at": 100.0 + n,
        "updated_at": 100.0 + n,
        "local_id": f"{n:032x}",
    }
    data.update(extra)
    return TaskRecord.model_validate(data)


def submitted(n: int) -> TaskRecord:
    return transition(
        record(n), S.SUBMITTED, now=200.0 + n, task_id=f"73{n:04d}", submit_time=200.0, attempts=1
    )


def completed(n: int) -> TaskRecord:
    return transition(submitted(n), S.COMPLETED, now=300.0 + n)


def failed(n: int, message: str = "Post Img Risk Not Pass") -> TaskRecord:
    error = ErrorInfo(kind="OutputRejected", message=message, time=300.0, resubmittable=True)
    return transition(submitted(n), S.FAILED, now=300.0 + n, last_error=error)


def fill(root: Path) -> dict[str, TaskRecord]:
    """Two finished and two unfinished records; their file names → records."""
    store = TaskStore(root)
    records = [completed(1), failed(2), record(3), submitted(4)]
    return {store.save(r).name: r for r in records}


def past_the_tick_of(path: Path) -> None:
    """Return once the file system stamps a change later than `path`'s last one, so that an
    edit cannot share its timestamp (what the settle window guards against in real use)."""
    probe = path.with_name(".probe")
    while True:
        probe.write_bytes(b"")
        if probe.stat().st_ctime_ns > path.stat().st_ctime_ns:
            break
    probe.unlink()


def index_names(root: Path) -> set[str]:
    return set(json.loads((root / INDEX_NAME).read_bytes())["columns"]["name"])


# -- the index is used ------------------------------------------------------------------


def test_a_second_scan_reads_only_the_unfinished_records(tmp_path: Path, opened: list[str]) -> None:
    files = fill(tmp_path)
    first = TaskStore(tmp_path).scan()
    assert first.files_read == 4 and sorted(opened) == sorted(files)
    opened.clear()

    for store in (TaskStore(tmp_path), TaskStore(tmp_path)):  # new processes: from the file
        again = store.scan()
        unfinished = sorted(n for n, r in files.items() if r.status not in FINISHED)
        assert sorted(opened) == unfinished and again.files_read == 2
        opened.clear()
        assert again.problems == [] and again.removed_duplicates == []
        assert sorted(again.tasks) == sorted(
            RecordSummary.of(r, tmp_path / n) for n, r in files.items()
        )
        assert sorted(again.records, key=lambda r: r.local_id) == [record(3), submitted(4)]


def test_scans_of_one_store_keep_the_index_in_memory(tmp_path: Path, opened: list[str]) -> None:
    fill(tmp_path)
    store = TaskStore(tmp_path)
    store.scan()
    written = (tmp_path / INDEX_NAME).stat()
    opened.clear()
    for _ in range(3):
        assert store.scan().files_read == 2
    assert len(opened) == 6
    assert (tmp_path / INDEX_NAME).stat().st_mtime_ns == written.st_mtime_ns  # not rewritten


def test_the_index_holds_finished_records_only_privately(tmp_path: Path) -> None:
    files = fill(tmp_path)
    TaskStore(tmp_path).scan()
    assert index_names(tmp_path) == {n for n, r in files.items() if r.status in FINISHED}
    path = tmp_path / INDEX_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.suffix != ".json"  # never taken for a record by scripts reading *.json
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*files, INDEX_NAME])


def test_summaries_carry_what_list_and_the_summary_show(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    store.save(failed(1, message="夜空下的城市 🌃 rejected"))
    TaskStore(tmp_path).scan()
    (summary,) = TaskStore(tmp_path).scan().tasks  # from the index
    assert summary.status is S.FAILED and summary.task_id == "730001"
    assert summary.output_path == "frames/001.png" and summary.updated_at == 301.0
    assert summary.last_error is not None
    assert summary.last_error.message == "夜空下的城市 🌃 rejected"
    assert summary.last_error.resubmittable and summary.last_error.kind == "OutputRejected"
    assert summary.path == tmp_path / "730001.json"


def test_load_all_still_reads_every_file(tmp_path: Path, opened: list[str]) -> None:
    files = fill(tmp_path)
    TaskStore(tmp_path).scan()
    opened.clear()
    report = TaskStore(tmp_path).load_all()
    assert sorted(opened) == sorted(files)
    assert sorted(report.records, key=lambda r: r.local_id) == sorted(
        files.values(), key=lambda r: r.local_id
    )


# -- changes are seen -------------------------------------------------------------------


def test_a_record_edited_in_place_is_read_again(tmp_path: Path, opened: list[str]) -> None:
    """Same inode, same size, mtime put back: the ctime still gives it away."""
    store = TaskStore(tmp_path)
    path = store.save(completed(1))
    assert store.scan().files_read == 1
    past_the_tick_of(path)
    before = path.stat()
    text = path.read_text(encoding="utf-8")
    edited = text.replace("frames/001.png", "frames/00X.png")
    assert len(edited) == len(text)
    with path.open("r+", encoding="utf-8") as fh:
        fh.write(edited)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_ino == before.st_ino

    opened.clear()
    (summary,) = store.scan().tasks
    assert opened == [path.name]
    assert summary.output_path == "frames/00X.png"


def test_a_record_changed_by_another_process_is_seen(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    store.save(failed(1))
    assert [t.status for t in store.scan().tasks] == [S.FAILED]

    other = TaskStore(tmp_path)  # `asyncimg retry` in another process
    (current,) = other.load_all().records
    other.save(retry_record(current, now=400.0))

    report = store.scan()
    assert [t.status for t in report.tasks] == [S.PENDING]
    (again,) = report.records
    assert again.history[0].task_id == "730001"
    assert index_names(tmp_path) == set()  # its only entry went with the old file


def test_records_added_and_removed_elsewhere_are_seen(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    store.save(completed(1))
    store.save(completed(2))
    store.scan()
    other = TaskStore(tmp_path)
    other.delete(completed(1))
    other.save(completed(3))
    assert sorted(t.local_id for t in store.scan().tasks) == [f"{n:032x}" for n in (2, 3)]
    assert index_names(tmp_path) == {"730002.json", "730003.json"}


def test_two_processes_writing_the_index_stay_correct(tmp_path: Path) -> None:
    a, b = TaskStore(tmp_path), TaskStore(tmp_path)
    a.save(completed(1))
    a.scan()
    b.save(completed(2))
    b.scan()  # b's index replaces a's
    a.save(completed(3))
    assert sorted(t.filename for t in a.scan().tasks) == ["001.png", "002.png", "003.png"]
    assert sorted(t.filename for t in b.scan().tasks) == ["001.png", "002.png", "003.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_unfinished_records_are_always_read(tmp_path: Path, opened: list[str]) -> None:
    store = TaskStore(tmp_path)
    path = store.save(submitted(1))
    for _ in range(3):
        store.scan()
    assert opened == [path.name] * 3
    assert not (tmp_path / INDEX_NAME).exists()


def test_a_file_changed_moments_ago_is_not_cached(
    tmp_path: Path, opened: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A same-size rewrite within one timestamp tick would look unchanged: wait it out."""
    monkeypatch.setattr(store_index, "SETTLE_NS", 60 * 10**9)
    store = TaskStore(tmp_path)
    path = store.save(completed(1))
    store.scan()
    TaskStore(tmp_path).scan()
    assert opened == [path.name] * 2
    assert not (tmp_path / INDEX_NAME).exists()


# -- the index is only a cache ----------------------------------------------------------

CORRUPT = {
    "empty": b"",
    "truncated": b'{"version": 1, "columns": {"name": ["1.json"',
    "not utf-8": b"\xff\xfe{}",
    "an array": b"[]",
    "other version": json.dumps({"version": 99, "columns": {}}).encode(),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_index_is_rebuilt_silently(case: str, tmp_path: Path, opened: list[str]) -> None:
    files = fill(tmp_path)
    TaskStore(tmp_path).scan()
    (tmp_path / INDEX_NAME).write_bytes(CORRUPT[case])
    opened.clear()
    report = TaskStore(tmp_path).scan()
    assert report.problems == [] and len(report.tasks) == 4 and report.files_read == 4
    assert not (tmp_path / ".quarantine").exists()
    assert index_names(tmp_path) == {n for n, r in files.items() if r.status in FINISHED}
    assert TaskStore(tmp_path).scan().files_read == 2


NONSENSE = {
    "an unfinished status": lambda c: c["status"].__setitem__(0, "pending"),
    "a string for a number": lambda c: c["mtime_ns"].__setitem__(1, "yesterday"),
    "a bool for an int": lambda c: c["size"].__setitem__(0, True),
    "an int for a float": lambda c: c["created_at"].__setitem__(0, 101),
    "a short column": lambda c: c["local_id"].pop(),
    "a name twice": lambda c: c["name"].__setitem__(1, c["name"][0]),
    "a malformed error": lambda c: c["error"].__setitem__(0, ["kind", "message"]),
    "a missing column": lambda c: c.pop("filename"),
    "a task id in history that is a number": lambda c: c["history_task_ids"][0].append(7),
}


@pytest.mark.parametrize("case", sorted(NONSENSE))
def test_an_index_with_a_nonsensical_value_is_rebuilt(case: str, tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    store.save(completed(1))
    store.save(completed(2))
    store.scan()
    doc = json.loads((tmp_path / INDEX_NAME).read_bytes())
    NONSENSE[case](doc["columns"])
    (tmp_path / INDEX_NAME).write_text(json.dumps(doc), encoding="utf-8")
    report = TaskStore(tmp_path).scan()
    assert report.files_read == 2 and report.problems == []
    assert [t.status for t in report.tasks] == [S.COMPLETED, S.COMPLETED]
    assert TaskStore(tmp_path).scan().files_read == 0  # rebuilt


def test_the_index_round_trips(tmp_path: Path) -> None:
    """What dump_index writes, load_index reads back unchanged (a lone surrogate too)."""
    store = TaskStore(tmp_path)
    paths = [store.save(r) for r in (completed(1), failed(2, message="a\nb \ud800"))]
    store.scan()
    entries = load_index((tmp_path / INDEX_NAME).read_bytes(), tmp_path)
    assert sorted(entries) == sorted(p.name for p in paths)
    assert load_index(dump_index(entries), tmp_path) == entries


def test_deleting_the_index_changes_nothing_but_speed(tmp_path: Path) -> None:
    fill(tmp_path)
    store = TaskStore(tmp_path)
    before = store.scan()
    for scanner in (store, TaskStore(tmp_path)):
        (tmp_path / INDEX_NAME).unlink()
        after = scanner.scan()
        assert after.files_read == 4
        assert sorted(after.tasks) == sorted(before.tasks)
        assert after.records == before.records
        assert (tmp_path / INDEX_NAME).exists()  # written again


def test_an_index_that_cannot_be_written_costs_only_reads(tmp_path: Path) -> None:
    fill(tmp_path)
    (tmp_path / INDEX_NAME).mkdir()  # something in the way
    store = TaskStore(tmp_path)
    for _ in range(2):
        report = store.scan()
        assert report.files_read == 4 and len(report.tasks) == 4 and report.problems == []


def test_a_copied_folder_does_not_trust_the_old_index(tmp_path: Path) -> None:
    """`cp -a` keeps names, sizes and mtimes, but not inodes or ctimes."""
    fill(tmp_path / "a")
    TaskStore(tmp_path / "a").scan()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b" / INDEX_NAME).exists()
    assert TaskStore(tmp_path / "b").scan().files_read == 4


# -- quarantine, duplicates and legacy files through scan -------------------------------


def later() -> float:
    """A clock a minute ahead: files written just now count as settled (a record changed
    in the last few seconds is left alone, as another program may be writing it)."""
    return time.time() + 60


def test_scan_quarantines_an_unreadable_file_once(tmp_path: Path) -> None:
    store = TaskStore(tmp_path, clock=later)
    store.save(completed(1))
    (tmp_path / "7392.json").write_text('{"task_":', encoding="utf-8")
    report = store.scan()
    (problem,) = report.problems
    assert "not valid JSON" in str(problem) and problem.moved_to is not None
    assert (tmp_path / ".quarantine" / "7392.json").exists()
    assert len(report.tasks) == 1
    assert store.scan().problems == []


def test_a_cached_record_that_turns_unreadable_is_quarantined(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    path = store.save(completed(1))
    store.save(completed(2))
    store.scan()
    path.write_bytes(b"\x00garbage")
    report = TaskStore(tmp_path, clock=later).scan()
    (problem,) = report.problems
    assert problem.path == path and (tmp_path / ".quarantine" / path.name).exists()
    assert [t.filename for t in report.tasks] == ["002.png"]
    assert index_names(tmp_path) == {"730002.json"}


def test_a_pending_copy_left_beside_a_cached_finished_record_is_removed(
    tmp_path: Path,
) -> None:
    """A crash between writing `<task_id>.json` and removing `pending-*.json`."""
    store = TaskStore(tmp_path)
    done = completed(1)
    store.save(done)
    store.scan()  # the finished record is now served from the index
    stale = tmp_path / f"pending-{done.local_id}.json"
    stale.write_text(record_to_json(record(1)), encoding="utf-8")
    report = TaskStore(tmp_path).scan()
    assert report.removed_duplicates == [stale] and report.problems == []
    assert [t.status for t in report.tasks] == [S.COMPLETED] and report.records == []
    assert not stale.exists()


def test_a_retried_copy_wins_over_its_cached_failed_file(tmp_path: Path) -> None:
    """A crash during retry: the pending copy (longer history) replaces the failed file."""
    store = TaskStore(tmp_path)
    gone = failed(1)
    store.save(gone)
    store.scan()
    again = retry_record(gone, now=400.0)
    (tmp_path / f"pending-{again.local_id}.json").write_text(
        record_to_json(again), encoding="utf-8"
    )
    report = TaskStore(tmp_path).scan()
    assert report.removed_duplicates == [tmp_path / "730001.json"]
    assert report.records == [again]
    assert [t.status for t in report.tasks] == [S.PENDING]


def test_an_unexplained_copy_of_a_cached_record_is_set_aside(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    store.save(completed(1))
    store.scan()
    shutil.copy(tmp_path / "730001.json", tmp_path / "backup.json")
    report = TaskStore(tmp_path).scan()
    (problem,) = report.problems
    assert "another copy" in str(problem)
    assert len(report.tasks) == 1
    assert (tmp_path / ".quarantine" / problem.path.name).exists()


def test_a_legacy_txt_record_is_cached_and_kept_as_txt(tmp_path: Path) -> None:
    guide = {
        "task_id": "7392616336519610409",
        "output_path": "frames/frame_01.png",
        "filename": "frame_01.png",
        "prompt": "少女站在樱花树下",
        "full_prompt": "少女站在樱花树下，水彩风格",
        "submit_time": 1234567890.123,
        "status": "completed",
    }
    legacy = tmp_path / "7392616336519610409.txt"
    legacy.write_text(json.dumps(guide, ensure_ascii=False), encoding="utf-8")
    TaskStore(tmp_path).scan()
    store = TaskStore(tmp_path)
    report = store.scan()
    assert report.files_read == 0
    (summary,) = report.tasks
    assert summary.name == legacy.name and summary.status is S.COMPLETED
    assert summary.created_at == 1234567890.123
    (full,) = store.load_all().records
    assert store.path_for(full) == legacy


# -- get --------------------------------------------------------------------------------


def test_get_reads_only_the_record_it_returns(tmp_path: Path, opened: list[str]) -> None:
    store = TaskStore(tmp_path)
    for n in range(1, 6):
        store.save(completed(n))
    gone = failed(6)
    store.save(gone)
    store.save(retry_record(gone, now=400.0))  # its old task id lives on in history
    TaskStore(tmp_path).scan()

    opened.clear()
    fresh = TaskStore(tmp_path)
    pending = f"pending-{gone.local_id}.json"
    assert fresh.get("730003") == completed(3)
    assert opened == [pending, "730003.json"]  # the scan reads the unfinished record only
    opened.clear()
    again = fresh.get("730006")  # an earlier task id
    assert again.status is S.PENDING and again.history[0].task_id == "730006"
    assert opened == [pending, pending]


def test_get_follows_a_record_that_moved_after_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TaskStore(tmp_path)
    gone = failed(1)
    store.save(gone)
    real_scan = TaskStore.scan

    def scan_then_retry_elsewhere(self: TaskStore) -> Any:
        report = real_scan(self)
        TaskStore(tmp_path).save(retry_record(gone, now=400.0))
        return report

    monkeypatch.setattr(TaskStore, "scan", scan_then_retry_elsewhere)
    found = store.get(gone.local_id)
    assert found.status is S.PENDING and found.local_id == gone.local_id
