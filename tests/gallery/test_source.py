"""Where the gallery reads: every machine's records of a shared store (in full, kept current
by seq, removals noticed), a frame whose image is on another machine, and what a folder
keeps (its fix command, its files beside it).

Before this, the gallery, the sheet, the manifest and `serve` read only a folder: on a
shared store they found nothing, and `list --json` showed only this machine's frames.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from asyncimg.gallery.frames import frames_of
from asyncimg.gallery.manifest import manifest_line
from asyncimg.gallery.page import file_linker, render_page
from asyncimg.gallery.source import Chapter, SharedFeed, every_record, feed
from asyncimg.gallery.thumbs import Thumbnails
from asyncimg.store.pg.store import PgStore
from asyncimg.store.record import ResultFile, TaskRecord
from asyncimg.store.states import TaskState, accept, transition
from asyncimg.store.store import TaskStore


def record(out: Path, prompt: str, **extra: Any) -> TaskRecord:
    now = time.time()
    data: dict[str, Any] = {
        "output_path": str(out),
        "filename": out.name,
        "prompt": prompt,
        "full_prompt": prompt,
        "style": "manga",
        "character_images": ["chars/lin.png"],
        "status": TaskState.PENDING,
        "created_at": now,
        "updated_at": now,
    }
    data.update(extra)
    return TaskRecord.model_validate(data)


def completed(r: TaskRecord, task_id: str) -> TaskRecord:
    sent = accept(r, task_id, now=r.created_at + 1)
    done = ResultFile(path=r.output_path, sha256="0" * 64, bytes=1, width=8, height=8)
    return transition(sent, TaskState.COMPLETED, now=r.created_at + 2, results=[done])


@pytest.fixture
def stores(pg_url: str, tmp_path: Path) -> Iterator[Any]:
    opened: list[PgStore] = []

    def make(machine: str) -> PgStore:
        store = PgStore(pg_url, machine=machine, account="acct", state_dir=tmp_path / "state")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_every_record_of_a_shared_store_is_every_machines_in_full(
    stores: Any, tmp_path: Path
) -> None:
    a, b = stores("render-a"), stores("render-b")
    a.save(completed(record(tmp_path / "a" / "1.png", "雨夜的小巷"), "t-a1"))
    b.save(record(tmp_path / "b" / "1.png", "樱花树下"))
    viewer = stores("render-a")
    assert [r.prompt for r in viewer.load_all().records] == ["雨夜的小巷"]  # its own work
    everything = every_record(viewer).records
    assert sorted(r.prompt for r in everything) == ["樱花树下", "雨夜的小巷"]
    assert all(r.style == "manga" and r.character_images == ["chars/lin.png"] for r in everything)


def test_the_shared_feed_follows_changes_and_removals_of_every_machine(
    stores: Any, tmp_path: Path
) -> None:
    a, b = stores("render-a"), stores("render-b")
    one = record(tmp_path / "a" / "1.png", "one")
    two = record(tmp_path / "b" / "2.png", "two")
    a.save(one)
    b.save(two)
    live = feed(stores("viewer"))
    assert isinstance(live, SharedFeed)
    first = live.poll()
    assert first is not None and sorted(r.prompt for r in first) == ["one", "two"]
    assert live.poll() is None  # nothing written since
    current = b.reload(two)
    assert current is not None
    b.save(accept(current, "t-2", now=time.time()))  # another machine's frame moves on
    after = live.poll()
    assert after is not None
    assert {r.prompt: r.status for r in after} == {
        "one": TaskState.PENDING,
        "two": TaskState.SUBMITTED,
    }
    a.delete(one)  # `clean` or `migrate` leaves no seq behind: the count tells
    gone = live.poll()
    assert gone is not None and [r.prompt for r in gone] == ["two"]
    assert live.poll() is None


def test_a_completed_frame_of_another_machine_names_it_instead_of_a_broken_image(
    tmp_path: Path,
) -> None:
    here = tmp_path / "here.png"
    Image.new("RGB", (32, 32), (10, 200, 10)).save(here)
    on_nas = tmp_path / "nas.png"
    Image.new("RGB", (32, 32), (10, 10, 200)).save(on_nas)
    mine = completed(record(here, "mine", machine="render-a"), "1")
    theirs = completed(record(tmp_path / "not-here.png", "theirs", machine="render-b"), "2")
    shared = completed(record(on_nas, "shared", machine="render-b"), "3")
    frames = frames_of([mine, theirs, shared], "--store x", here="render-a")
    assert [f.elsewhere for f in frames] == [None, "render-b", "render-b"]
    page = render_page(frames, Thumbnails(), title="t", link=file_linker(tmp_path / "g.html"))
    # Only the missing one is a placeholder; the other machine's file that is here (a
    # shared folder) shows as itself, and nothing links to a file that is not here.
    assert page.count('<div class="placeholder">image on machine render-b</div>') == 1
    assert page.count('class="thumb"') == 2
    assert re.findall(r'href="([^"]*)"', page) == ["here.png", "nas.png"]
    assert manifest_line(frames[1])["machine"] == "render-b"
    assert "machine" not in manifest_line(frames_of([completed(record(here, "x"), "4")], "")[0])


def test_the_same_path_on_two_machines_is_two_frames(tmp_path: Path) -> None:
    out = tmp_path / "frames" / "001.png"
    a = record(out, "chapter 1", machine="render-a")
    b = record(out, "chapter 9", machine="render-b")
    assert sorted(f.record.prompt for f in frames_of([a, b], "", here="render-a")) == [
        "chapter 1",
        "chapter 9",
    ]


def test_a_store_is_named_by_its_url_without_a_password(stores: Any) -> None:
    store = stores("render-a")
    store.url = store.url.replace("root@", "root:hunter2@")  # only how it is shown
    chapter = Chapter.of(store)
    assert "hunter2" not in chapter.options + chapter.title + chapter.name
    assert chapter.options.startswith("--store 'postgresql://root@")
    assert chapter.folder is None and chapter.here == "render-a"
    assert chapter.default_target("gallery.html") == Path("gallery.html")  # current folder
    assert chapter.manifest_path() == Path("manifest.jsonl")


def test_a_folder_keeps_its_place_and_its_fix_command(tmp_path: Path) -> None:
    chapter = Chapter.of(TaskStore(tmp_path / "my tasks", read_only=True))
    assert chapter.options == f"--tasks-dir '{tmp_path / 'my tasks'}'"
    assert chapter.default_target("gallery.html") == tmp_path / "gallery.html"
    assert chapter.manifest_path() == tmp_path / "my tasks" / "manifest.jsonl"
    assert chapter.frames() == []  # no folder yet: nothing, and nothing created
    assert not (tmp_path / "my tasks").exists()
