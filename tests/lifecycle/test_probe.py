"""The probe's pure half: what it sends, and what each answer means (issue 10)."""

from __future__ import annotations

import random

from asyncimg.lifecycle import probe
from asyncimg.lifecycle.probe import Answer, CheckResult


def test_plan_bills_at_most_one_image_per_submit_and_hides_base64() -> None:
    checks = probe.plan(random.Random(1))
    assert sum(c.billed for c in checks) == 6
    for check in checks:
        for body in check.submits:
            assert body["force_single"] is True and body["req_key"] == probe.V40
    shown = "\n".join(line for c in checks for line in c.shown())
    assert "[1 image(s) as base64]" in shown and "iVBOR" not in shown
    fake = next(c for c in checks if c.name == "fake_task_id")
    assert fake.billed == 0 and fake.poll_task_id and len(fake.poll_task_id) == 19


def _result(name: str, submits: list[Answer], results: list[Answer]) -> CheckResult:
    return CheckResult(name, "?", submits, results)


def test_advice_reads_each_answer() -> None:
    accepted = Answer(10000, 200, task_id="1")
    invalid = Answer(50215, 400, "Input invalid for this service.")
    late = _result("out_of_range_size", [accepted], [invalid])
    assert probe.advice(late) == "refused at poll time with 50215"
    refused_b64 = _result("base64_refs_v40", [invalid], [])
    assert '[references] mode = "url"' in probe.advice(refused_b64)
    ok_b64 = _result("base64_refs_v40", [accepted], [Answer(10000, 200, status="done", images=1)])
    assert "works" in probe.advice(ok_b64)
    limited = _result("three_quick_submits", [accepted, Answer(50430, 429), Answer(50430, 429)], [])
    assert probe.advice(limited).startswith(
        "1 of 3 accepted back to back; limits hit: 50430, 50430"
    )


def test_compare_names_the_file_only_where_answers_differ() -> None:
    checks = probe.plan(random.Random(2))
    done = Answer(10000, 200, status="done", images=1)
    live = [_result(c.name, [], [done]) for c in checks]
    emulated = [_result(c.name, [], [done]) for c in checks]
    emulated[1] = _result(checks[1].name, [], [Answer(50215, 400)])
    rows = probe.compare(checks, live, emulated)
    assert [r.same for r in rows] == [True, False, True, True, True]
    assert rows[1].where_to_fix == checks[1].where_to_fix and rows[0].where_to_fix == ""
    text = probe.summary_text(rows, "https://example", "skipped: none")
    assert text.count("DIFFERS") == 1 and "server.py" in text
