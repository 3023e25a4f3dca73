"""`asyncimg submit|check|monitor|list|show|retry|clean`, Unicode and file permissions."""

from __future__ import annotations

import csv
import hashlib
import json
import stat
import time
from pathlib import Path
from typing import Any

from PIL import Image

from asyncimg.store.record import record_from_json

from .conftest import E2E, SUBMIT


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_private(e2e: E2E, tasks_dir: Path) -> None:
    assert stat.S_IMODE(tasks_dir.stat().st_mode) == 0o700, oct(tasks_dir.stat().st_mode)
    files = e2e.record_files(tasks_dir)
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (path, oct(path.stat().st_mode))


def test_submit_one_frame_with_character_style_and_size(e2e: E2E) -> None:
    ref = e2e.character()
    ran = e2e.ok(
        "asyncimg",
        "submit",
        "少女站在樱花树下，回眸一笑",
        "-o",
        "frames/001.png",
        "--character",
        "chars/lin.png",
        "--style",
        "manga",
        "--size",
        "1440x2560",
    )
    [record] = e2e.records()
    assert f"001.png: submitted as {record['task_id']}" in ran.stdout, ran
    assert "1 submitted, 0 queued locally, 0 rejected" in ran.stdout
    assert record["status"] == "submitted"
    assert record["character_images"] == ["chars/lin.png"]
    assert record["style"] == "manga"
    assert record["full_prompt"].startswith("少女站在樱花树下，回眸一笑")
    assert "漫画" in record["full_prompt"]
    assert record["params"]["width"] == 1440 and record["params"]["height"] == 2560
    # Reference bytes are sent, never stored.
    assert "binary_data_base64" not in json.dumps(record)
    assert ref.is_file()

    ran = e2e.ok("asyncimg", "monitor", "--interval", "1", timeout=30)
    assert "1 completed" in ran.stdout, ran
    with Image.open(e2e.root / "frames" / "001.png") as img:
        assert img.size == (1440, 2560)
    [record] = e2e.records()
    assert record["status"] == "completed"
    assert record["results"][0]["width"] == 1440


def test_submit_batch_jsonl(e2e: E2E) -> None:
    e2e.character("lin.png")
    e2e.character("chen.png", (50, 90, 170))
    batch = e2e.write_batch(
        "chapter01.jsonl",
        [
            {
                "prompt": "雨夜的小巷，林晓撑着红伞回头张望",
                "output_path": "frames/001.png",
                "character_images": ["chars/lin.png"],
                "style": "manga",
            },
            {
                "prompt": "陈默在旧书店里翻开日记",
                "output_path": "frames/002.png",
                "character_images": ["chars/chen.png", "chars/lin.png"],
                "style": "watercolor",
                "size": "1440x2560",
                "scale": 0.5,
                "force_single": True,
            },
            {"prompt": "a quiet harbour", "output_path": "frames/003.png"},
        ],
    )
    ran = e2e.ok("asyncimg", "submit", "--batch", batch.name)
    assert "3 submitted, 0 queued locally, 0 rejected" in ran.stdout, ran
    records = e2e.by_output()
    assert set(records) == {"frames/001.png", "frames/002.png", "frames/003.png"}
    second = records["frames/002.png"]
    assert second["character_images"] == ["chars/chen.png", "chars/lin.png"]
    assert second["style"] == "watercolor"
    assert second["params"] == {"width": 1440, "height": 2560, "scale": 0.5, "force_single": True}
    assert len({r["task_id"] for r in records.values()}) == 3
    assert e2e.emu.stats()["tasks_submitted"] == 3


def test_submit_batch_csv(e2e: E2E) -> None:
    e2e.character("lin.png")
    e2e.character("chen.png", (50, 90, 170))
    path = e2e.root / "chapter02.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "output_path", "character_images", "style", "scale"])
        writer.writerow(["林晓和陈默在桥上相遇", "frames/010.png", "chars/lin.png;chars/chen.png",
                         "漫画", "0.7"])  # fmt: skip
        writer.writerow(["an empty station at dawn", "frames/011.png", "", "", ""])
    ran = e2e.ok("asyncimg", "submit", "--batch", path.name)
    assert "2 submitted, 0 queued locally, 0 rejected" in ran.stdout, ran
    records = e2e.by_output()
    first = records["frames/010.png"]
    assert first["prompt"] == "林晓和陈默在桥上相遇"
    assert first["character_images"] == ["chars/lin.png", "chars/chen.png"]
    assert first["params"]["scale"] == 0.7  # a number, not the string "0.7"
    assert "scale" not in records["frames/011.png"]["params"]

    e2e.emu.wait_idle(2)
    ran = e2e.ok("asyncimg", "check")
    assert "2 completed" in ran.stdout, ran
    assert {r["status"] for r in e2e.records()} == {"completed"}
    assert (e2e.root / "frames" / "010.png").is_file()
    assert (e2e.root / "frames" / "011.png").is_file()


