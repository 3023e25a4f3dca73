"""The on-disk store: private files, atomic writes, renames, legacy .txt, quarantine."""

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
    AmbiguousTaskKey,
    ErrorInfo,
    TaskNotFound,
    TaskRecord,
    TaskState,
    TaskStore,
    record_to_json,
    retry_record,
    transition,
)

GUIDE_RECORD = {
    "task_id": "7392616336519610409",
    "output_path": "frames/frame_01.png",
    "filename": "frame_01.png",
    "prompt": "少女站在樱花树下",
    "full_prompt": "少女站在樱花树下，水彩风格",
    "character_images": ["chars/alice.png"],
    "style": "watercolor",
    "submit_time": 1234567890.123,
    "status": "submitted",
}


def pending(n: int = 1, **extra: Any) -> TaskRecord:
    data: dict[str, Any] = {
        "output_path": f"frames/frame_{n:02d}.png",
        "filename": f"frame_{n:02d}.png",
        "prompt": f"frame {n}",
        "full_prompt": f"frame {n}, watercolour",
        "status": "pending",
        "created_at": 100.0 + n,
        "updated_at": 100.0 + n,
        "params": {"width": 2048, "height": 2048},
    }
    data.update(extra)
    return TaskRecord.model_validate(data)


def submitted(record: TaskRecord, task_id: str, now: float = 200.0) -> TaskRecord:
    return transition(
        record, TaskState.SUBMITTED, now=now, task_id=task_id, submit_time=now, attempts=1
    )


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def settled(path: Path) -> None:
    """Make a file look written a minute ago: a record changed in the last few seconds
    is left alone (another program may be writing it)."""
    past = time.time() - 60
    os.utime(path, (past, past))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- permissions ----------------------------------------------------------------------


