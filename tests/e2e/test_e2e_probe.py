"""`asyncimg probe` against the emulator standing in for the live service (issue 10)."""

from __future__ import annotations

import json
from collections.abc import Callable

from .conftest import E2E, SUBMIT


def test_probe_says_what_it_sends_and_sends_nothing_unless_confirmed(e2e: E2E) -> None:
    ran = e2e.exits(1, "asyncimg", "probe", input="n\n")
    assert "At most 6 images can be billed" in ran.stdout
    assert "zz_asyncimg_probe" in ran.stdout and "[1 image(s) as base64]" in ran.stdout
    assert "nothing was sent" in ran.stderr
    assert e2e.emu.stats()["requests"] == {}
    assert not (e2e.root / "probe-report.json").exists()


def test_probe_against_the_default_emulator_finds_no_difference(e2e: E2E) -> None:
    ran = e2e.ok("asyncimg", "probe", "--yes", "--wait", "20", "--poll-every", "0.1")
    report_path = e2e.root / "probe-report.json"
    assert f"report: {report_path}" in ran.stdout
    assert (e2e.root / "probe-report.txt").read_text().startswith("asyncimg probe of ")
    report = json.loads(report_path.read_text())
    rows = {row["name"]: row for row in report["rows"]}
    assert set(rows) == {
        "base64_refs_v40", "unknown_field", "out_of_range_size", "three_quick_submits",
        "fake_task_id",
    }  # fmt: skip
    assert all(row["same"] for row in rows.values()), rows
    assert rows["base64_refs_v40"]["live"] == "submit 10000; result 10000 done (1 image)"
    assert rows["out_of_range_size"]["live"] == "submit 50215 (HTTP 400)"
    assert rows["fake_task_id"]["live"] == "result 10000 not_found"
    assert "3 of 3 accepted" in rows["three_quick_submits"]["advice"]
    # 5 tasks created (the out-of-range one refused); at most 6 billed, as announced.
    assert len(report["task_ids"]) == 5 == e2e.emu.stats()["tasks_submitted"]
    assert "skipped" in report["retention"]
    assert not e2e.tasks.exists()  # the probe writes no task records
    # A second run checks the retention of the first run's tasks.
    e2e.ok("asyncimg", "probe", "--yes", "--wait", "20", "--poll-every", "0.1")
    again = json.loads(report_path.read_text())
    assert again["retention"]["task_id"] in report["task_ids"]
    assert again["retention"]["answer"] == "10000 done"


def test_probe_reports_differences_and_the_way_to_url_references(
    make_e2e: Callable[..., E2E],
) -> None:
    # Tasks outlast the probe (no race with the concurrency limit); the base64 submit, the
    # first request, is refused.
    e2e = make_e2e(strict=True, concurrency=2, gen_seconds=(60, 60))
    e2e.emu.inject("param_error", action=SUBMIT)
    out = e2e.root / "reports" / "first.json"
    out.parent.mkdir()
    ran = e2e.ok(
        "asyncimg", "probe", "--yes", "--out", str(out), "--wait", "0.5", "--poll-every", "0.1"
    )
    assert f"summary: {out.with_suffix('.txt')}" in ran.stdout
    rows = {row["name"]: row for row in json.loads(out.read_text())["rows"]}
    base64_row = rows["base64_refs_v40"]
    assert not base64_row["same"] and base64_row["live"] == "submit 50200 (HTTP 400)"
    assert '[references] mode = "url"' in base64_row["advice"]
    assert "references.py" in base64_row["where_to_fix"]
    unknown = rows["unknown_field"]
    assert not unknown["same"] and unknown["live"] == "submit 50215 (HTTP 400)"
    assert "--strict" in unknown["advice"] and "server.py" in unknown["where_to_fix"]
    quick = rows["three_quick_submits"]
    assert quick["live"].startswith("submit 10000; submit 10000; submit 50430 (HTTP 429)")
    text = out.with_suffix(".txt").read_text()
    assert "DIFFERS from the emulator" in text and '[references] mode = "url"' in text
    assert e2e.emu.stats()["requests"][SUBMIT] == 6


def test_probe_without_credentials_is_a_setup_problem(e2e: E2E) -> None:
    ran = e2e.exits(2, "asyncimg", "probe", "--yes", env=e2e.env(VOLC_ACCESSKEY=None))
    assert "VOLC_ACCESSKEY is not set" in ran.stderr
    assert e2e.emu.stats()["requests"] == {}


def test_probe_checks_the_retention_of_the_folders_oldest_task(e2e: E2E) -> None:
    e2e.ok("asyncimg", "submit", "a red fox", "-o", "fox.png", "--size", "1024x1024")
    (record_file,) = e2e.tasks.glob("*.json")
    task_id = json.loads(record_file.read_text())["task_id"]
    e2e.ok("asyncimg", "probe", "--yes", "--wait", "0", "--poll-every", "0.1")
    retention = json.loads((e2e.root / "probe-report.json").read_text())["retention"]
    assert retention["task_id"] == task_id and retention["answer"].startswith("10000 ")
