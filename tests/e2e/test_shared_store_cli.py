"""The commands and the guide's scripts on a shared store, and `migrate` both ways; the
gallery, sheet, manifest and live page of every machine's frames."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import re
import shutil
import stat
import threading
from typing import Any
from urllib.parse import urlsplit

import pytest

from .conftest import E2E, interrupt, serve_live, wait_for


def test_migrate_to_the_shared_store_and_back_without_resubmitting(e2e: E2E, pg_url: str) -> None:
    e2e.submit_frames(3)  # accepted by the API: three billed tasks
    assert e2e.emu.stats()["tasks_submitted"] == 3
    moved = e2e.ok("asyncimg", "migrate", "--from", "async_tasks", "--to", pg_url)
    assert "moved 3 records" in moved.stdout
    assert e2e.record_files() == []  # moved, not copied: no folder monitor sends them again

    store = e2e.env(ASYNCIMG_STORE=pg_url)
    done = e2e.ok("asyncimg", "monitor", "--interval", "1", env=store)
    assert "3 completed" in done.stdout
    listed = e2e.ok("asyncimg", "list", "--store", pg_url)
    assert listed.stdout.count("completed") >= 3
    first = json.loads(e2e.ok("asyncimg", "list", "--json", env=store).stdout)[0]
    shown = e2e.ok("asyncimg", "show", first["task_id"], env=store)
    assert first["task_id"] in shown.stdout
    e2e.ok("check_async_tasks.py", "--check-once", env=store)
    assert e2e.emu.stats()["tasks_submitted"] == 3  # nothing resubmitted on the way
    assert all((e2e.root / "out" / f"frame_{i:02d}.png").is_file() for i in (1, 2, 3))

    back = e2e.ok("asyncimg", "migrate", "--from", pg_url, "--to", "back")
    assert "moved 3 records" in back.stdout
    files = e2e.record_files("back")
    assert len(files) == 3
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    assert {r["status"] for r in e2e.records("back")} == {"completed"}
    again = e2e.ok("asyncimg", "list", "--store", pg_url)
    assert "completed" not in again.stdout


def test_a_bad_store_url_is_one_line_and_exit_2(e2e: E2E) -> None:
    ran = e2e.exits(2, "asyncimg", "list", "--store", "postgresql://nobody:pw123@127.0.0.1:1/x")
    assert "pw123" not in ran.output
    assert len(ran.stderr.strip().splitlines()) == 1


def test_priority_needs_a_shared_store_and_names_the_batch(e2e: E2E, pg_url: str) -> None:
    e2e.exits(2, "asyncimg", "priority", "out", "3")
    e2e.exits(1, "asyncimg", "priority", "out", "3", "--store", pg_url)  # no frame there yet


def test_the_guides_scripts_and_check_keep_to_the_shared_cap(make_e2e: Any, pg_url: str) -> None:
    e2e = make_e2e(concurrency=1, gen_seconds=(0.2, 0.4))
    store = e2e.env(ASYNCIMG_STORE=pg_url)
    for i in (1, 2, 3):
        e2e.ok("gen_image.py", f"frame {i}: 少女站在樱花树下", "-o", f"out/{i}.png", env=store)
    assert e2e.record_files() == []  # every record went to the store, none to a folder

    def finished() -> bool | None:
        ran = e2e.run("asyncimg", "check", env=store)
        assert ran.returncode == 0 and "Traceback" not in ran.stderr, str(ran)
        listed = json.loads(e2e.ok("asyncimg", "list", "--json", env=store).stdout)
        return all(r["status"] == "completed" for r in listed) or None

    wait_for(finished, 60, "three frames through one slot")
    stats = e2e.emu.stats()
    assert stats["tasks_submitted"] == 3
    assert stats["peak_unfinished"] == 1
    # The account's cap (1 until a 50430 teaches more) was kept by every pass and script:
    # nothing was sent while the one slot was taken.
    assert stats["errors"].get("50430", 0) == 0, stats["errors"]


def test_gallery_sheet_and_manifest_show_every_machines_frames(e2e: E2E, pg_url: str) -> None:
    """Two machines' chapters in one store: one page, one sheet and one manifest of both;
    the other machine's images (not on this disk) are placeholders that name it."""
    for machine, folder in (("render-a", "a"), ("render-b", "b")):
        rows = [
            {
                "id": f"{folder}-{i}",
                "prompt": f"{machine} 第{i}帧",
                "output_path": f"{folder}/{i}.png",
            }
            for i in (1, 2)
        ]
        batch = e2e.write_batch(f"{folder}.jsonl", rows)
        on = e2e.env(ASYNCIMG_STORE=pg_url, ASYNCIMG_MACHINE_ID=machine)
        e2e.ok("asyncimg", "submit", "--batch", batch.name, env=on)
        done = e2e.ok("asyncimg", "monitor", "--interval", "1", env=on).stdout
        assert f"completed → {folder}/1.png" in done and f"completed → {folder}/2.png" in done
    # On a store, monitor leaves no manifest behind (there is no tasks folder to keep it in).
    assert not (e2e.root / "manifest.jsonl").exists() and not e2e.tasks.exists()
    shutil.rmtree(e2e.root / "b")  # render-b's disk, not this machine's
    here = e2e.env(ASYNCIMG_STORE=pg_url, ASYNCIMG_MACHINE_ID="render-a")

    assert e2e.ok("asyncimg", "gallery", env=here).stdout.strip() == "gallery.html"
    page = (e2e.root / "gallery.html").read_text(encoding="utf-8")
    assert re.findall(r'<span class="fid">([^<]*)</span>', page) == ["a-1", "a-2", "b-1", "b-2"]
    assert "render-a 第1帧" in page and "render-b 第2帧" in page
    assert page.count('class="thumb"') == 2  # render-a's two images are here
    assert page.count('<div class="placeholder">image on machine render-b</div>') == 2
    assert "image missing" not in page

    ran = e2e.ok("asyncimg", "manifest", "--store", pg_url, env=e2e.env(ASYNCIMG_MACHINE_ID="x"))
    assert ran.stdout.strip() == "manifest.jsonl"  # the current folder: a store has none
    lines = [json.loads(x) for x in (e2e.root / "manifest.jsonl").read_text("utf-8").splitlines()]
    assert [(x["id"], x["status"], x["machine"]) for x in lines] == [
        ("a-1", "completed", "render-a"),
        ("a-2", "completed", "render-a"),
        ("b-1", "completed", "render-b"),
        ("b-2", "completed", "render-b"),
    ]
    assert all(x["sha256"] and x["task_id"] for x in lines)

    assert e2e.ok("asyncimg", "sheet", env=here).stdout.strip() == "contact_sheet.jpg"
    listed = json.loads(e2e.ok("asyncimg", "list", "--json", env=here).stdout)
    assert len(listed) == 4  # every machine's records, not only this one's
    # --tasks-dir still wins over the store: an empty folder is an empty chapter.
    (e2e.root / "empty").mkdir()
    e2e.ok("asyncimg", "manifest", "--tasks-dir", "empty", env=here)
    assert (e2e.root / "empty" / "manifest.jsonl").read_text("utf-8") == ""


