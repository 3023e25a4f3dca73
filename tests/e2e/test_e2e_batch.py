"""`asyncimg submit --batch`: every line checked before anything is spent, and reruns that
bill nothing twice (issue 6, items 4 and 5)."""

from __future__ import annotations

import csv
import json
import signal
from typing import Any

from .conftest import E2E, SUBMIT, reap, wait_for


def frames(count: int, name: str = "frame") -> list[dict[str, Any]]:
    return [
        {"prompt": f"{name} {i}: a lighthouse at dusk", "output_path": f"out/{name}_{i:02d}.png"}
        for i in range(1, count + 1)
    ]


def problem_lines(stderr: str) -> list[str]:
    return [x for x in stderr.splitlines() if x.strip() and not x.startswith("asyncimg: ")]


# -- reruns -----------------------------------------------------------------------------------


def test_running_the_same_batch_twice_bills_each_frame_once(e2e: E2E) -> None:
    e2e.write_batch("chapter.jsonl", frames(3))
    first = e2e.ok("asyncimg", "submit", "--batch", "chapter.jsonl")
    assert "3 submitted, 0 queued locally, 0 rejected" in first.stdout, first
    ids = {r["output_path"]: r["task_id"] for r in e2e.records()}

    again = e2e.ok("asyncimg", "submit", "--batch", "chapter.jsonl")
    assert "0 submitted, 0 queued locally, 0 rejected, 3 skipped" in again.stdout, again
    for path, task_id in ids.items():
        line = f"{path}: skipped — already submitted as task {task_id} (use --force"
        assert line in again.stdout, again
    assert e2e.emu.stats()["tasks_submitted"] == 3
    assert len(e2e.records()) == 3

    e2e.ok("asyncimg", "monitor", "--interval", "1", timeout=30)
    done = e2e.ok("asyncimg", "submit", "--batch", "chapter.jsonl")
    assert "3 skipped" in done.stdout and done.stdout.count("already done") == 3, done

    # A completed frame whose image was deleted is made again, as a new record.
    (e2e.root / "out" / "frame_02.png").unlink()
    redo = e2e.ok("asyncimg", "submit", "--batch", "chapter.jsonl")
    assert "1 submitted, 0 queued locally, 0 rejected, 2 skipped" in redo.stdout, redo
    assert e2e.emu.stats()["tasks_submitted"] == 4
    statuses = sorted(r["status"] for r in e2e.records() if r["output_path"] == "out/frame_02.png")
    assert statuses == ["completed", "submitted"]


def test_force_submits_a_frame_again_as_a_separate_record(e2e: E2E) -> None:
    e2e.write_batch("chapter.jsonl", frames(2))
    e2e.ok("asyncimg", "submit", "--batch", "chapter.jsonl")
    ran = e2e.ok("asyncimg", "submit", "--batch", "chapter.jsonl", "--force")
    assert "2 submitted, 0 queued locally, 0 rejected" in ran.stdout, ran
    assert "skipped" not in ran.stdout
    assert e2e.emu.stats()["tasks_submitted"] == 4
    assert len(e2e.records()) == 4


def test_rerun_after_a_killed_submit_bills_nothing_new(make_e2e: Any) -> None:
    """Killed while its submits hang: every record stays pending (some mid-request); running
    the batch again sends nothing (the checker settles them, within the unconfirmed budget).
    The hung submits are held until after the kill (`release_slow`): none is answered before."""
    e2e: E2E = make_e2e(slow_seconds=600.0)
    e2e.write_batch("chapter.jsonl", frames(6))
    e2e.emu.inject("slow", 100, SUBMIT)
    proc = e2e.popen("asyncimg", "submit", "--batch", "chapter.jsonl")
    try:
        wait_for(lambda: e2e.emu.stats()["faults_fired"].get("slow"), 20, "a hanging submit")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=15)
    finally:
        reap(proc)
    e2e.emu.settle()  # what the child sent before it died reaches the emulator (and is held)
    e2e.emu.release_slow()
    # Every request that reached the emulator becomes a task once its delay is over.
    wait_for(
        lambda: (s := e2e.emu.stats())["tasks_submitted"] == s["requests"][SUBMIT],
        20,
        "the hung submits to finish on the emulator",
    )
    records = e2e.records()
    assert len(records) == 6 and {r["status"] for r in records} == {"pending"}, records
    before = e2e.emu.stats()

    ran = e2e.ok("asyncimg", "submit", "--batch", "chapter.jsonl")
    assert "0 submitted, 0 queued locally, 0 rejected, 6 skipped" in ran.stdout, ran
    assert ran.stdout.count("already queued locally") == 6, ran
    after = e2e.emu.stats()
    assert after["requests"].get(SUBMIT, 0) == before["requests"][SUBMIT]
    assert after["tasks_submitted"] == before["tasks_submitted"]
    assert len(e2e.records()) == 6


