"""Pay exactly once, as a user meets it on the command line (issue 6, items 3, 6 and 13)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asyncimg import constants
from asyncimg.emulator.state import TaskTable

if TYPE_CHECKING:
    from conftest import E2E

SUBMIT = constants.ACTION_SUBMIT


def _first_task_id(seed: int = 7) -> str:
    """The id a fresh emulator with this seed hands out first (the emulator's own generator)."""
    return TaskTable(
        gen_seconds=(1, 1), retention_seconds=1, expire_seconds=None, seed=seed
    ).new_id()


def test_an_accepted_task_whose_record_cannot_be_written_is_printed_with_its_adopt_command(
    e2e: E2E,
) -> None:
    """Item 3: the record write after acceptance failed with a traceback and the task id
    was lost, so the next check billed the frame again."""
    e2e.emu.inject("drop", 1, SUBMIT)  # nothing created; the frame is recorded, unconfirmed
    e2e.ok("asyncimg", "submit", "a frame", "-o", "out/a.png")
    [record] = e2e.records()
    task_id = _first_task_id()
    for name in (f"{task_id}.json", f"{task_id}.{record['local_id'][:12]}.json"):
        (e2e.tasks / name).mkdir()  # every name the accepted record could take is blocked
    ran = e2e.exits(2, "asyncimg", "check")
    assert e2e.emu.stats()["tasks_submitted"] == 1
    assert f"asyncimg adopt {task_id} -o {e2e.root / 'out' / 'a.png'}" in ran.output, ran
    assert "the API accepted task" in ran.output


def test_a_wrong_key_at_submit_exits_2_and_keeps_the_frame_queued(e2e: E2E) -> None:
    """Item 6: the frame is not failed (the API never took it), so nothing bills it later."""
    wrong = e2e.env(VOLC_SECRETKEY="not-the-secret-key")
    ran = e2e.run("asyncimg", "submit", "a frame", "-o", "out/a.png", env=wrong)
    assert ran.returncode == 2 and "SignatureDoesNotMatch" in ran.output, ran
    assert "Traceback" not in ran.stderr
    [record] = e2e.records()
    assert record["status"] == "pending"
    ran = e2e.run("asyncimg", "check", env=wrong)
    assert ran.returncode == 2 and "stopping this pass" in ran.output, ran
    assert [r["status"] for r in e2e.records()] == ["pending"]
    e2e.ok("asyncimg", "monitor", "--interval", "1", timeout=30)
    assert [r["status"] for r in e2e.records()] == ["completed"]
    assert e2e.emu.stats()["tasks_submitted"] == 1


def test_exit_codes_are_the_same_for_the_guides_script(e2e: E2E) -> None:
    """Item 13: 0 all done, 1 frames failed (also from check_async_tasks.py)."""
    e2e.submit_frames(1)
    e2e.exits(0, "check_async_tasks.py", "--monitor", "--interval", "1", timeout=30)
    e2e.emu.inject("review_failure", 1, SUBMIT)
    e2e.submit_frames(1, name="bad")
    e2e.exits(1, "check_async_tasks.py", "--monitor", "--interval", "1", timeout=30)
    e2e.exits(1, "check_async_tasks.py", "--check-once")
    e2e.exits(1, "asyncimg", "check")


def test_a_tasks_folder_that_cannot_be_made_is_one_line_and_exit_2(e2e: E2E) -> None:
    (e2e.root / "afile").write_text("not a folder")
    for program, args in (
        ("asyncimg", ("submit", "a frame", "-o", "out/a.png", "--tasks-dir", "afile/t")),
        ("asyncimg", ("list", "--tasks-dir", "afile/t")),
        ("gen_image.py", ("a frame", "-o", "out/a.png", "--tasks-dir", "afile/t")),
        ("check_async_tasks.py", ("--check-once", "--tasks-dir", "afile/t")),
    ):
        ran = e2e.exits(2, program, *args)
        assert "afile/t" in ran.stderr and len(ran.stderr.strip().splitlines()) == 1, ran