def test_new_directory_is_0700_and_files_0600(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # the worst case: nothing masked
    try:
        store = TaskStore(tmp_path / "a" / "async_tasks")
        path = store.save(pending())
    finally:
        os.umask(old_umask)
    assert mode(store.root) == 0o700
    assert mode(path) == 0o600


def test_an_existing_folder_keeps_its_mode(tmp_path: Path) -> None:
    """It may be the user's own folder (`--tasks-dir .`): only a folder we create is 0700."""
    root = tmp_path / "async_tasks"
    root.mkdir(mode=0o755)
    root.chmod(0o755)
    store = TaskStore(root)
    path = store.save(pending())
    store.load_all()
    assert mode(root) == 0o755
    assert mode(path) == 0o600


def test_rewriting_a_world_readable_legacy_file_makes_it_0600(tmp_path: Path) -> None:
    root = tmp_path / "async_tasks"
    root.mkdir()
    legacy = root / "task_id_1.txt"
    legacy.write_text(json.dumps(GUIDE_RECORD), encoding="utf-8")
    legacy.chmod(0o644)
    store = TaskStore(root)
    (record,) = store.load_all().records
    store.save(transition(record, TaskState.PROCESSING, now=2e9))
    assert mode(legacy) == 0o600


# -- atomic writes --------------------------------------------------------------------


def test_saves_leave_no_temp_files(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    record = pending()
    for i in range(5):
        record = transition(record, TaskState.PENDING, now=300.0 + i)
        store.save(record)
    assert names(tmp_path) == [f"pending-{record.local_id}.json"]


def test_crash_during_replace_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TaskStore(tmp_path)
    record = submitted(pending(), "111")
    path = store.save(record)
    before = path.read_bytes()

    def boom(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space"):
        store.save(transition(record, TaskState.PROCESSING, now=500.0))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert names(tmp_path) == ["111.json"]
    (loaded,) = TaskStore(tmp_path).load_all().records
    assert loaded.status is TaskState.SUBMITTED


# -- file names and renames -----------------------------------------------------------


def test_pending_then_task_id_leaves_exactly_one_file(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    record = pending()
    store.save(record)
    assert names(tmp_path) == [f"pending-{record.local_id}.json"]
    path = store.save(submitted(record, "7392616336519610409"))
    assert names(tmp_path) == ["7392616336519610409.json"]
    assert path == tmp_path / "7392616336519610409.json"
    assert json.loads(path.read_text(encoding="utf-8"))["status"] == "submitted"


def test_rename_works_from_a_second_store_instance(tmp_path: Path) -> None:
    record = pending()
    TaskStore(tmp_path).save(record)
    TaskStore(tmp_path).save(submitted(record, "555"))  # does not know the pending file
    assert names(tmp_path) == ["555.json"]


def test_crash_between_write_and_delete_is_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TaskStore(tmp_path)
    record = pending()
    store.save(record)

    def crash(self: Path, missing_ok: bool = False) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.save(submitted(record, "888", now=record.updated_at))  # same timestamp
    monkeypatch.undo()
    assert names(tmp_path) == ["888.json", f"pending-{record.local_id}.json"]

    report = TaskStore(tmp_path).load_all()
    assert [r.task_id for r in report.records] == ["888"]
    assert report.problems == []
    assert report.removed_duplicates == [tmp_path / f"pending-{record.local_id}.json"]
    assert names(tmp_path) == ["888.json"]


def test_crash_during_retry_keeps_the_retried_copy(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    failed = transition(submitted(pending(), "901"), TaskState.FAILED, now=300.0)
    store.save(failed)
    again = retry_record(failed, now=300.0)  # same clock reading: history decides
    (tmp_path / f"pending-{again.local_id}.json").write_text(
        record_to_json(again), encoding="utf-8"
    )
    report = TaskStore(tmp_path).load_all()
    (kept,) = report.records
    assert kept.status is TaskState.PENDING and kept.history[0].task_id == "901"
    assert names(tmp_path) == [f"pending-{again.local_id}.json"]


def test_retry_moves_the_file_back_to_pending(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    failed = transition(submitted(pending(), "902"), TaskState.FAILED, now=300.0)
    store.save(failed)
    store.save(retry_record(failed, now=301.0))
    assert names(tmp_path) == [f"pending-{failed.local_id}.json"]


def test_an_unexplained_second_copy_is_set_aside_not_deleted(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    store.save(submitted(pending(), "321"))
    shutil.copy(tmp_path / "321.json", tmp_path / "backup.json")
    report = TaskStore(tmp_path).load_all()
    assert len(report.records) == 1
    (problem,) = report.problems
    assert "another copy" in str(problem)
    assert (tmp_path / ".quarantine" / problem.path.name).exists()


def test_odd_task_ids_make_safe_file_names(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    path = store.save(submitted(pending(), "../../etc/passwd"))
    assert path.parent == tmp_path
    assert not path.name.startswith(".")
    (loaded,) = TaskStore(tmp_path).load_all().records
    assert loaded.task_id == "../../etc/passwd"


# -- legacy files, unknown fields, Unicode --------------------------------------------


def test_guide_txt_file_loads_and_is_written_back_to_txt(tmp_path: Path) -> None:
    legacy = tmp_path / "task_id_1.txt"
    legacy.write_text(json.dumps(GUIDE_RECORD, ensure_ascii=False, indent=2), encoding="utf-8")
    store = TaskStore(tmp_path)
    report = store.load_all()
    assert report.problems == []
    (record,) = report.records
    assert record.task_id == "7392616336519610409" and record.prompt == "少女站在樱花树下"
    assert store.save(transition(record, TaskState.PROCESSING, now=2e9)) == legacy
    assert names(tmp_path) == ["task_id_1.txt"]
    on_disk = json.loads(legacy.read_text(encoding="utf-8"))
    assert on_disk["status"] == "processing" and on_disk["local_id"] == record.local_id
    # A second store (another process) that never loaded it also keeps the .txt file
    # when the name is the task_id.
    named = tmp_path / "7392616336519610409.txt"
    legacy.rename(named)
    TaskStore(tmp_path).save(transition(record, TaskState.COMPLETED, now=2e9 + 1))
    assert names(tmp_path) == ["7392616336519610409.txt"]


def test_unknown_fields_survive_load_and_save(tmp_path: Path) -> None:
    data = GUIDE_RECORD | {"seed": 7, "gen_meta": {"model": "v4", "tags": ["a", "b"]}}
    (tmp_path / "7392616336519610409.json").write_text(json.dumps(data), encoding="utf-8")
    store = TaskStore(tmp_path)
    (record,) = store.load_all().records
    path = store.save(transition(record, TaskState.PROCESSING, now=2e9))
    on_disk = json.loads(path.read_text(encoding="utf-8"))
    assert on_disk["seed"] == 7 and on_disk["gen_meta"] == data["gen_meta"]


def test_chinese_and_emoji_round_trip_byte_identical(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    record = pending(prompt='夜空下的城市 🌃✨ «quoted» "q" \\ 𝄞', style="赛博朋克")
    first = store.save(record).read_bytes()
    assert "夜空下的城市 🌃✨".encode() in first
    second_store = TaskStore(tmp_path)
    (loaded,) = second_store.load_all().records
    assert loaded == record
    assert second_store.save(loaded).read_bytes() == first


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "1.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(GUIDE_RECORD).encode())
    report = TaskStore(tmp_path).load_all()
    assert report.problems == [] and len(report.records) == 1


# -- quarantine -----------------------------------------------------------------------

BAD_FILES: dict[str, tuple[bytes, str]] = {
    "truncated": (json.dumps(GUIDE_RECORD).encode()[:40], "not valid JSON (line 1, column"),
    "not_utf8": (b'{"prompt": "\xff\xfe caf\xe9"}', "not UTF-8"),
    "array": (b'[{"task_id": "1"}]', "not a JSON object (found an array)"),
    "missing_field": (
        json.dumps({k: v for k, v in GUIDE_RECORD.items() if k != "prompt"}).encode(),
        "prompt: Field required",
    ),
    "wrong_type": (
        json.dumps(GUIDE_RECORD | {"character_images": "alice.png"}).encode(),
        "character_images: Input should be a valid list",
    ),
    "empty": (b"", "empty file"),
    "nan": (json.dumps(GUIDE_RECORD | {"submit_time": float("nan")}).encode(), "NaN"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_quarantined_and_others_load(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = TaskStore("async_tasks")
    good = [store.save(submitted(pending(n), f"{n}00")) for n in (1, 2)]
    content, expected = BAD_FILES[case]
    (tmp_path / "async_tasks" / "7392.json").write_bytes(content)
    settled(tmp_path / "async_tasks" / "7392.json")

    report = TaskStore("async_tasks").load_all()

    assert sorted(r.task_id or "" for r in report.records) == ["100", "200"]
    (problem,) = report.problems
    line = str(problem)
    assert "\n" not in line
    assert line.startswith("async_tasks/7392.json: ")
    assert expected in line
    assert line.endswith("; moved to async_tasks/.quarantine/")
    quarantine = tmp_path / "async_tasks" / ".quarantine"
    assert (quarantine / "7392.json").read_bytes() == content
    reason = (quarantine / "7392.json.reason.txt").read_text(encoding="utf-8")
    assert "async_tasks/7392.json" in reason and expected in reason
    assert mode(quarantine) == 0o700 and mode(quarantine / "7392.json.reason.txt") == 0o600
    assert all(p.exists() for p in good)
    assert not (tmp_path / "async_tasks" / "7392.json").exists()
    assert TaskStore("async_tasks").load_all().problems == []  # reported once


def test_truncated_json_message_is_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = TaskStore("async_tasks")
    store.root.mkdir()
    (store.root / "7392.json").write_text('{"task_":', encoding="utf-8")
    settled(store.root / "7392.json")
    (problem,) = store.load_all().problems
    assert str(problem) == (
        "async_tasks/7392.json: not valid JSON (line 1, column 10); "
        "moved to async_tasks/.quarantine/"
    )


def test_quarantine_never_overwrites(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    (tmp_path / "1.json").write_text("[", encoding="utf-8")
    settled(tmp_path / "1.json")
    store.load_all()
    (tmp_path / "1.json").write_text("{", encoding="utf-8")
    settled(tmp_path / "1.json")
    store.load_all()
    assert sorted(names(tmp_path / ".quarantine")) == [
        "1.1.json",
        "1.1.json.reason.txt",
        "1.json",
        "1.json.reason.txt",
    ]


def test_load_skips_dirs_dotfiles_temps_and_other_names(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    store.save(pending())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.json").write_text("[", encoding="utf-8")
    (tmp_path / ".hidden.json").write_text("[", encoding="utf-8")
    (tmp_path / ".1.json.abcd.tmp").write_text("{", encoding="utf-8")
    (tmp_path / "notes.md").write_text("hello", encoding="utf-8")
    report = store.load_all()
    assert len(report.records) == 1 and report.problems == []
    assert (tmp_path / "sub" / "bad.json").exists() and (tmp_path / ".hidden.json").exists()


def test_old_format_temp_files_are_cleaned_after_an_hour(tmp_path: Path) -> None:
    """Temp names from before they carried their writer: removed by age alone."""
    store = TaskStore(tmp_path)
    old = tmp_path / ".1.json.0badcafe.tmp"
    new = tmp_path / ".2.json.1badcafe.tmp"
    old.write_text("{", encoding="utf-8")
    new.write_text("{", encoding="utf-8")
    os.utime(old, (1.0, 1.0))
    store.load_all()
    assert not old.exists() and new.exists()


# -- get, reload, delete, archive -----------------------------------------------------


def test_get_by_id_local_id_and_prefix(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    a = submitted(pending(1, local_id="aaaa1111" + "0" * 24), "7392000011")
    b = submitted(pending(2, local_id="aaaa2222" + "0" * 24), "7392000002")
    c = pending(3, local_id="bbbb3333" + "0" * 24)
    for r in (a, b, c):
        store.save(r)
    assert store.get("7392000011") == a
    assert store.get(c.local_id) == c
    assert store.get("bbbb") == c
    assert store.get("7392000002"[:-1]) == b
    assert store.get("aaaa1") == a
    with pytest.raises(AmbiguousTaskKey, match="matches 2 tasks"):
        store.get("7392")
    with pytest.raises(AmbiguousTaskKey):
        store.get("aaaa")
    with pytest.raises(TaskNotFound):
        store.get("nope")
    with pytest.raises(TaskNotFound):
        store.get("  ")


def test_get_refuses_a_task_id_held_by_two_records_and_names_both_files(tmp_path: Path) -> None:
    """The API gave one id to two of our tasks (both records are kept apart): `get` took
    the first file silently, so `retry`/`cancel`/`show` could act on the wrong frame."""
    store = TaskStore(tmp_path)
    one = submitted(pending(1, local_id="aaaa1111" + "0" * 24), "7392000011")
    two = submitted(pending(2, local_id="bbbb2222" + "0" * 24), "7392000011")
    store.save(one)
    store.save(two)
    assert names(tmp_path) == ["7392000011.bbbb22220000.json", "7392000011.json"]
    with pytest.raises(AmbiguousTaskKey) as refused:
        TaskStore(tmp_path).get("7392000011")
    line = str(refused.value)
    assert "\n" not in line
    assert "7392000011.json" in line and "7392000011.bbbb22220000.json" in line
    assert one.output_path in line and two.output_path in line
    assert "aaaa11110000" in line and "bbbb22220000" in line  # what to give instead
    assert TaskStore(tmp_path).get("bbbb2222") == two  # the local id picks one


def test_get_by_an_earlier_task_id(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    failed = transition(submitted(pending(), "old-1"), TaskState.FAILED, now=300.0)
    again = submitted(retry_record(failed, now=301.0), "new-2", now=302.0)
    store.save(again)
    assert store.get("old-1") == again


def test_reload_follows_a_record_saved_elsewhere(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    record = pending()
    store.save(record)
    TaskStore(tmp_path).save(submitted(record, "4040"))
    latest = store.reload(record)
    assert latest is not None and latest.task_id == "4040"
    TaskStore(tmp_path).delete(latest)
    assert store.reload(record) is None


def test_delete_removes_the_file(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    keep = store.save(pending(1))
    record = submitted(pending(2), "77")
    store.save(record)
    store.delete(record)
    assert names(tmp_path) == [keep.name]


def test_archive_moves_the_file_privately(tmp_path: Path) -> None:
    store = TaskStore(tmp_path / "tasks")
    record = transition(submitted(pending(), "99"), TaskState.COMPLETED, now=400.0)
    content = store.save(record).read_bytes()
    dest = store.archive(record, tmp_path / "archive" / "2024")
    assert dest == tmp_path / "archive" / "2024" / "99.json"
    assert dest.read_bytes() == content
    assert mode(dest.parent) == 0o700 and mode(dest) == 0o600
    assert names(tmp_path / "tasks") == []
    # Archiving a same-named file again never overwrites the first.
    store.save(record)
    second = store.archive(record, tmp_path / "archive" / "2024")
    assert second.name == "99.1.json" and dest.read_bytes() == content


def test_archive_keeps_a_legacy_name(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "task_id_1.txt").write_text(json.dumps(GUIDE_RECORD), encoding="utf-8")
    store = TaskStore(tmp_path / "tasks")
    (record,) = store.load_all().records
    dest = store.archive(record, tmp_path / "archive")
    assert dest.name == "task_id_1.txt"
    assert names(tmp_path / "tasks") == []


def test_a_record_with_an_error_round_trips_through_the_store(tmp_path: Path) -> None:
    store = TaskStore(tmp_path)
    err = ErrorInfo(code=50430, kind="ConcurrencyLimited", message="并发超限", time=5.0)
    record = transition(pending(), TaskState.PENDING, now=500.0, last_error=err)
    store.save(record)
    (loaded,) = TaskStore(tmp_path).load_all().records
    assert loaded == record and loaded.last_error == err