def _fail_one_of_three(e2e: E2E) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Three frames, the first rejected by output review; monitored to the end."""
    e2e.emu.inject("review_failure", 1, SUBMIT)
    e2e.submit_frames(3)
    e2e.exits(1, "asyncimg", "monitor", "--interval", "1", timeout=30)  # 1: a frame failed
    records = e2e.records()
    failed = [r for r in records if r["status"] == "failed"]
    done = [r for r in records if r["status"] == "completed"]
    assert len(failed) == 1 and len(done) == 2, records
    return failed[0], done


def test_list_show_and_json(e2e: E2E) -> None:
    failed, done = _fail_one_of_three(e2e)

    ran = e2e.ok("asyncimg", "list")
    assert "3 tasks" in ran.stdout
    for record in [failed, *done]:
        line = next(x for x in ran.stdout.splitlines() if record["task_id"] in x)
        assert record["status"] in line and record["output_path"] in line

    ran = e2e.ok("asyncimg", "list", "--status", "failed")
    assert failed["task_id"] in ran.stdout and "1 tasks" in ran.stdout, ran
    assert all(r["task_id"] not in ran.stdout for r in done)

    ran = e2e.ok("asyncimg", "list", "--json")
    items = json.loads(ran.stdout)
    assert sorted(i["task_id"] for i in items) == sorted(r["task_id"] for r in [failed, *done])
    for item in items:
        record_from_json(json.dumps(item))  # every item is a valid record

    ran = e2e.ok("asyncimg", "show", failed["task_id"], "--json")
    shown = json.loads(ran.stdout)
    assert shown["task_id"] == failed["task_id"] and shown["status"] == "failed"
    assert shown["last_error"]["resubmittable"] is True

    ran = e2e.asyncimg("show", "no-such-task")
    assert ran.returncode == 1 and "no-such-task" in ran.stderr, ran
    assert "Traceback" not in ran.stderr


def test_retry_by_id_and_failed_keeps_history(e2e: E2E) -> None:
    e2e.emu.inject("review_failure", 2, SUBMIT)
    e2e.submit_frames(3)
    ran = e2e.exits(1, "asyncimg", "monitor", "--interval", "1", timeout=30)
    first, second = (r for r in e2e.records() if r["status"] == "failed")
    assert "asyncimg retry --failed" in ran.stdout, ran

    ran = e2e.ok("asyncimg", "retry", first["task_id"])
    assert "1 submitted, 0 queued locally, 0 rejected" in ran.stdout, ran
    again = e2e.by_output()[first["output_path"]]
    assert again["status"] == "submitted" and again["task_id"] != first["task_id"]
    assert [a["task_id"] for a in again["history"]] == [first["task_id"]]
    assert again["history"][0]["status"] == "failed"
    assert again["history"][0]["last_error"]["code"] == first["last_error"]["code"]
    assert again["attempts"] == 2
    # The old file is gone: one record per frame.
    assert not (e2e.tasks / f"{first['task_id']}.json").exists()
    assert (e2e.tasks / f"{again['task_id']}.json").is_file()
    assert e2e.by_output()[second["output_path"]]["status"] == "failed"  # not retried

    ran = e2e.ok("asyncimg", "retry", "--failed")
    assert "1 submitted" in ran.stdout, ran
    redo = e2e.by_output()[second["output_path"]]
    assert [a["task_id"] for a in redo["history"]] == [second["task_id"]]

    e2e.ok("asyncimg", "monitor", "--interval", "1", timeout=30)
    records = e2e.records()
    assert [r["status"] for r in records] == ["completed"] * 3
    assert len(records) == 3
    for r in records:
        assert (e2e.root / r["output_path"]).is_file()
    # `show` finds a record by an earlier task id too.
    shown = json.loads(e2e.ok("asyncimg", "show", first["task_id"], "--json").stdout)
    assert shown["task_id"] == again["task_id"]

    ran = e2e.ok("asyncimg", "retry", "--failed")
    assert "no failed tasks to retry" in ran.stdout


def _age_completed(path: Path, days: float) -> None:
    """Pretend the record in `path` completed `days` ago (as if written back then)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    then = time.time() - days * 86400
    data["completed_time"] = data["updated_at"] = then
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    path.chmod(0o600)