def test_a_failed_frame_fixed_in_the_batch_is_replaced_on_rerun(e2e: E2E) -> None:
    e2e.emu.inject("review_failure", 1, SUBMIT)
    rows = frames(3)
    e2e.write_batch("chapter.jsonl", rows)
    e2e.ok("asyncimg", "submit", "--batch", "chapter.jsonl")
    e2e.run("asyncimg", "monitor", "--interval", "1", timeout=30)
    [failed] = [r for r in e2e.records() if r["status"] == "failed"]
    assert e2e.emu.stats()["tasks_submitted"] == 3

    fixed = [dict(r) for r in rows]
    for row in fixed:
        if row["output_path"] == failed["output_path"]:
            row["prompt"] = "雨夜的小巷，林晓撑着红伞回头张望"
    e2e.write_batch("chapter.jsonl", fixed)
    ran = e2e.ok("asyncimg", "submit", "--batch", "chapter.jsonl")
    assert "1 submitted, 0 queued locally, 0 rejected, 2 skipped" in ran.stdout, ran
    assert f"(replaces failed task {failed['task_id']})" in ran.stdout, ran
    assert e2e.emu.stats()["tasks_submitted"] == 4  # only the fixed frame is billed

    mine = [r for r in e2e.records() if r["output_path"] == failed["output_path"]]
    assert len(mine) == 1, mine
    [record] = mine
    assert record["local_id"] == failed["local_id"]
    assert record["status"] == "submitted" and record["task_id"] != failed["task_id"]
    assert record["prompt"] == "雨夜的小巷，林晓撑着红伞回头张望"
    assert [(h["task_id"], h["status"]) for h in record["history"]] == [
        (failed["task_id"], "failed")
    ]
    raw = (e2e.tasks / f"{record['task_id']}.json").read_text("utf-8")
    assert "雨夜的小巷" in raw  # written as typed, not \\u escapes
    assert not (e2e.tasks / f"{failed['task_id']}.json").exists()

    e2e.ok("asyncimg", "monitor", "--interval", "1", timeout=30)
    assert {r["status"] for r in e2e.records()} == {"completed"}
    assert len(e2e.records()) == 3


# -- checking before spending -----------------------------------------------------------------


def test_two_lines_with_one_output_exit_2_and_nothing_submitted(e2e: E2E) -> None:
    rows = frames(3)
    rows[2]["output_path"] = "out/../out/frame_01.png"
    e2e.write_batch("chapter.jsonl", rows)
    ran = e2e.asyncimg("submit", "--batch", "chapter.jsonl")
    assert ran.returncode == 2, ran
    assert problem_lines(ran.stderr) == [
        "chapter.jsonl:3: output_path: same output as line 1 (out/../out/frame_01.png)"
    ], ran
    assert "nothing was submitted" in ran.stderr
    assert e2e.emu.stats()["requests"] == {}
    assert e2e.record_files() == []


