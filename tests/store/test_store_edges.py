"""The tasks folder is the user's too: only our own files are touched, nothing is created by
looking, an unreadable record another program may be writing is left alone, temp files of
killed writers are removed, and long output names save."""

from __future__ import annotations

import io
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from asyncimg.fileio import is_temp_name, remove_orphan_temps, temp_name, writer_alive
from asyncimg.lifecycle.download import remove_output_leftovers, save_image
from asyncimg.store import TaskRecord, TaskStore
from asyncimg.store.states import TaskState
from asyncimg.store.store import RECENT_S, TasksFolderError

USER_FILES = {
    "package.json": b'{"name": "novel", "version": "1.0.0"}\n',
    "requirements.txt": b"aiohttp>=3.9\npillow\n",
    "notes.txt": "第一章的分镜笔记\n".encode(),
    "draft.json": b"{ not json",
}


def record(n: int = 1, **changes: object) -> TaskRecord:
    fields: dict[str, object] = {
        "task_id": f"73920000{n:04d}",
        "local_id": f"{n:032x}",
        "output_path": f"out/{n:03d}.png",
        "filename": f"{n:03d}.png",
        "prompt": f"frame {n}",
        "full_prompt": f"frame {n}",
        "status": TaskState.SUBMITTED,
        "submit_time": 1.0,
        "created_at": 1.0,
        "updated_at": 1.0,
    }
    fields.update(changes)
    return TaskRecord.model_validate(fields)


def later() -> float:
    return time.time() + 60


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- own only what is ours ------------------------------------------------------------------


@pytest.mark.parametrize("read_only", [False, True], ids=["check", "list"])
def test_the_users_files_in_the_folder_are_never_moved_or_reported(
    tmp_path: Path, read_only: bool
) -> None:
    for name, data in USER_FILES.items():
        (tmp_path / name).write_bytes(data)
        os.utime(tmp_path / name, (1.0, 1.0))  # old: not being written
    tmp_path.chmod(0o755)
    TaskStore(tmp_path).save(record(1))
    store = TaskStore(tmp_path, clock=later, read_only=read_only)
    for report in (store.load_all(), store.scan()):
        assert report.problems == []
    assert [t.task_id for t in store.scan().tasks] == ["739200000001"]
    for name, data in USER_FILES.items():
        assert (tmp_path / name).read_bytes() == data
    assert not (tmp_path / ".quarantine").exists()
    assert mode(tmp_path) == 0o755


def test_a_guide_record_under_any_name_is_still_read(tmp_path: Path) -> None:
    guide = record(2).model_dump(mode="json")
    (tmp_path / "task_id_1.txt").write_text(json.dumps(guide), encoding="utf-8")
    assert [r.task_id for r in TaskStore(tmp_path).load_all().records] == ["739200000002"]


def test_looking_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "async_taks"  # a mistyped --tasks-dir
    for read_only in (True, False):
        store = TaskStore(missing, read_only=read_only)
        assert store.scan().tasks == [] and store.load_all().records == []
    assert not missing.exists()


def test_a_read_only_store_reports_an_unreadable_record_and_writes_nothing(
    tmp_path: Path,
) -> None:
    TaskStore(tmp_path).save(record(1, status=TaskState.COMPLETED, completed_time=2.0))
    (tmp_path / "7392.json").write_text("{", encoding="utf-8")
    os.utime(tmp_path / "7392.json", (1.0, 1.0))
    before = sorted(p.name for p in tmp_path.iterdir())
    report = TaskStore(tmp_path, read_only=True).scan()
    (problem,) = report.problems
    assert "7392.json: not valid JSON" in str(problem) and problem.moved_to is None
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no .index, no .quarantine


