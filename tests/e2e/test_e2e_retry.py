"""`asyncimg retry --output | --character | --unconfirmed`, `clean --failed` and `adopt`, run as
a user runs them (child processes against the emulator thread)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .conftest import E2E, RESULT, SUBMIT, wait_for

SLOW_SUBMIT_S = 2.0


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def billed(e2e: E2E) -> int:
    return int(e2e.emu.stats()["tasks_submitted"])


def snapshot(e2e: E2E) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in e2e.record_files()}


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def emulator_task_ids(e2e: E2E) -> list[str]:
    return e2e.emu._on_loop(lambda: list(e2e.emu.emu._tasks._tasks))


def failed_by_review(e2e: E2E, count: int, *extra: str) -> list[dict[str, Any]]:
    """`count` frames whose output fails review, monitored to the end."""
    e2e.emu.inject("review_failure", count, SUBMIT)
    e2e.submit_frames(count, *extra)
    e2e.asyncimg("monitor", "--interval", "1", timeout=30)
    records = e2e.records()
    assert [r["status"] for r in records] == ["failed"] * count, records
    return records


def test_save_failure_ends_monitor_and_retry_output_fetches_it_without_paying(e2e: E2E) -> None:
    e2e.ok("asyncimg", "submit", "a lighthouse at dusk", "-o", "out/f1.png")
    (e2e.root / "out" / "f1.png").mkdir(parents=True)  # a folder where the image goes
    ran = e2e.asyncimg("monitor", "--interval", "1", timeout=30)
    assert ran.returncode == 1, ran  # it ended by itself, with a failed frame
    assert "out/f1.png" in ran.stdout and "cannot write image" in ran.stdout, ran
    (failed,) = e2e.records()
    assert failed["status"] == "failed" and failed["last_error"]["kind"] == "SaveFailed"
    assert billed(e2e) == 1

    ran = e2e.ok("asyncimg", "retry", failed["task_id"], "--output", "saved/f1.png")
    line = one_line(ran.stdout)
    assert failed["task_id"] in line and "no new submission" in line, ran
    assert "saved/f1.png" in line
    ran = e2e.ok("asyncimg", "check")
    assert "completed → saved/f1.png" in ran.stdout, ran
    (done,) = e2e.records()
    assert done["status"] == "completed" and done["task_id"] == failed["task_id"]
    assert (e2e.root / "saved" / "f1.png").is_file()
    assert billed(e2e) == 1 and e2e.emu.stats()["requests"][SUBMIT] == 1


def test_retry_output_or_prompt_for_several_tasks_is_refused(e2e: E2E) -> None:
    first, second = failed_by_review(e2e, 2)
    before, paid = snapshot(e2e), billed(e2e)
    for args in (
        ("--failed", "--prompt", "one prompt for every frame?"),
        (first["task_id"], second["task_id"], "--prompt", "p"),
        ("--failed", "--output", "out/x.png"),
    ):
        ran = e2e.asyncimg("retry", *args)
        assert ran.returncode == 2, ran
        assert "single TASK_ID" in one_line(ran.stderr) and ran.stdout == "", ran
    assert snapshot(e2e) == before and billed(e2e) == paid


def test_retry_with_a_bad_second_frame_retries_nothing(e2e: E2E) -> None:
    lin = e2e.character("lin.png")
    mei = e2e.character("mei.png", color=(20, 160, 90))
    e2e.emu.inject("review_failure", 2, SUBMIT)
    rows = [
        {"prompt": "lin at the door", "output_path": "out/01.png", "character_images": [lin.name]},
        {"prompt": "mei at the gate", "output_path": "out/02.png", "character_images": [mei.name]},
    ]
    for row in rows:
        row["character_images"] = [f"chars/{name}" for name in row["character_images"]]
    e2e.ok("asyncimg", "submit", "--batch", e2e.write_batch("chapter.jsonl", rows).name)
    e2e.asyncimg("monitor", "--interval", "1", timeout=30)
    assert [r["status"] for r in e2e.records()] == ["failed", "failed"]
    mei.unlink()  # the second frame's character sheet has gone
    before, paid = snapshot(e2e), billed(e2e)

    ran = e2e.asyncimg("retry", "--failed")
    assert ran.returncode == 2, ran
    problems = ran.stderr.strip().splitlines()
    assert len(problems) == 2, ran  # the problem, then "nothing was retried"
    assert "out/02.png" in problems[0] and "character_images[0]" in problems[0]
    assert "chars/mei.png" in problems[0] and "no such file" in problems[0]
    assert "nothing was retried" in problems[1]
    assert snapshot(e2e) == before and billed(e2e) == paid  # nothing re-queued
    assert [r["status"] for r in e2e.records()] == ["failed", "failed"]

    # Replacing the missing character fixes it: both go out, the second with the new sheet.
    other = e2e.character("mei_v2.png", color=(90, 90, 200))
    second = e2e.by_output()["out/02.png"]
    ran = e2e.ok("asyncimg", "retry", second["task_id"], "--character", "chars/mei_v2.png")
    assert "1 submitted" in ran.stdout, ran
    again = e2e.by_output()["out/02.png"]
    assert again["character_images"] == ["chars/mei_v2.png"] and other.is_file()
    ran = e2e.ok("asyncimg", "retry", "--failed")
    assert "1 submitted" in ran.stdout, ran
    e2e.ok("asyncimg", "monitor", "--interval", "1", timeout=30)
    assert [r["status"] for r in e2e.records()] == ["completed", "completed"]


def test_clean_failed_and_completed(e2e: E2E) -> None:
    e2e.emu.inject("review_failure", 2, SUBMIT)
    e2e.submit_frames(4)
    e2e.asyncimg("monitor", "--interval", "1", timeout=30)
    statuses = sorted(r["status"] for r in e2e.records())
    assert statuses == ["completed", "completed", "failed", "failed"]
    images = {p.name: sha(p) for p in (e2e.root / "out").iterdir()}
    assert len(images) == 2

    ran = e2e.asyncimg("clean")
    assert ran.returncode == 2 and "--failed" in ran.stderr, ran

    ran = e2e.ok("asyncimg", "clean", "--failed", "--archive", "archive")
    assert one_line(ran.stdout) == "2 failed records archived to archive", ran
    assert [r["status"] for r in e2e.records("archive")] == ["failed", "failed"]
    assert [r["status"] for r in e2e.records()] == ["completed", "completed"]

    e2e.emu.inject("review_failure", 1, SUBMIT)
    e2e.submit_frames(1, name="extra")
    e2e.asyncimg("monitor", "--interval", "1", timeout=30)
    ran = e2e.ok("asyncimg", "clean", "--completed", "--failed")
    assert ran.stdout.splitlines() == ["2 completed records deleted", "1 failed records deleted"]
    assert e2e.records() == []
    assert {p.name: sha(p) for p in (e2e.root / "out").iterdir()} == images  # never touched


def _unconfirmed_submit(e2e: E2E) -> dict[str, Any]:
    """`asyncimg submit` whose answer never arrives (its read timeout is shorter than the
    emulator's delay); the emulator then creates the task anyway. Returns the record.
    The short timeout is for that one submit only: a later one must not have to be answered
    within 0.3 s on a loaded machine."""
    config = e2e.root / "asyncimg.toml"
    config.write_text("[defaults]\nsubmit_timeout = 0.3\n", "utf-8")
    e2e.emu.inject("slow", 1, SUBMIT)
    ran = e2e.ok("asyncimg", "submit", "a lighthouse at dusk", "-o", "out/f1.png")
    config.unlink()
    assert "unconfirmed" in ran.stdout, ran
    (record,) = e2e.records()
    assert record["status"] == "unconfirmed" and record["task_id"] is None
    wait_for(lambda: billed(e2e) == 1, 10, "the slow submit to create its task")
    return record


def test_adopt_into_an_unconfirmed_record_then_check_completes_it(
    make_e2e: Any,
) -> None:
    e2e: E2E = make_e2e(slow_seconds=SLOW_SUBMIT_S, gen_seconds=(0.2, 0.5))
    record = _unconfirmed_submit(e2e)
    (task_id,) = emulator_task_ids(e2e)  # found in the service's console

    ran = e2e.ok("asyncimg", "adopt", task_id, "-o", "out/f1.png")
    assert one_line(ran.stdout) == f"adopted {task_id} for out/f1.png; asyncimg check downloads it"
    (adopted,) = e2e.records()
    assert adopted["local_id"] == record["local_id"] and adopted["task_id"] == task_id
    assert adopted["status"] == "submitted"

    e2e.ok("asyncimg", "monitor", "--interval", "1", timeout=30)
    (done,) = e2e.records()
    assert done["status"] == "completed" and (e2e.root / "out" / "f1.png").is_file()
    assert billed(e2e) == 1  # one frame, one billed task


def test_retry_unconfirmed_pays_again_only_when_asked(make_e2e: Any) -> None:
    e2e: E2E = make_e2e(slow_seconds=SLOW_SUBMIT_S, gen_seconds=(0.2, 0.5))
    record = _unconfirmed_submit(e2e)
    ran = e2e.ok("asyncimg", "retry", "--failed")
    assert "no failed tasks to retry" in ran.stdout, ran
    assert e2e.records()[0]["status"] == "unconfirmed"

    ran = e2e.ok("asyncimg", "retry", "--unconfirmed")
    assert "1 submitted" in ran.stdout, ran
    (again,) = e2e.records()
    assert again["local_id"] == record["local_id"] and again["status"] == "submitted"
    assert billed(e2e) == 2  # the user chose to pay again


def test_adopt_a_task_from_elsewhere_and_refusals(e2e: E2E) -> None:
    e2e.ok("asyncimg", "submit", "a heron", "-o", "out/heron.png", "--tasks-dir", "old_tasks")
    (elsewhere,) = e2e.records("old_tasks")
    task_id = elsewhere["task_id"]

    ran = e2e.ok("asyncimg", "adopt", task_id, "-o", "frames/heron.png")
    assert one_line(ran.stdout) == (
        f"adopted {task_id} for frames/heron.png; asyncimg check downloads it"
    )
    (adopted,) = e2e.records()
    assert adopted["status"] == "submitted" and adopted["output_path"] == "frames/heron.png"
    assert "unknown" in adopted["prompt"]
    assert adopted["working_dir"] == ".."  # the project folder, relative to async_tasks/
    shown = json.loads(e2e.ok("asyncimg", "show", task_id, "--json").stdout)
    assert shown["task_id"] == task_id

    before = snapshot(e2e)
    ran = e2e.asyncimg("adopt", task_id, "-o", "frames/again.png")
    assert ran.returncode == 1 and "already in" in one_line(ran.stderr), ran
    ran = e2e.asyncimg("adopt", "1234567890123456789", "-o", "frames/nothing.png")
    assert ran.returncode == 1 and "does not know" in one_line(ran.stderr), ran
    wrong_key = e2e.env(VOLC_SECRETKEY="not-the-secret")
    ran = e2e.asyncimg("adopt", "1234567890123456789", "-o", "frames/x.png", env=wrong_key)
    assert ran.returncode == 2, ran
    one_line(ran.stderr)
    e2e.emu.inject("drop", 3, RESULT)  # every try of the poll loses its connection
    ran = e2e.asyncimg("adopt", "1234567890123456789", "-o", "frames/y.png")
    assert ran.returncode == 2 and "Traceback" not in ran.stderr, ran
    one_line(ran.stderr)
    assert e2e.emu.stats()["faults_fired"] == {"drop": 3}
    assert snapshot(e2e) == before

    e2e.emu.wait_idle(1)
    ran = e2e.ok("asyncimg", "check")
    assert "completed → frames/heron.png" in ran.stdout, ran
    assert (e2e.root / "frames" / "heron.png").is_file()
    assert billed(e2e) == 1