def test_every_problem_of_a_batch_is_printed_at_once_and_nothing_is_spent(e2e: E2E) -> None:
    e2e.character("lin.png")
    (e2e.root / "frames" / "a_folder.png").mkdir(parents=True)
    rows: list[dict[str, Any]] = [
        {"prompt": "a good frame", "output_path": "frames/001.png"},
        {"prompt": "too small", "output_path": "frames/002.png", "size": "720x1280"},
        {
            "prompt": "who?",
            "output_path": "frames/003.png",
            "character_images": ["chars/lin.png", "chars/nobody.png"],
        },
        {"prompt": "typo", "output_path": "frames/004.png", "sise": "1440x2560"},
        {"prompt": "a list", "output_path": "frames/005.png", "size": [1440, 2560]},
        {"prompt": "a folder", "output_path": "frames/a_folder.png"},
    ]
    e2e.write_batch("chapter01.jsonl", rows)
    ran = e2e.asyncimg("submit", "--batch", "chapter01.jsonl")
    assert ran.returncode == 2, ran
    assert "Traceback" not in ran.stderr
    assert problem_lines(ran.stderr) == [
        "chapter01.jsonl:2: size: '720x1280': area 921600 px² is below the minimum 1048576 "
        "(1024²); try 1440x2560",
        "chapter01.jsonl:3: character_images[1]: 'chars/nobody.png': no such file",
        "chapter01.jsonl:4: sise: unknown field; did you mean 'size'? (known: aigc_meta, "
        "callback_url, character_images, force_single, height, id, logo_info, max_ratio, "
        "min_ratio, output, output_path, prompt, req_key, return_url, scale, size, style, width)",
        'chapter01.jsonl:5: size: [1440, 2560] is a list; write "size": "1440x2560"',
        "chapter01.jsonl:6: output_path: frames/a_folder.png is a folder; name the image file "
        "in it, e.g. frames/a_folder.png/001.png",
    ], ran
    assert "5 problems in 5 of 6 frames; nothing was submitted or written" in ran.stderr
    assert ran.stdout == ""
    assert e2e.emu.stats()["tasks_submitted"] == 0
    assert e2e.emu.stats()["requests"] == {}
    assert e2e.record_files() == []


def test_skip_invalid_submits_the_valid_frames_and_exits_1(e2e: E2E) -> None:
    rows = frames(3)
    rows[1]["size"] = "720x1280"
    e2e.write_batch("chapter.jsonl", rows)
    ran = e2e.asyncimg("submit", "--batch", "chapter.jsonl", "--skip-invalid")
    assert ran.returncode == 1, ran
    assert problem_lines(ran.stderr)[0].startswith("chapter.jsonl:2: size: '720x1280'"), ran
    assert "2 submitted, 0 queued locally, 1 rejected" in ran.stdout, ran
    assert sorted(e2e.by_output()) == ["out/frame_01.png", "out/frame_03.png"]
    assert e2e.emu.stats()["tasks_submitted"] == 2


def test_dry_run_prints_the_plan_and_submits_and_writes_nothing(e2e: E2E) -> None:
    e2e.character("lin.png")
    e2e.character("chen.png")
    rows: list[dict[str, Any]] = [
        {
            "prompt": "雨夜的小巷",
            "output_path": "frames/001.png",
            "character_images": ["chars/lin.png", "chars/chen.png"],
            "size": "1440x2560",
        },
        {"prompt": "a harbour", "output_path": "frames/002.png", "force_single": False},
        {"prompt": "a station", "output_path": "frames/003.png", "req_key": "jimeng_t2i_v31"},
    ]
    e2e.write_batch("chapter.jsonl", rows)
    ran = e2e.ok("asyncimg", "submit", "--batch", "chapter.jsonl", "--dry-run")
    assert ran.stdout.splitlines() == [
        "chapter.jsonl:1  frames/001.png  jimeng_t2i_v40  1440x2560  2 characters  1 image",
        # Issue 10: with no size, v40 picks the ratio for its default area (research S2).
        "chapter.jsonl:2  frames/002.png  jimeng_t2i_v40  "
        "area 4194304 px² (the model picks the ratio)  0 characters  up to 15 images",
        "chapter.jsonl:3  frames/003.png  jimeng_t2i_v31  1328x1328 (model default)  "
        "0 characters  1 image",
        "dry run: 3 to submit, 0 skipped; images billed: 3 to 17; nothing was submitted or written",
    ], ran
    assert e2e.emu.stats()["requests"] == {}
    assert not e2e.tasks.exists()
    assert not (e2e.root / "frames").exists()

    # With problems: the plan of the good frames, the problems, exit 2, still nothing sent.
    rows[2]["size"] = "10x10"
    e2e.write_batch("chapter.jsonl", rows)
    ran = e2e.asyncimg("submit", "--batch", "chapter.jsonl", "--dry-run")
    assert ran.returncode == 2, ran
    assert problem_lines(ran.stderr)[0].startswith("chapter.jsonl:3: size: '10x10'"), ran
    assert "dry run: 2 to submit, 0 skipped, 1 with problems" in ran.stdout
    assert e2e.emu.stats()["requests"] == {}
    assert not e2e.tasks.exists()


