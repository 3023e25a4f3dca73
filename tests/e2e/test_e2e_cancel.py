"""`asyncimg cancel` as a user runs it (issue 10)."""

from __future__ import annotations

import json
from collections.abc import Callable

from .conftest import E2E


def test_cancel_a_queued_task_from_the_command_line(make_e2e: Callable[..., E2E]) -> None:
    e2e = make_e2e(gen_seconds=(600, 600))  # in_queue for 180 s: long enough to cancel
    e2e.ok("asyncimg", "submit", "a red fox", "-o", "fox.png", "--size", "1024x1024")
    (record_file,) = e2e.tasks.glob("*.json")
    task_id = json.loads(record_file.read_text())["task_id"]
    ran = e2e.ok("asyncimg", "cancel", task_id)
    assert "cancelled by the service" in ran.stdout
    shown = json.loads(e2e.ok("asyncimg", "show", "--json", task_id).stdout)
    assert shown["status"] == "failed" and shown["cancel"]["outcome"] == "cancelled"
    assert e2e.emu.stats()["tasks_unfinished"] == 0
    again = e2e.exits(1, "asyncimg", "cancel", task_id)
    assert "already failed" in again.stderr