def test_a_record_changed_just_now_is_left_alone_then_set_aside_once_settled(
    tmp_path: Path,
) -> None:
    """Another program (the guide's scripts, an editor) may be writing it in place."""
    store = TaskStore(tmp_path)
    store.save(record(1))
    half = tmp_path / "739200000002.json"
    half.write_text('{"task_id": "739200000002", "status": ', encoding="utf-8")
    now = time.time()
    clock = [now]
    store = TaskStore(tmp_path, clock=lambda: clock[0])
    (problem,) = store.load_all().problems
    assert f"changed in the last {RECENT_S:g} s, left alone" in str(problem)
    assert half.exists() and not (tmp_path / ".quarantine").exists()
    assert store.load_all().problems == []  # said once per store
    clock[0] = now + RECENT_S + 1
    (problem,) = store.load_all().problems
    assert problem.moved_to is not None and not half.exists()
    assert (tmp_path / ".quarantine" / half.name).is_file()


def test_an_existing_folder_keeps_its_mode_and_a_new_one_is_private(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o750)
    mine.chmod(0o750)
    TaskStore(mine).save(record(1))
    assert mode(mine) == 0o750
    new = tmp_path / "new"
    TaskStore(new).save(record(1))
    assert mode(new) == 0o700


def test_a_file_where_the_folder_should_be_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "async_tasks").write_text("not a folder", encoding="utf-8")
    with pytest.raises(TasksFolderError) as caught:
        TaskStore(tmp_path / "async_tasks")
    text = str(caught.value)
    assert "\n" not in text
    assert f"tasks folder {tmp_path / 'async_tasks'}: is a file, not a folder" in text
    assert "--tasks-dir" in text


# -- no leftovers ---------------------------------------------------------------------------


def test_temp_names_are_short_and_name_their_writer() -> None:
    name = temp_name(".part")
    assert is_temp_name(name) and len(name) < 50
    assert f"-{os.getpid()}-" in name
    assert writer_alive(name)


def test_a_pass_removes_temp_files_of_dead_writers_only(
    tmp_path: Path, dead_writer_temp: Callable[[Path, str], Path]
) -> None:
    dead = dead_writer_temp(tmp_path, ".tmp")
    live = tmp_path / temp_name(".tmp")
    live.write_bytes(b"being written")
    other = tmp_path / ".editor.swp.tmp"
    other.write_bytes(b"not ours")
    TaskStore(tmp_path).save(record(1))
    TaskStore(tmp_path).scan()
    assert not dead.exists() and live.exists() and other.exists()


def test_a_read_only_scan_removes_nothing(
    tmp_path: Path, dead_writer_temp: Callable[[Path, str], Path]
) -> None:
    TaskStore(tmp_path).save(record(1))
    dead = dead_writer_temp(tmp_path, ".tmp")
    TaskStore(tmp_path, read_only=True).scan()
    assert dead.exists()


def test_temp_files_beside_the_images_of_unfinished_records_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dead_writer_temp: Callable[[Path, str], Path]
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    dead = dead_writer_temp(out, ".part")
    old_format = out / ".001.png.0badcafe.part"  # the name before temp names had a writer
    old_format.write_bytes(b"half")
    os.utime(old_format, (1.0, 1.0))
    someone_elses = out / ".photo.jpg.0badcafe.part"
    someone_elses.write_bytes(b"half")
    os.utime(someone_elses, (1.0, 1.0))
    assert remove_output_leftovers([record(1, working_dir=str(tmp_path))]) == 2
    assert not dead.exists() and not old_format.exists() and someone_elses.exists()
    assert remove_orphan_temps(out) == 0


@pytest.mark.parametrize("size", [240, 250, 252])
def test_a_long_legal_output_name_saves(tmp_path: Path, size: int) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buf, "PNG")
    name = "a" * (size - 4) + ".png"
    saved = save_image(buf.getvalue(), tmp_path / name)
    assert Path(saved.path).is_file()
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_big_data_file_of_the_user_is_not_even_read(tmp_path: Path) -> None:
    TaskStore(tmp_path).save(record(1))
    (tmp_path / "dataset.json").write_bytes(b"[" + b"0," * (1024 * 1024) + b"0]")
    (tmp_path / "small.json").write_bytes(b"[1]")
    report = TaskStore(tmp_path).scan()
    assert report.files_read == 2 and report.problems == []  # the record and small.json
    assert (tmp_path / "dataset.json").exists()
