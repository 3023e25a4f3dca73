"""The guide's commands, exactly as the (Chinese) guide writes them, as real subprocesses."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from .chapter import Clock
from .conftest import E2E, RESULT, reap, wait_for

GUIDE_FIELDS = (
    "task_id",
    "output_path",
    "filename",
    "prompt",
    "full_prompt",
    "character_images",
    "style",
    "submit_time",
    "status",
)


def assert_image(path: Path) -> None:
    assert path.is_file(), f"{path} was not downloaded"
    with Image.open(path) as img:
        img.verify()


def test_gen_image_script_then_check_once(e2e: E2E) -> None:
    """`python gen_image.py PROMPT -o OUT` records the task in the guide's shape;
    `python check_async_tasks.py --check-once` downloads it and marks it completed."""
    ran = e2e.ok("gen_image.py", "雨夜的小巷，林晓撑着红伞", "-o", "frames/001.png")
    assert "1 submitted, 0 queued locally, 0 rejected" in ran.stdout, ran

    [record] = e2e.records()
    assert list(record)[: len(GUIDE_FIELDS)] == list(GUIDE_FIELDS)
    assert record["status"] == "submitted"
    assert record["output_path"] == "frames/001.png" and record["filename"] == "001.png"
    assert record["prompt"] == "雨夜的小巷，林晓撑着红伞"
    assert isinstance(record["submit_time"], float)
    assert (e2e.tasks / f"{record['task_id']}.json").is_file()
    assert not (e2e.root / "frames" / "001.png").exists()

    e2e.emu.wait_idle(1)
    ran = e2e.ok("check_async_tasks.py", "--check-once")
    assert "001.png: completed" in ran.stdout, ran
    assert_image(e2e.root / "frames" / "001.png")
    [record] = e2e.records()
    assert record["status"] == "completed"
    # Where the file really is: the submitter's folder, whatever folder the check ran in.
    assert record["results"][0]["path"] == str(e2e.root / "frames" / "001.png")


def test_check_once_before_the_images_are_ready(make_e2e: Callable[..., E2E]) -> None:
    """A check while the service is still generating leaves the tasks unfinished."""
    # Tasks far longer than any loaded machine takes to start the check.
    e2e = make_e2e(gen_seconds=(600.0, 600.0))
    e2e.submit_frames(2)
    ran = e2e.ok("check_async_tasks.py", "--check-once")
    statuses = sorted(r["status"] for r in e2e.records())
    assert statuses in (["submitted"] * 2, ["processing"] * 2, ["processing", "submitted"]), ran
    assert not list((e2e.root / "out").glob("*.png"))


def test_check_once_custom_tasks_dir(e2e: E2E) -> None:
    e2e.submit_frames(2, "--tasks-dir", "custom_tasks")
    assert len(e2e.records("custom_tasks")) == 2
    e2e.emu.wait_idle(2)
    ran = e2e.ok("check_async_tasks.py", "--check-once", "--tasks-dir", "custom_tasks")
    assert "2 completed" in ran.stdout, ran
    assert [r["status"] for r in e2e.records("custom_tasks")] == ["completed"] * 2
    assert_image(e2e.root / "out" / "frame_01.png")
    assert_image(e2e.root / "out" / "frame_02.png")
    assert not e2e.tasks.exists(), "the default async_tasks/ was used despite --tasks-dir"


def test_monitor_with_default_interval_stops_by_itself(e2e: E2E) -> None:
    """`--monitor` (every 30 s) exits as soon as a pass finds nothing unfinished."""
    e2e.submit_frames(3)
    e2e.emu.wait_idle(3)
    # Under the 30 s interval: it must not sleep before noticing it is done (with room for
    # a slow start on a loaded machine; one interval's sleep would still overrun it).
    ran = e2e.ok("check_async_tasks.py", "--monitor", timeout=29)
    assert "3 completed" in ran.stdout, ran
    assert [r["status"] for r in e2e.records()] == ["completed"] * 3
    for i in (1, 2, 3):
        assert_image(e2e.root / "out" / f"frame_{i:02d}.png")


def test_monitor_with_interval_polls_until_done(make_e2e: Callable[..., E2E]) -> None:
    """`--monitor --interval N`: the scheduler polls each task until it is done (N is the
    longest wait between two polls of a task), then every image is on disk."""
    # The emulator's clock moves only when the test says: the images are ready once every
    # task was polled and found unfinished, however late the monitor's first pass comes.
    clock = Clock()
    e2e = make_e2e(clock=clock, gen_seconds=(5.0, 5.0))
    e2e.submit_frames(3)
    proc = e2e.popen("check_async_tasks.py", "--monitor", "--interval", "1")
    try:
        wait_for(lambda: e2e.emu.stats()["requests"].get(RESULT, 0) >= 3, 60, "a first pass")
        assert e2e.emu.stats()["tasks_done"] == 0
        clock.advance(10)
        out, err = proc.communicate(timeout=60)
    finally:
        reap(proc)
    assert proc.returncode == 0 and "Traceback" not in err, (out, err)
    assert [r["status"] for r in e2e.records()] == ["completed"] * 3
    for i in (1, 2, 3):
        assert_image(e2e.root / "out" / f"frame_{i:02d}.png")
    assert out.count("progress:") >= 2, out
    assert e2e.emu.stats()["requests"][RESULT] >= 6  # each task: unfinished, then done


# -- the interactive menu, driven through stdin ---------------------------------------------


def test_menu_1_checks_once(e2e: E2E) -> None:
    e2e.submit_frames(2)
    e2e.emu.wait_idle(2)
    ran = e2e.ok("check_async_tasks.py", input="1\n0\n", timeout=30)
    assert "1) check all tasks once" in ran.stdout
    assert [r["status"] for r in e2e.records()] == ["completed"] * 2, ran
    assert_image(e2e.root / "out" / "frame_01.png")
    assert_image(e2e.root / "out" / "frame_02.png")


def test_menu_4_lists_without_touching_anything(e2e: E2E) -> None:
    e2e.submit_frames(2)
    before = {p.name: p.read_bytes() for p in e2e.record_files()}
    polls = e2e.emu.stats()["requests"].get(RESULT, 0)
    ran = e2e.ok("check_async_tasks.py", input="4\n0\n", timeout=30)
    for record in e2e.records():
        line = next(x for x in ran.stdout.splitlines() if record["task_id"] in x)
        assert "submitted" in line and record["output_path"] in line, ran
    assert {p.name: p.read_bytes() for p in e2e.record_files()} == before
    assert e2e.emu.stats()["requests"].get(RESULT, 0) == polls, "listing polled the API"


def test_menu_3_monitors_with_the_interval_typed_in(make_e2e: Callable[..., E2E]) -> None:
    """The typed interval is the longest wait between two polls of a task: at 1 s no gap
    reaches 4 s, where the default 30 s would let the scheduler's doubling waits (1, 2, 4,
    8 ... s) pass it before the sixth poll."""
    clock = Clock()  # the tasks finish only when the test moves the emulator's clock
    e2e = make_e2e(clock=clock, gen_seconds=(5.0, 5.0))
    e2e.submit_frames(2)
    proc = e2e.popen("check_async_tasks.py", input="3\n1\n0\n")
    try:
        polled = wait_for(
            lambda: (
                times
                if len(times := e2e.emu.stats()["polled_at_by_task"]) == 2
                and all(len(t) >= 6 for t in times.values())
                else None
            ),
            60,
            "six polls of each task",
        )
        clock.advance(10)
        out, err = proc.communicate(timeout=60)
    finally:
        reap(proc)
    for task_id, times in polled.items():
        gaps = [later - earlier for earlier, later in itertools.pairwise(times[:6])]
        assert max(gaps) < 4.0, (task_id, gaps)
    assert proc.returncode == 0 and "Traceback" not in err, (out, err)
    assert [r["status"] for r in e2e.records()] == ["completed"] * 2, out
    assert_image(e2e.root / "out" / "frame_01.png")


def test_menu_eof_quits_cleanly(e2e: E2E) -> None:
    e2e.submit_frames(1)
    before = {p.name: p.read_bytes() for p in e2e.record_files()}
    polls = e2e.emu.stats()["requests"].get(RESULT, 0)
    ran = e2e.ok("check_async_tasks.py", input="", timeout=30)
    assert "0) quit" in ran.stdout
    assert {p.name: p.read_bytes() for p in e2e.record_files()} == before
    assert e2e.emu.stats()["requests"].get(RESULT, 0) == polls


def test_menu_rejects_a_bad_interval_and_unknown_choice(e2e: E2E) -> None:
    ran = e2e.ok("check_async_tasks.py", input="3\nsoon\n9\n0\n", timeout=30)
    assert "'soon' is not a number of seconds" in ran.stdout, ran
    assert "unknown choice '9'" in ran.stdout, ran


# -- test_async_image.py ----------------------------------------------------------------------


def test_test_async_image_against_the_configured_api(e2e: E2E) -> None:
    ran = e2e.ok("test_async_image.py", timeout=60)
    assert "3/3 tasks submitted" in ran.stdout, ran
    records = e2e.records()
    assert len(records) == 3 and {r["status"] for r in records} == {"submitted"}
    assert e2e.emu.stats()["tasks_submitted"] == 3
    for record in records:
        assert record["character_images"], record
        for ref in record["character_images"]:
            assert (e2e.root / ref).is_file()
    e2e.ok("check_async_tasks.py", "--monitor", "--interval", "1", timeout=30)
    for record in e2e.records():
        assert record["status"] == "completed"
        assert_image(e2e.root / record["output_path"])


def test_test_async_image_with_embedded_emulator(e2e: E2E) -> None:
    env = e2e.env(VOLC_ACCESSKEY=None, VOLC_SECRETKEY=None, ASYNCIMG_ENDPOINT=None)
    ran = e2e.run("test_async_image.py", "--emulator", env=env, timeout=60)
    assert ran.returncode == 0, ran
    assert "3/3 frames on disk" in ran.stdout, ran
    frames = sorted((e2e.root / "test_async_output" / "frames").glob("*.png"))
    assert len(frames) == 3
    for frame in frames:
        assert_image(frame)
    assert [r["status"] for r in e2e.records()] == ["completed"] * 3
    # It used its own emulator, not ours.
    assert e2e.emu.stats()["tasks_submitted"] == 0
