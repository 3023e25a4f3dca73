"""Pay exactly once, as a user meets it on the command line (issue 6, items 3, 6 and 13)."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

import pytest

from asyncimg import constants
from asyncimg.emulator.state import TaskTable
from asyncimg.store.base import Store
from asyncimg.store.pg.store import PgStore
from asyncimg.store.store import TaskStore

from .conftest import wait_for

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


@pytest.mark.parametrize("where", ["folder", "postgresql"])
def test_two_submits_of_one_batch_at_once_bill_each_frame_once(
    e2e: E2E, where: str, request: pytest.FixtureRequest
) -> None:
    """Both used to read "no record for this output yet" before either saved one, and both
    submitted: every frame billed twice. The lock on the output files is held here while
    both start, so both reach the rerun check together (no race decides the test)."""
    rows = [
        {"prompt": f"frame {i}: a lighthouse", "output_path": f"out/f{i}.png"} for i in (1, 2, 3)
    ]
    batch = e2e.write_batch("chapter.jsonl", rows)
    env = e2e.env()
    store: Store = TaskStore(e2e.tasks)
    if where == "postgresql":
        url = request.getfixturevalue("pg_url")
        env = e2e.env(ASYNCIMG_STORE=url)
        store = PgStore(url, machine="the-test", state_dir=e2e.root / ".state")
        request.addfinalizer(store.close)
    logs = e2e.root / "logs"
    logs.mkdir()
    keys = [os.path.normpath(e2e.root.resolve() / row["output_path"]) for row in rows]
    runs: list[subprocess.Popen[str]] = []
    with store.outputs_lock(keys) as held:
        assert held
        for n in (1, 2):
            runs.append(
                subprocess.Popen(
                    e2e.argv_for("asyncimg", "submit", "--batch", batch.name),
                    cwd=e2e.root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=(logs / f"{n}.out").open("w", encoding="utf-8"),
                    stderr=(logs / f"{n}.err").open("w", encoding="utf-8"),
                    text=True,
                )
            )

        def both_wait() -> bool:
            for n, run in enumerate(runs, 1):
                assert run.poll() is None, (logs / f"{n}.err").read_text(encoding="utf-8")
            return all(
                "another asyncimg is recording frames" in (logs / f"{n}.err").read_text("utf-8")
                for n in (1, 2)
            )

        wait_for(both_wait, 60, "both submits to wait for the lock on their output files")
        assert store.scan().tasks == []  # neither recorded anything while waiting
    for run in runs:
        run.wait(timeout=60)
    said = [
        (logs / f"{n}.out").read_text("utf-8") + (logs / f"{n}.err").read_text("utf-8")
        for n in (1, 2)
    ]
    for run, text in zip(runs, said, strict=True):
        assert run.returncode == 0 and "Traceback" not in text, text
    # One recorded and sent them (a shared store sends as the account's cap allows and
    # leaves the rest queued); the other found them recorded and sent nothing.
    sent, skipped = sorted(said, key=lambda text: text.count(": submitted as"), reverse=True)
    accepted = sent.count(": submitted as")
    assert accepted + sent.count(": queued locally") == 3, sent
    assert e2e.emu.stats()["tasks_submitted"] == accepted >= 1, said
    assert skipped.count("skipped — already") == 3, skipped  # queued or submitted by the other
    assert "0 submitted, 0 queued locally, 0 rejected, 3 skipped" in skipped, skipped
    assert len(store.scan().tasks) == 3  # one record per frame
    e2e.ok("asyncimg", "monitor", "--interval", "1", env=env, timeout=60)
    assert e2e.emu.stats()["tasks_submitted"] == 3
    assert all((e2e.root / row["output_path"]).is_file() for row in rows)
