"""The commands and the guide's scripts on a shared store, and `migrate` both ways."""

from __future__ import annotations

import json
import stat
from typing import Any

from .conftest import E2E, wait_for


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
