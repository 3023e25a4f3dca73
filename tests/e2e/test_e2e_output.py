"""Issue 9, "Honest terminal output" and "Machine-readable everywhere", as a user sees them:
the real commands against the emulator, on a pipe or on a pseudo-terminal."""

from __future__ import annotations

import json
import os
import pty
import queue
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

from .conftest import ASYNCIMG, E2E, SUBMIT, reap, wait_for


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _json_lines(text: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert events and all("event" in e for e in events), text
    return events


class Terminal:
    """A command on a pseudo-terminal, as a user runs it: rich draws its live bar."""

    def __init__(self, e2e: E2E, *args: str, columns: int = 120) -> None:
        master, slave = pty.openpty()
        env = e2e.env(COLUMNS=str(columns), LINES="40", TERM="xterm", NO_COLOR=None)
        env.pop("COLORTERM", None)
        self.proc = subprocess.Popen(
            [str(ASYNCIMG), *args],
            cwd=e2e.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        self.master = master
        self.out = b""

    def read_until(self, needle: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.out:
            assert time.monotonic() < deadline, f"no {needle!r} in {self.out[-2000:]!r}"
            if not self._read(0.2):
                break
        assert needle in self.out, self.out[-2000:]

    def _read(self, wait: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.out += chunk
        return bool(chunk)

    def finish(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self._read(0.2):
            assert time.monotonic() < deadline, self.out[-2000:]
        os.close(self.master)
        return self.proc.wait(timeout)


# -- the reason frames are stuck ------------------------------------------------------------


def test_an_unreachable_api_is_named_by_submit_check_and_monitor(e2e: E2E) -> None:
    env = e2e.env(ASYNCIMG_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    e2e.write_batch("b.jsonl", [{"prompt": f"p{i}", "output_path": f"o/{i}.png"} for i in (1, 2)])
    ran = e2e.ok("asyncimg", "submit", "--batch", "b.jsonl", env=env)
    assert ran.stdout.count("queued locally — API unreachable: ") == 2, ran

    ran = e2e.ok("asyncimg", "check", env=env)
    assert "2 pending — waiting: API unreachable: " in ran.stdout, ran
    assert ran.stdout.splitlines()[0].startswith("API unreachable: "), ran

    proc = subprocess.Popen(
        [str(ASYNCIMG), "monitor", "--interval", "5"],
        cwd=e2e.root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 20
        while not any(line.startswith("API unreachable: ") for line in seen):
            assert time.monotonic() < deadline, seen
            seen.append(proc.stdout.readline())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


# -- JSON lines -------------------------------------------------------------------------------


def test_json_lines_link_every_batch_line_to_its_image(e2e: E2E) -> None:
    rows = [{"prompt": f"镜头 {i}", "output_path": f"shots/{i:02d}.png"} for i in (1, 2, 3)]
    e2e.write_batch("ch.jsonl", rows)
    events = _json_lines(e2e.ok("asyncimg", "submit", "--batch", "ch.jsonl", "--json").stdout)
    assert events[0] == {"event": "start", "command": "submit", "version": 1}
    frames = {e["output_path"]: e for e in events if e["event"] == "frame"}
    assert sorted(frames) == [r["output_path"] for r in rows]
    assert all(f["outcome"] == "submitted" and f["task_id"] for f in frames.values())
    assert events[-1]["event"] == "summary" and events[-1]["submitted"] == 3

    events = _json_lines(e2e.ok("asyncimg", "monitor", "--interval", "1", "--json").stdout)
    assert events[0]["command"] == "monitor"
    done = {e["output_path"]: e for e in events if e["event"] == "completed"}
    assert {p: e["task_id"] for p, e in done.items()} == {
        p: f["task_id"] for p, f in frames.items()
    }
    assert any(e["event"] == "progress" for e in events)
    summary = events[-1]
    assert summary["event"] == "summary" and summary["exit_code"] == 0, summary
    assert summary["counts"]["completed"] == 3 and summary["failed"] == []
    for path in frames:
        assert (e2e.root / path).is_file()

    events = _json_lines(e2e.ok("asyncimg", "check", "--json").stdout)
    assert [e["event"] for e in events] == ["start", "summary"]
    [task] = _json_lines(e2e.ok("asyncimg", "show", "shots/02.png", "--json").stdout)
    assert task["event"] == "task" and task["prompt"] == "镜头 2"


def test_dry_run_json_plans_every_frame_and_sends_nothing(e2e: E2E) -> None:
    rows = [{"prompt": "a", "output_path": "o/1.png"}, {"prompt": "b", "output_path": "o/2.png"}]
    e2e.write_batch("b.jsonl", [*rows, {"prompt": 3, "output_path": "o/3.png"}])
    ran = e2e.exits(2, "asyncimg", "submit", "--batch", "b.jsonl", "--dry-run", "--json")
    events = _json_lines(ran.stdout)
    assert [e["event"] for e in events] == ["start", "problem", "plan", "plan", "summary"]
    assert events[1]["where"] == "b.jsonl:3" and events[1]["field"] == "prompt"
    assert [p["output_path"] for p in events[2:4]] == ["o/1.png", "o/2.png"]
    assert all(p["action"] == "submit" and p["images_at_most"] == 1 for p in events[2:4])
    assert events[-1]["dry_run"] is True and events[-1]["to_submit"] == 2
    assert e2e.emu.stats()["tasks_submitted"] == 0 and not e2e.tasks.exists()


# -- submit says each frame as it goes ------------------------------------------------------------


def test_submit_prints_each_frame_as_its_answer_comes(make_e2e: Any) -> None:
    """A frame's line is printed when its answer comes, not once every frame is answered:
    the first submit to arrive is held (until the test lets it go), and a line must be
    printed while it is still unanswered."""
    e2e: E2E = make_e2e(slow_seconds=600.0)
    e2e.emu.inject("slow", 1, SUBMIT)
    rows = [{"prompt": f"p{i}", "output_path": f"o/{i}.png"} for i in range(1, 7)]
    e2e.write_batch("b.jsonl", rows)
    proc = e2e.popen("asyncimg", "submit", "--batch", "b.jsonl")
    try:
        assert proc.stdout is not None
        out = proc.stdout
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(out.readline()), daemon=True).start()
        try:
            first = lines.get(timeout=60)
        except queue.Empty:
            pytest.fail("no frame printed while one submit was unanswered")
        assert ": submitted as " in first, first
        assert proc.poll() is None  # the held submit is still unanswered
        e2e.emu.release_slow()
        rest, _ = proc.communicate(timeout=60)
    finally:
        reap(proc)
    assert proc.returncode == 0 and "6 submitted" in rest, rest


# -- the bar, colours, order, Ctrl+C ------------------------------------------------------------


RED = b"\x1b[31m"


def test_monitor_on_a_terminal_failures_red_in_the_bar_and_listed_in_frame_order(
    e2e: E2E,
) -> None:
    e2e.emu.inject("review_failure", 4, SUBMIT)
    rows = [{"prompt": f"p{i}", "output_path": f"shot_{i:02d}.png"} for i in range(1, 7)]
    e2e.write_batch("b.jsonl", rows)
    e2e.ok("asyncimg", "submit", "--batch", "b.jsonl")
    term = Terminal(e2e, "monitor", "--interval", "1")
    assert term.finish() == 1
    out = term.out
    failed_lines = [line for line in out.split(b"\n") if b": failed \xe2\x80\x94 " in line]
    assert len(failed_lines) == 4, out
    assert all(RED in line for line in failed_lines), failed_lines
    header = out.index(b"4 failed:")
    last_bar = out.rfind("━".encode())
    assert last_bar < header, "the bar was drawn again after the summary"
    bar_line = out[out.rfind(b"frames", 0, last_bar) : last_bar]
    assert RED in bar_line, "the final bar shows no failure"
    text = out[header:].decode("utf-8", "replace")
    listed = [line.split()[2].rstrip(":") for line in text.splitlines()[1:5]]
    failed = sorted(r["output_path"] for r in e2e.records() if r["status"] == "failed")
    assert listed == failed, text


def test_ctrl_c_leaves_no_stale_bar(e2e_slow: E2E) -> None:
    e2e_slow.submit_frames(3, name="shot")
    term = Terminal(e2e_slow, "monitor", "--interval", "1")
    term.read_until(b"/3")  # the bar, with the folder read
    term.proc.send_signal(signal.SIGINT)
    assert term.finish() == 130, term.out
    after = term.out[term.out.index(b"stopped by user") :]
    assert "━".encode() not in after, after


# -- list and show --------------------------------------------------------------------------------


def test_list_fits_80_columns_and_show_finds_a_frame_by_file_name(e2e: E2E) -> None:
    deep = "chapters/第一章_雨夜的小巷/storyboard/frames/very_long_folder_name/001.png"
    e2e.emu.inject("review_failure", 1, SUBMIT)
    e2e.ok("asyncimg", "submit", "林晓撑着红伞回头张望" * 3, "-o", deep)
    e2e.exits(1, "asyncimg", "monitor", "--interval", "1", timeout=30)

    ran = e2e.ok("asyncimg", "list", env=e2e.env(COLUMNS="80"))
    lines = ran.stdout.splitlines()
    assert all(cell_len(line) <= 80 for line in lines), lines
    row = lines[1]
    assert "…" in row and "/001.png" in row and row.rstrip().endswith("…"), row
    wide = e2e.ok("asyncimg", "list", "--wide", env=e2e.env(COLUMNS="80")).stdout
    assert deep in wide

    for key in ("001.png", deep):
        ran = e2e.ok("asyncimg", "show", key)
        assert not ran.stdout.lstrip().startswith("{"), ran
        assert "status        failed" in ran.stdout, ran
        assert f"output        {deep}" in ran.stdout
        assert time.strftime("%Y-%m-%d ") in ran.stdout  # a date, not epoch seconds
    record = e2e.records()[0]
    assert record["task_id"] in e2e.ok("asyncimg", "show", record["task_id"]).stdout
    ran = e2e.asyncimg("show", "002.png")
    assert ran.returncode == 1 and "002.png" in ran.stderr, ran


def test_show_lists_earlier_attempts(e2e: E2E) -> None:
    e2e.emu.inject("review_failure", 1, SUBMIT)
    e2e.ok("asyncimg", "submit", "a heron", "-o", "h/heron.png")
    e2e.exits(1, "asyncimg", "monitor", "--interval", "1", timeout=30)
    first = e2e.records()[0]["task_id"]
    e2e.ok("asyncimg", "retry", "--failed")
    wait_for(lambda: e2e.emu.stats()["tasks_unfinished"] == 0, 20, "the retry to finish")
    ran = e2e.ok("asyncimg", "show", "heron.png")
    assert "history       1 earlier attempt(s):" in ran.stdout, ran
    assert f"task {first}  failed" in ran.stdout, ran


def test_split_bar_never_all_green_with_failures() -> None:
    from asyncimg.cli.output import split_bar

    bar = split_bar(30, 29, 1, 30)
    assert [span.style for span in bar.spans if span.end > span.start] == ["green", "red"]
    assert bar.plain == "━" * 30
    assert split_bar(30, 0, 0, 0).plain == "━" * 30


def test_records_keep_frame_order_in_the_failed_list(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from asyncimg.cli.output import frame_order

    made = [SimpleNamespace(created_at=t, output_path=p) for t, p in ((2.0, "b"), (1.0, "z"))]
    assert [m.output_path for m in frame_order(made)] == ["z", "b"]  # type: ignore[type-var]