def test_dry_run_shows_what_a_rerun_would_skip(e2e: E2E) -> None:
    e2e.write_batch("chapter.jsonl", frames(2))
    e2e.ok("asyncimg", "submit", "--batch", "chapter.jsonl")
    e2e.write_batch("chapter.jsonl", frames(3))
    listing = sorted(p.name for p in e2e.tasks.iterdir())
    ran = e2e.ok("asyncimg", "submit", "--batch", "chapter.jsonl", "--dry-run")
    assert ran.stdout.count("skipped — already submitted as task") == 2, ran
    assert "dry run: 1 to submit, 2 skipped; images billed: 1;" in ran.stdout, ran
    assert e2e.emu.stats()["tasks_submitted"] == 2
    assert sorted(p.name for p in e2e.tasks.iterdir()) == listing


def test_single_submit_is_checked_the_same_way(e2e: E2E) -> None:
    ran = e2e.asyncimg(
        "submit", "a frame", "-o", "out/a.png", "--size", "720x1280", "--character", "nope.png"
    )
    assert ran.returncode == 2, ran
    assert problem_lines(ran.stderr) == [
        "command line: character_images[0]: 'nope.png': no such file",
        "command line: size: '720x1280': area 921600 px² is below the minimum 1048576 "
        "(1024²); try 1440x2560",
    ], ran
    assert e2e.emu.stats()["requests"] == {}
    assert e2e.record_files() == []


# -- reading the file -------------------------------------------------------------------------


def test_u2028_inside_a_jsonl_prompt_is_kept(e2e: E2E) -> None:
    prompt = "第一行\u2028第二行\u2029 and a\x85next"
    path = e2e.write_batch("chapter.jsonl", [{"prompt": prompt, "output_path": "out/a.png"}])
    assert "\u2028" in path.read_text("utf-8")  # raw in the file, not escaped
    ran = e2e.ok("asyncimg", "submit", "--batch", "chapter.jsonl")
    assert "1 submitted" in ran.stdout, ran
    [record] = e2e.records()
    assert record["prompt"] == prompt


def test_csv_multiline_cell_is_kept_and_lines_are_numbered_where_they_start(e2e: E2E) -> None:
    path = e2e.root / "chapter.csv"
    prompt = "林晓撑着红伞\n回头张望，\r\n雨夜\u2028小巷"
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "output_path", "size"])
        writer.writerow([prompt, "frames/001.png", "1440x2560"])
        writer.writerow(["an empty station", "frames/002.png", ""])
    ran = e2e.ok("asyncimg", "submit", "--batch", "chapter.csv")
    assert "2 submitted" in ran.stdout, ran
    assert e2e.by_output()["frames/001.png"]["prompt"] == prompt

    # Line 1 is the header, the first row spans lines 2-4, the second is line 5: the
    # third row starts on line 6.
    with path.open("a", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerow(["too small", "frames/003.png", "720x1280"])
    ran = e2e.asyncimg("submit", "--batch", "chapter.csv", "--dry-run")
    assert ran.returncode == 2, ran
    [problem] = problem_lines(ran.stderr)
    assert problem.startswith("chapter.csv:6: size: '720x1280'"), ran
    assert "chapter.csv:2  frames/001.png  skipped — already submitted" in ran.stdout, ran


def test_a_line_that_is_not_json_is_reported_with_the_others(e2e: E2E) -> None:
    path = e2e.root / "chapter.jsonl"
    good = json.dumps({"prompt": "a frame", "output_path": "out/1.png"})
    path.write_text(f'{good}\n{{"prompt": "oops",}}\n[1, 2]\n\n# a comment\n', encoding="utf-8")
    ran = e2e.asyncimg("submit", "--batch", "chapter.jsonl")
    assert ran.returncode == 2, ran
    assert [x.split(": ")[0:2] for x in problem_lines(ran.stderr)] == [
        ["chapter.jsonl:2", "(line)"],
        ["chapter.jsonl:3", "(line)"],
    ], ran
    assert e2e.emu.stats()["requests"] == {}
    assert e2e.record_files() == []