def test_clean_completed_older_than_and_archive(e2e: E2E) -> None:
    failed, done = _fail_one_of_three(e2e)
    old, recent = done
    images = {r["output_path"]: sha(e2e.root / r["output_path"]) for r in done}
    _age_completed(e2e.tasks / f"{old['task_id']}.json", days=10)

    ran = e2e.ok("asyncimg", "clean", "--completed", "--older-than", "7d")
    assert "1 completed records deleted" in ran.stdout, ran
    left = {r["task_id"] for r in e2e.records()}
    assert left == {recent["task_id"], failed["task_id"]}

    ran = e2e.ok("asyncimg", "clean", "--completed", "--archive", "archive/2024")
    assert "1 completed records archived to archive/2024" in ran.stdout, ran
    assert [r["task_id"] for r in e2e.records()] == [failed["task_id"]]
    archived = e2e.records("archive/2024")
    assert [r["task_id"] for r in archived] == [recent["task_id"]]
    assert stat.S_IMODE((e2e.root / "archive" / "2024").stat().st_mode) == 0o700

    # Images are never touched.
    assert images == {p: sha(e2e.root / p) for p in images}

    e2e.ok("asyncimg", "clean", "--completed")
    assert [r["status"] for r in e2e.records()] == ["failed"]  # failed records are kept
    assert images == {p: sha(e2e.root / p) for p in images}


# -- Unicode ------------------------------------------------------------------------------

PROMPTS = ["少女站在樱花树下，回眸一笑 🌸✨", "「雨夜」の小巷 — 林晓撑着红伞 ☂️ 👧🏻"]


def test_unicode_prompts_round_trip_unescaped(e2e: E2E) -> None:
    e2e.ok("asyncimg", "submit", PROMPTS[0], "-o", "frames/樱花.png")
    batch = e2e.write_batch(
        "chapter.jsonl", [{"prompt": PROMPTS[1], "output_path": "frames/2.png"}]
    )
    e2e.ok("asyncimg", "submit", "--batch", batch.name)

    def check_files() -> None:
        files = e2e.record_files()
        assert len(files) == 2
        for path in files:
            raw = path.read_bytes()
            assert b"\\u" not in raw, f"{path} has \\u escapes"
            data = json.loads(raw.decode("utf-8"))
            assert data["prompt"] in PROMPTS
            assert data["prompt"].encode("utf-8") in raw
        assert sorted(r["prompt"] for r in e2e.records()) == sorted(PROMPTS)

    check_files()
    assert e2e.by_output()["frames/樱花.png"]["filename"] == "樱花.png"

    e2e.ok("asyncimg", "monitor", "--interval", "1", timeout=30)
    check_files()  # rewritten as completed, still unescaped
    assert (e2e.root / "frames" / "樱花.png").is_file()

    ran = e2e.ok("asyncimg", "list", "--json")
    assert all(p in ran.stdout for p in PROMPTS), ran.stdout
    assert sorted(i["prompt"] for i in json.loads(ran.stdout)) == sorted(PROMPTS)


# -- permissions --------------------------------------------------------------------------


def test_tasks_dir_and_records_are_private(e2e: E2E) -> None:
    """Even with umask 000 (which would leave new files world-writable)."""
    umask = 0
    e2e.ok("asyncimg", "submit", "a private frame", "-o", "out/p.png", umask=umask)
    assert_private(e2e, e2e.tasks)
    e2e.ok("check_async_tasks.py", "--monitor", "--interval", "1", umask=umask, timeout=30)
    assert [r["status"] for r in e2e.records()] == ["completed"]
    assert_private(e2e, e2e.tasks)
    e2e.ok("gen_image.py", "another", "-o", "out/q.png", "--tasks-dir", "custom", umask=umask)
    assert_private(e2e, e2e.root / "custom")
