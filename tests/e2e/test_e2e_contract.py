"""Issue 10: 50215 after a good submit, as a user sees it (failed on main: the frame
stalled, and the emulator had no such fault)."""

from __future__ import annotations

import json

from .conftest import E2E


def test_monitor_fails_a_late_50215_frame_in_the_services_words(e2e: E2E) -> None:
    e2e.emu.inject("late_invalid")
    e2e.ok("asyncimg", "submit", "a red fox", "-o", "fox.png", "--size", "2K")
    ran = e2e.exits(1, "asyncimg", "monitor", "--interval", "1", timeout=60)
    assert "Input invalid for this service." in ran.output, ran
    (record_file,) = e2e.tasks.glob("*.json")
    record = json.loads(record_file.read_text())
    assert record["status"] == "failed" and record["last_error"]["code"] == 50215
    assert record["params"]["size"] == 2048 * 2048
    assert e2e.emu.stats()["tasks_submitted"] == 1  # never resubmitted
