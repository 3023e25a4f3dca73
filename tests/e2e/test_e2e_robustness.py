"""Signals, legacy and corrupt records, account limits, failures and secrets, end to end."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.signing import Credentials
from asyncimg.store.record import record_from_json
from asyncimg.store.store import TaskStore

from .conftest import AK, E2E, RESULT, SK, SUBMIT, assert_no_secret, reap, wait_for

BINARY = b'{"task_id": "\xff\xfe\xc3\x28 latin-1 \xe9t\xe9"}'
SUMMARY = re.compile(r"(\d+) submitted, (\d+) queued locally, (\d+) rejected")


def assert_records_valid(tasks: Path, expected: int) -> None:
    """Every record file parses and validates, and the store loads them without problems."""
    files = [p for p in tasks.iterdir() if p.is_file() and p.suffix in (".json", ".txt")]
    for path in files:
        record_from_json(path.read_bytes())
    loaded = TaskStore(tasks).load_all()
    assert loaded.problems == [], [str(p) for p in loaded.problems]
    assert len(loaded.records) == expected


# -- SIGINT / SIGTERM ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "program", "args"),
    [
        (signal.SIGINT, "check_async_tasks.py", ("--monitor", "--interval", "1")),
        (signal.SIGTERM, "check_async_tasks.py", ("--monitor", "--interval", "1")),
        (signal.SIGTERM, "asyncimg", ("monitor", "--interval", "1")),
    ],
    ids=["sigint-legacy", "sigterm-legacy", "sigterm-asyncimg"],
)
def test_signal_mid_run_stops_cleanly(
    make_e2e: Callable[..., E2E], sig: signal.Signals, program: str, args: tuple[str, ...]
) -> None:
    """Stopped while its polls hang on a slow API: exit 130, one summary line, records intact."""
    e2e = make_e2e(gen_seconds=(600.0, 600.0), slow_seconds=600.0)
    e2e.submit_frames(8)
    proc = e2e.popen(program, *args)

    def a_poll_hangs() -> None:
        # Let at least one full pass happen, then make every poll hang and wait for one to.
        wait_for(lambda: e2e.emu.stats()["requests"].get(RESULT, 0) >= 8, 20, "a first pass")
        e2e.emu.inject("slow", 1000, RESULT)
        wait_for(lambda: e2e.emu.stats()["faults_fired"].get("slow"), 20, "a hanging poll")

    out, err = _signal_when(proc, sig, a_poll_hangs)
    assert_no_secret(out + err, "the monitor's output")
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert "Traceback" not in err, err
    lines = [x for x in out.splitlines() if x.strip()]
    assert lines[-1].startswith("stopped by user"), out
    # The counts of the records on disk: all 8 still in flight.
    counts = re.findall(r"(\d+) (submitted|processing)", lines[-1].partition(":")[2])
    assert sum(int(n) for n, _ in counts) == 8, out
    assert sum("stopped" in x for x in lines) == 1, out
    assert_records_valid(e2e.tasks, 8)
    assert {r["status"] for r in e2e.records()} <= {"submitted", "processing"}


def _signal_when(
    proc: subprocess.Popen[str], sig: signal.Signals, ready: Callable[[], object]
) -> tuple[str, str]:
    """Send `sig` once `ready()` returns; the output. The process never outlives the test."""
    try:
        ready()
        proc.send_signal(sig)
        return proc.communicate(timeout=15)
    finally:
        reap(proc)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_check_once(make_e2e: Callable[..., E2E], sig: signal.Signals) -> None:
    e2e = make_e2e(gen_seconds=(600.0, 600.0), slow_seconds=600.0)
    e2e.submit_frames(3)
    e2e.emu.inject("slow", 100, RESULT)
    proc = e2e.popen("check_async_tasks.py", "--check-once")
    out, err = _signal_when(
        proc,
        sig,
        lambda: wait_for(lambda: e2e.emu.stats()["faults_fired"].get("slow"), 20, "a hanging poll"),
    )
    assert proc.returncode == 130, (proc.returncode, out, err)
    assert "Traceback" not in err, err
    last = out.strip().splitlines()[-1]
    assert last == "stopped by user; every record is intact: 3 submitted", out
    assert_records_valid(e2e.tasks, 3)


# -- legacy .txt records ------------------------------------------------------------------


def _submit_directly(e2e: E2E, prompt: str) -> str:
    """A task the emulator really has, submitted with the client, with no record of ours."""

    async def go() -> str:
        async with VisualClient(Credentials(AK, SK), endpoint=e2e.emu.url) as client:
            return await client.submit("jimeng_t2i_v40", {"prompt": prompt})

    return asyncio.run(go())


@pytest.mark.parametrize(
    "args", [("--check-once",), ("--monitor", "--interval", "1")], ids=["check", "monitor"]
)
def test_legacy_txt_record_is_completed_in_place(e2e: E2E, args: tuple[str, ...]) -> None:
    prompt = "少女站在樱花树下，日系漫画风格"
    task_id = _submit_directly(e2e, prompt)
    e2e.tasks.mkdir(mode=0o700)
    legacy = e2e.tasks / f"{task_id}.txt"
    guide_record = {
        "task_id": task_id,
        "output_path": "legacy/001.png",
        "filename": "001.png",
        "prompt": prompt,
        "full_prompt": prompt,
        "character_images": [],
        "style": "manga",
        "submit_time": 1764331200.123,
        "status": "submitted",
    }
    legacy.write_text(json.dumps(guide_record, ensure_ascii=False, indent=2), encoding="utf-8")
    e2e.emu.wait_idle(1)

    ran = e2e.ok("check_async_tasks.py", *args, timeout=30)
    assert "001.png: completed" in ran.stdout, ran
    with Image.open(e2e.root / "legacy" / "001.png") as img:
        img.verify()
    assert [p.name for p in e2e.record_files()] == [legacy.name], "the .txt was not kept"
    data = json.loads(legacy.read_text(encoding="utf-8"))
    assert data["status"] == "completed"
    for key, value in guide_record.items():
        if key != "status":
            assert data[key] == value, key


# -- corrupt records ----------------------------------------------------------------------


def test_corrupt_records_are_quarantined_and_the_rest_complete(e2e: E2E) -> None:
    e2e.submit_frames(2)
    [good] = e2e.records()[:1]
    truncated = e2e.tasks / "7000000000000000001.json"
    truncated.write_text(json.dumps(good, ensure_ascii=False)[:60], encoding="utf-8")
    binary = e2e.tasks / "7000000000000000002.json"
    binary.write_bytes(BINARY)
    for bad in (truncated, binary):  # written a minute ago: nobody is writing them now
        os.utime(bad, (time.time() - 60, time.time() - 60))
    e2e.emu.wait_idle(2)

    ran = e2e.ok("check_async_tasks.py", "--check-once")
    for bad in (truncated, binary):
        mentions = [x for x in ran.output.splitlines() if bad.name in x]
        assert len(mentions) == 1, (bad.name, ran)
        assert ".quarantine" in mentions[0], mentions
        assert not bad.exists()
        assert (e2e.tasks / ".quarantine" / bad.name).is_file()
        assert (e2e.tasks / ".quarantine" / f"{bad.name}.reason.txt").is_file()
    # Set aside byte for byte, never rewritten.
    assert (e2e.tasks / ".quarantine" / binary.name).read_bytes() == BINARY
    assert [r["status"] for r in e2e.records()] == ["completed"] * 2
    assert len(list((e2e.root / "out").glob("*.png"))) == 2

    # Nothing more is reported once they are set aside.
    ran = e2e.ok("check_async_tasks.py", "--monitor", "--interval", "1", timeout=20)
    assert ".quarantine" not in ran.output, ran


# -- the account's concurrency limit ------------------------------------------------------


def test_twelve_frames_at_concurrency_two(make_e2e: Callable[..., E2E]) -> None:
    e2e = make_e2e(concurrency=2, gen_seconds=(0.2, 0.4))
    ran = e2e.submit_frames(12)
    match = SUMMARY.search(ran.stdout)
    assert match, ran
    submitted, queued, rejected = map(int, match.groups())
    assert submitted <= 2 and queued >= 10 and rejected == 0, ran
    assert submitted + queued == 12
    assert ran.stdout.count(": queued locally") == queued, ran

    ran = e2e.ok("asyncimg", "monitor", "--interval", "1", timeout=60)
    assert "12 completed" in ran.stdout, ran
    records = e2e.records()
    assert len(records) == 12
    assert [r["status"] for r in records] == ["completed"] * 12
    assert len({r["task_id"] for r in records}) == 12
    assert sorted(r["output_path"] for r in records) == [
        f"out/frame_{i:02d}.png" for i in range(1, 13)
    ]
    for r in records:
        assert (e2e.root / r["output_path"]).is_file()
    stats = e2e.emu.stats()
    assert stats["peak_unfinished"] <= 2, stats
    assert stats["tasks_submitted"] == 12, stats  # nothing submitted twice
    assert stats["errors"].get("50430", 0) >= 1, stats
    assert_records_valid(e2e.tasks, 12)


def test_two_checkers_on_one_folder_never_submit_a_frame_twice(
    make_e2e: Callable[..., E2E],
) -> None:
    """A check whose first submit hangs still holds its (now stale) list of queued frames;
    a second checker meanwhile submits the others. The first must not send them again (a
    second, billed task each) nor set the other process's records aside.

    The hung submit is held until the second checker has finished (`release_slow`), however
    long that checker takes to start on a loaded machine: no delay decides the order."""
    e2e = make_e2e(slow_seconds=600.0)
    offline = e2e.env(ASYNCIMG_ENDPOINT="http://127.0.0.1:9")  # nothing listens on port 9
    rows = [{"prompt": f"frame {i}", "output_path": f"out/{i}.png"} for i in range(5)]
    e2e.write_batch("chapter.jsonl", rows)
    ran = e2e.run("asyncimg", "submit", "--batch", "chapter.jsonl", env=offline)
    assert "0 submitted, 5 queued locally, 0 rejected" in ran.stdout, ran

    # A check submits its queue oldest first, one at a time: frame 0 hangs, 1-4 wait.
    e2e.emu.inject("slow", 1, SUBMIT)
    first = e2e.popen("asyncimg", "check")
    try:
        wait_for(lambda: e2e.emu.stats()["faults_fired"].get("slow"), 20, "a hung submit")
        second = e2e.ok("check_async_tasks.py", "--check-once")
        for i in range(1, 5):
            assert f"{i}.png: submitted as" in second.stdout, second
        assert first.poll() is None, "the first check ended before the race could happen"
        e2e.emu.release_slow()
        out, err = first.communicate(timeout=60)
    finally:
        reap(first)
    assert first.returncode == 0 and "Traceback" not in err, (out, err)
    stats = e2e.emu.stats()
    assert stats["tasks_submitted"] == 5, stats
    records = e2e.records()
    assert len(records) == 5 and len({r["task_id"] for r in records}) == 5
    assert {r["status"] for r in records} <= {"submitted", "processing", "completed"}
    assert not (e2e.tasks / ".quarantine").exists()


# -- failure paths ------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["VOLC_ACCESSKEY", "VOLC_SECRETKEY"])
def test_missing_credentials_one_clear_line_and_no_record(e2e: E2E, missing: str) -> None:
    env = e2e.env(**{missing: None})
    for program, args in [
        ("asyncimg", ("submit", "a frame", "-o", "out/a.png")),
        ("gen_image.py", ("a frame", "-o", "out/a.png")),
        ("check_async_tasks.py", ("--check-once",)),
    ]:
        ran = e2e.run(program, *args, env=env)
        assert ran.returncode != 0, ran
        lines = [x for x in ran.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and missing in lines[0], ran
        assert "Traceback" not in ran.stderr
        assert e2e.record_files() == []
    assert e2e.emu.stats()["requests"] == {}


def test_bad_size_is_rejected_with_the_suggestion(e2e: E2E) -> None:
    # Checked before anything is spent: exit 2, one line naming the field, no record.
    ran = e2e.exits(2, "asyncimg", "submit", "a frame", "-o", "out/a.png", "--size", "720x1280")
    assert "720x1280" in ran.stderr and "1440x2560" in ran.stderr, ran
    assert "size" in ran.stderr and e2e.records() == []
    assert e2e.emu.stats()["tasks_submitted"] == 0

    ran = e2e.exits(2, "asyncimg", "submit", "a frame", "-o", "out/b.png", "--size", "big")
    assert "big" in ran.output and "1440x2560" in ran.output, ran


def test_missing_character_image_names_the_path(e2e: E2E) -> None:
    # A relative path, and an absolute one as long as a real project's (it must not be cut).
    deep = e2e.root / "novel" / "chapter_01_the_rainy_night" / "characters" / "lin_xiao_v2.png"
    for i, missing in enumerate(["chars/nobody.png", str(deep)]):
        ran = e2e.exits(
            2, "asyncimg", "submit", "a frame", "-o", f"out/{i}.png", "--character", missing
        )
        assert missing in ran.stderr, ran
        assert "no such file" in ran.stderr
        assert e2e.records() == []
    assert e2e.emu.stats()["tasks_submitted"] == 0


def test_review_failure_ends_failed_with_retry_hint(e2e: E2E) -> None:
    e2e.emu.inject("review_failure", 1, SUBMIT)
    e2e.submit_frames(2)
    # Issue item 13: a monitor that ends with failed frames says so to cron and scripts.
    ran = e2e.exits(1, "check_async_tasks.py", "--monitor", "--interval", "1", timeout=30)
    records = e2e.records()
    [failed] = [r for r in records if r["status"] == "failed"]
    assert [r["status"] for r in records].count("completed") == 1
    assert failed["last_error"]["code"] == 50511
    assert failed["last_error"]["resubmittable"] is True
    assert not (e2e.root / failed["output_path"]).exists()
    # The live report line, then the end-of-monitor summary with the one retry command.
    assert re.search(rf"{failed['filename']}: failed — .*asyncimg retry", ran.stdout), ran
    summary = ran.stdout[ran.stdout.index("1 failed:") :]
    assert failed["task_id"] in summary and failed["output_path"] in summary, ran
    assert "(resubmitting may help)" in summary
    assert "asyncimg retry --failed" in summary


def test_network_trouble_never_fails_a_task(e2e: E2E) -> None:
    e2e.submit_frames(2)
    e2e.emu.wait_idle(2)
    # The client tries each poll 3 times: 6 faults break every poll of the first pass.
    e2e.emu.inject("server_error", 3, RESULT)
    e2e.emu.inject("drop", 3, RESULT)
    ran = e2e.ok("asyncimg", "check", timeout=30)
    assert e2e.emu.stats()["faults_fired"] == {"server_error": 3, "drop": 3}
    statuses = [r["status"] for r in e2e.records()]
    assert "failed" not in statuses and "completed" not in statuses, ran
    assert "temporary errors" in ran.stdout, ran
    assert all(r["last_error"]["retryable"] for r in e2e.records())

    ran = e2e.ok("asyncimg", "check", timeout=30)
    records = e2e.records()
    assert [r["status"] for r in records] == ["completed"] * 2, ran
    assert all(r["last_error"] is None for r in records)


def test_outage_on_submit_is_unconfirmed_then_goes_out_once(e2e: E2E) -> None:
    """A submit the service never answers (connection dropped) is unconfirmed, not failed,
    and the monitor resubmits it once (the default budget)."""
    e2e.emu.inject("drop", 1, SUBMIT)
    ran = e2e.ok("asyncimg", "submit", "a frame", "-o", "out/a.png")
    assert "0 submitted, 0 queued locally, 1 unconfirmed, 0 rejected" in ran.stdout, ran
    [record] = e2e.records()
    assert record["status"] == "unconfirmed" and record["task_id"] is None
    e2e.ok("check_async_tasks.py", "--monitor", "--interval", "1", timeout=30)
    [record] = e2e.records()
    assert record["status"] == "completed" and record["unconfirmed_resubmits"] == 1
    assert (e2e.root / "out" / "a.png").is_file()


def test_a_monitor_whose_frames_wait_for_the_user_ends_with_exit_1_and_advice(
    e2e: E2E,
) -> None:
    e2e.emu.inject("drop", 2, SUBMIT)
    e2e.ok("asyncimg", "submit", "a frame", "-o", "out/a.png")
    ran = e2e.exits(1, "asyncimg", "monitor", "--interval", "1", timeout=30)
    [record] = e2e.records()
    assert record["status"] == "unconfirmed" and record["unconfirmed_resubmits"] == 1
    assert "1 unconfirmed" in ran.stdout and "asyncimg adopt" in ran.stdout, ran
    assert "asyncimg retry" in ran.stdout
    assert e2e.emu.stats()["requests"]["CVSync2AsyncSubmitTask"] == 2


# -- secrets ------------------------------------------------------------------------------


def test_secret_key_never_printed_or_written(e2e: E2E) -> None:
    """Across a whole session, including auth failures, the secret is nowhere."""
    e2e.character()
    e2e.ok("asyncimg", "submit", "frame", "-o", "out/1.png", "--character", "chars/lin.png")
    wrong = e2e.env(VOLC_SECRETKEY=SK[::-1])
    ran = e2e.run("asyncimg", "submit", "frame", "-o", "out/2.png", env=wrong)
    assert ran.returncode == 2 and "SignatureDoesNotMatch" in ran.output, ran
    assert SK[::-1] not in ran.output
    ran = e2e.run("check_async_tasks.py", "--check-once", env=wrong)
    assert SK[::-1] not in ran.output
    e2e.ok("check_async_tasks.py", "--monitor", "--interval", "1", timeout=30)
    outputs = [
        e2e.ok("asyncimg", "list", "--json").stdout,
        e2e.ok("check_async_tasks.py", input="4\n5\n0\n").output,
    ]
    for text in outputs:
        assert_no_secret(text, "list output")
        assert SK[::-1] not in text
    files = [p for p in e2e.root.rglob("*") if p.is_file()]
    assert len(files) >= 4
    for path in files:
        data = path.read_bytes()
        assert SK.encode() not in data and SK[::-1].encode() not in data, path
    # Also not in the process listing's view of argv: only the environment carries it.
    assert subprocess.list2cmdline(e2e.argv_for("asyncimg", "list")).find(SK) == -1