class _Events:
    """The `update` events of a live page's stream, as they arrive."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        self.conn.request("GET", parts.path)
        self.response = self.conn.getresponse()
        self.updates: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        event, data = "", []
        with contextlib.suppress(Exception):  # the stream ends with the server
            for raw in self.response:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data.append(line.removeprefix("data: "))
                elif not line:
                    if event == "update":
                        self.updates.put(json.loads("\n".join(data)))
                    event, data = "", []

    def next(self, timeout: float = 30) -> dict[str, Any]:
        try:
            return self.updates.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no update from the live page in {timeout:g} s")

    def close(self) -> None:
        self.conn.close()


def test_serve_on_a_shared_store_shows_another_machines_new_frame(e2e: E2E, pg_url: str) -> None:
    other = e2e.env(ASYNCIMG_STORE=pg_url, ASYNCIMG_MACHINE_ID="render-b")
    e2e.ok("asyncimg", "submit", "第一帧", "-o", "b/1.png", env=other)
    proc, url = serve_live(e2e, "--store", pg_url)
    events = _Events(url + "events")
    try:
        first = events.next()
        assert len(first["order"]) == 1 and "第一帧" in json.dumps(first, ensure_ascii=False)
        e2e.ok("asyncimg", "submit", "第二帧", "-o", "b/2.png", env=other)
        update = events.next()
        assert len(update["order"]) == 2
        [(key, (_version, card))] = update["cards"].items()  # only the new card is sent
        assert "第二帧" in card and key == update["order"][1]
    finally:
        _, err = interrupt(proc)
        events.close()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert not e2e.tasks.exists()  # read only: no folder made
