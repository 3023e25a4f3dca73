"""The chapter as frames (pure): batch order, one frame per output, ids, the fix command;
the page escapes what records hold; the live page is sent only the cards that changed."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from asyncimg.gallery.frames import fix_command, folder_option, frame_id, frames_of
from asyncimg.gallery.live import LiveGallery
from asyncimg.gallery.page import card_version, file_linker, render_page
from asyncimg.gallery.source import Chapter
from asyncimg.gallery.thumbs import Thumbnails
from asyncimg.lifecycle.config import Config
from asyncimg.lifecycle.submit import TaskRequest, build_record
from asyncimg.lifecycle.validate import Line, check_lines
from asyncimg.protocol.errors import InputRejected, OutputRejected
from asyncimg.store.record import ErrorInfo, ResultFile, TaskRecord, record_to_json
from asyncimg.store.states import TaskState, accept, transition
from asyncimg.store.store import TaskStore


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ASYNCIMG_CONFIG", raising=False)
    return tmp_path


def record(
    out: str,
    *,
    created: float,
    batch: str | None = None,
    line: int | None = None,
    prompt: str = "a fox",
    **request: Any,
) -> TaskRecord:
    req = TaskRequest(prompt=prompt, output_path=out, batch_file=batch, batch_line=line, **request)
    return build_record(req, Config(), now=created)


def completed(r: TaskRecord, task_id: str) -> TaskRecord:
    sent = accept(r, task_id, now=r.created_at + 1)
    done = ResultFile(path=out_path(r), sha256="0" * 64, bytes=1, width=8, height=8)
    return transition(sent, TaskState.COMPLETED, now=r.created_at + 2, results=[done])


def failed(r: TaskRecord, task_id: str, error: Exception) -> TaskRecord:
    assert isinstance(error, InputRejected | OutputRejected)
    sent = accept(r, task_id, now=r.created_at + 1)
    info = ErrorInfo.from_exception(error, r.created_at + 2)
    return transition(sent, TaskState.FAILED, now=r.created_at + 2, last_error=info)


def out_path(r: TaskRecord) -> str:
    return str(r.resolve(r.output_path))


def test_frames_come_in_batch_order_whatever_order_they_were_made_in() -> None:
    records = [
        record("b/2.png", created=5, batch="b.jsonl", line=2),
        record("single.png", created=1),  # a lone `submit` before the batch
        record("b/1.png", created=9, batch="b.jsonl", line=1),  # queued, recorded later
        record("a/1.png", created=20, batch="a.jsonl", line=1),  # a later batch
    ]
    ids = [f.frame_id for f in frames_of(records, "async_tasks")]
    assert ids == ["single.png", "b.jsonl:1", "b.jsonl:2", "a.jsonl:1"]


def test_one_frame_per_output_the_latest_record() -> None:
    old = completed(record("f/1.png", created=1, batch="b.jsonl", line=1), "111")
    new = record("./f/1.png", created=2, batch="b.jsonl", line=1)  # --force beside it
    frames = frames_of([new, old], "async_tasks")
    assert [f.record.local_id for f in frames] == [new.local_id]


def test_frame_id_prefers_the_lines_own_id() -> None:
    assert frame_id(record("x.png", created=1, frame_id="c01-007")) == "c01-007"
    assert frame_id(record("x.png", created=1, batch="ch.jsonl", line=7)) == "ch.jsonl:7"
    assert frame_id(record("out/x.png", created=1)) == "x.png"


def test_the_fix_command_for_each_kind_of_trouble() -> None:
    base = record("f/1.png", created=1, prompt="林晓's 'red' umbrella")
    review = failed(base, "42", OutputRejected("Post Img Risk Not Pass", code=50511))
    assert (
        fix_command(review, folder_option("my tasks")) == "asyncimg retry 42 --tasks-dir 'my tasks'"
    )
    refused = failed(base, "43", InputRejected("Pre Text Risk Not Pass", code=50411))
    command = fix_command(refused, folder_option("async_tasks"))
    assert command == (
        "asyncimg retry 43 --prompt '林晓'\"'\"'s '\"'\"'red'\"'\"' umbrella' "
        "--tasks-dir async_tasks"
    )
    unconfirmed = transition(base, TaskState.UNCONFIRMED, now=3)
    assert (
        fix_command(unconfirmed, "--tasks-dir t")
        == f"asyncimg retry {base.local_id[:8]} --tasks-dir t"
    )
    (frame,) = frames_of([unconfirmed], "t")
    assert frame.hint.startswith("the submit's answer was lost")  # not a network hint
    (frame,) = frames_of([review], "t")
    assert frame.hint == OutputRejected.hint
    assert fix_command(base, "t") is None  # pending: nothing to do
    assert fix_command(completed(base, "44"), "t") is None


def test_the_page_escapes_everything_a_record_holds(tmp_path: Path) -> None:
    nasty = '<script>alert(1)</script> "&" 雨夜'
    r = failed(
        record("f/1.png", created=1, prompt=nasty, style="manga", frame_id="<b>x</b>"),
        "9",
        InputRejected("<img src=x onerror=alert(2)>", code=50411),
    )
    page = render_page(
        frames_of([r], "t"), Thumbnails(), title="<t>", link=file_linker(tmp_path / "g.html")
    )
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &quot;&amp;&quot; 雨夜" in page
    assert page.count("<script>") == 0  # the static page has no script at all


def test_links_are_relative_to_the_page(tmp_path: Path) -> None:
    r = completed(record("frames/第1帧.png", created=1), "1")
    (frame,) = frames_of([r], "t")
    assert file_linker(tmp_path / "g.html")(frame) == "frames/%E7%AC%AC1%E5%B8%A7.png"
    assert file_linker(tmp_path / "share" / "g.html")(frame) == "../frames/%E7%AC%AC1%E5%B8%A7.png"


def test_thumbnails_are_small_jpegs_made_once_per_file_version(tmp_path: Path) -> None:
    image = tmp_path / "big.png"
    Image.new("RGB", (1440, 2560), (200, 10, 10)).save(image)
    thumbs = Thumbnails()
    uri = thumbs.uri(image)
    assert uri is not None and uri.startswith("data:image/jpeg;base64,")
    data = base64.b64decode(uri.split(",", 1)[1])
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (180, 320)
    assert thumbs.uri(image) is uri  # cached
    Image.new("RGB", (100, 100)).save(image)
    assert thumbs.uri(image) != uri  # the file changed
    assert thumbs.uri(tmp_path / "missing.png") is None


def _save(folder: Path, r: TaskRecord) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"pending-{r.local_id}.json").write_text(record_to_json(r), encoding="utf-8")


async def test_the_live_page_is_sent_only_cards_that_changed(tmp_path: Path) -> None:
    tasks = tmp_path / "async_tasks"
    one = record("f/1.png", created=1, batch="b.jsonl", line=1)
    two = record("f/2.png", created=1, batch="b.jsonl", line=2)
    _save(tasks, one)
    _save(tasks, two)
    live = LiveGallery(Chapter.of(TaskStore(tasks, read_only=True)))
    shown: dict[str, str] = {}
    first = live.update_event(live.snapshot, shown)
    assert one.local_id in first and two.local_id in first
    assert live.update_event(live.snapshot, shown).count("<article") == 0  # nothing new
    assert not live.refresh()  # the folder did not change
    (tasks / f"pending-{one.local_id}.json").unlink()
    done = completed(one, "77")
    image = Path(out_path(done))
    image.parent.mkdir(parents=True)
    Image.new("RGB", (64, 64)).save(image)
    (tasks / "77.json").write_text(record_to_json(done), encoding="utf-8")
    assert live.refresh()
    update = live.update_event(live.snapshot, shown)
    assert update.count("<article") == 1 and 'data-status=\\"completed\\"' in update
    assert card_version(live.snapshot.cards[one.local_id]) == shown[one.local_id]


def test_a_batch_line_may_carry_its_own_id() -> None:
    lines = [
        Line("b.jsonl", 1, {"id": "c01-001", "prompt": "p", "output_path": "1.png"}),
        Line("b.jsonl", 2, {"id": 2, "prompt": "p", "output_path": "2.png"}),
        Line("b.jsonl", 3, {"id": "c01-001", "prompt": "p", "output_path": "3.png"}),
        Line("b.jsonl", 4, {"id": ["x"], "prompt": "p", "output_path": "4.png"}),
        Line("b.csv", 5, {"id": "", "prompt": "p", "output_path": "5.png"}, from_csv=True),
    ]
    checked = check_lines(lines, Config())
    assert [str(p) for p in checked.problems] == [
        "b.jsonl:3: id: same id as line 1",
        "b.jsonl:4: id: ['x'] is a list; it must be text or a number",
    ]
    made = [(f.record.frame_id, f.record.batch_file, f.record.batch_line) for f in checked.frames]
    assert made == [("c01-001", "b.jsonl", 1), ("2", "b.jsonl", 2), (None, "b.csv", 5)]
    assert all("id" not in f.record.params for f in checked.frames)
