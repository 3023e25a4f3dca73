"""Pay exactly once, as a user meets it on the command line (issue 6, items 3, 6 and 13)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from asyncimg import constants
from asyncimg.emulator.state import TaskTable
from asyncimg.store.base import Store
from asyncimg.store.pg.store import PgStore
from asyncimg.store.record import TaskRecord
from asyncimg.store.states import TaskState
from asyncimg.store.store import TaskStore

from .conftest import wait_for

if TYPE_CHECKING:
    from conftest import E2E

SUBMIT = constants.ACTION_SUBMIT


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


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


WAITS = "another asyncimg is recording frames"


def _store_for(
    e2e: E2E, where: str, request: pytest.FixtureRequest
) -> tuple[Store, dict[str, str], str]:
    """The store the commands use (folder or PostgreSQL), seen by the test as a second
    process; their environment; the `--to` of a migrate into it."""
    if where == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        store = PgStore(url, machine="the-test", state_dir=e2e.root / ".state")
        request.addfinalizer(store.close)
        return store, e2e.env(ASYNCIMG_STORE=url), url
    return TaskStore(e2e.tasks), e2e.env(), "async_tasks"


def _each_waits_then_runs(
    e2e: E2E,
    store: Store,
    outputs: list[str],
    commands: list[tuple[list[str], dict[str, str]]],
    meanwhile: Callable[[], object] = lambda: None,
) -> list[tuple[int, str]]:
    """Hold `store`'s lock on `outputs` (relative to the project) while every command
    starts, until each has said it waits; run `meanwhile`; let go; each command's exit
    status and output. No race decides what they find: all reach their check while the
    lock is held, and none could go ahead of it."""
    logs = e2e.root / "logs"
    logs.mkdir(exist_ok=True)
    keys = [os.path.normpath(e2e.root.resolve() / output) for output in outputs]
    runs: list[subprocess.Popen[str]] = []
    with store.outputs_lock(keys) as held:
        assert held
        for n, (args, env) in enumerate(commands, 1):
            runs.append(
                subprocess.Popen(
                    e2e.argv_for("asyncimg", *args),
                    cwd=e2e.root,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=(logs / f"{n}.out").open("w", encoding="utf-8"),
                    stderr=(logs / f"{n}.err").open("w", encoding="utf-8"),
                    text=True,
                )
            )

        def all_wait() -> bool:
            for n, run in enumerate(runs, 1):
                assert run.poll() is None, (logs / f"{n}.err").read_text(encoding="utf-8")
            return all(
                WAITS in (logs / f"{n}.err").read_text("utf-8") for n in range(1, len(runs) + 1)
            )

        wait_for(all_wait, 60, "every command to wait for the lock on the output files")
        meanwhile()
    said = []
    for n, run in enumerate(runs, 1):
        run.wait(timeout=60)
        text = (logs / f"{n}.out").read_text("utf-8") + (logs / f"{n}.err").read_text("utf-8")
        assert "Traceback" not in text, text
        said.append((run.returncode, text))
    return said


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
    store, env, _ = _store_for(e2e, where, request)

    def nothing_recorded() -> None:
        assert store.scan().tasks == []  # neither recorded anything while waiting

    results = _each_waits_then_runs(
        e2e,
        store,
        [row["output_path"] for row in rows],
        [(["submit", "--batch", batch.name], env)] * 2,
        nothing_recorded,
    )
    said = [text for _, text in results]
    for code, text in results:
        assert code == 0, text
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


# -- every path that records or revives a frame takes the same lock -------------------------


def _records_of(store: Store, output: str) -> list[TaskRecord]:
    return [r for r in store.load_everything().records if r.output_path.endswith(output)]


@pytest.mark.parametrize("where", ["folder", "postgresql"])
def test_retry_output_and_a_submit_of_that_file_at_once_pay_once(
    e2e: E2E, where: str, request: pytest.FixtureRequest
) -> None:
    """`retry TASK --output X` did not take the lock: with a `submit -o X` at the same
    time, both found X free and both paid."""
    store, env, _ = _store_for(e2e, where, request)
    e2e.emu.inject("review_failure", 1, SUBMIT)
    e2e.ok("asyncimg", "submit", "frame one: a lighthouse", "-o", "out/f1.png", env=env)
    e2e.exits(1, "asyncimg", "monitor", "--interval", "1", env=env, timeout=60)
    [failed] = _records_of(store, "out/f1.png")
    assert failed.status is TaskState.FAILED and failed.task_id
    billed = e2e.emu.stats()["tasks_submitted"]
    said = _each_waits_then_runs(
        e2e,
        store,
        ["out/f2.png"],
        [
            (["submit", "frame two: a harbour", "-o", "out/f2.png"], env),
            (["retry", failed.task_id, "--output", "out/f2.png"], env),
        ],
    )
    (submit_rc, submitted), (retry_rc, retried) = said
    assert submit_rc == 0 and retry_rc == 0, said
    # Whichever got the lock first recorded the frame; the other found it and left it.
    left_alone = ("skipped — already" in submitted) + ("has another record" in retried)
    assert left_alone == 1, said
    assert (
        len([r for r in _records_of(store, "out/f2.png") if r.status is not TaskState.FAILED]) == 1
    )
    retried_first = "skipped — already" in submitted  # else the failed task stays failed
    e2e.exits(
        0 if retried_first else 1, "asyncimg", "monitor", "--interval", "1", env=env, timeout=60
    )
    assert e2e.emu.stats()["tasks_submitted"] == billed + 1
    assert (e2e.root / "out" / "f2.png").is_file()


@pytest.mark.parametrize("where", ["folder", "postgresql"])
def test_migrate_and_a_submit_of_one_file_at_once_pay_once(
    e2e: E2E, where: str, request: pytest.FixtureRequest
) -> None:
    """`migrate` wrote a queued frame into a store where a submit had just recorded the same
    file (or the other way round): the destination sent both."""
    store, env, dest = _store_for(e2e, where, request)
    offline = e2e.env(ASYNCIMG_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    for n in (1, 2):  # queued in an old folder while the API was unreachable
        ran = e2e.ok(
            "asyncimg", "submit", f"frame {n}", "-o", f"out/f{n}.png",
            "--tasks-dir", "old_tasks", env=offline,
        )  # fmt: skip
        assert "queued locally" in ran.stdout, ran
    said = _each_waits_then_runs(
        e2e,
        store,
        ["out/f1.png"],
        [
            (["submit", "frame 1", "-o", "out/f1.png"], env),
            (["migrate", "--from", "old_tasks", "--to", dest], e2e.env()),
        ],
    )
    (submit_rc, submitted), (migrate_rc, migrated) = said
    if "skipped — already queued locally" in submitted:  # migrate went first
        assert submit_rc == 0 and migrate_rc == 0 and "moved 2 records" in migrated, said
        assert e2e.record_files("old_tasks") == []
    else:  # the submit went first: its frame stays the one paid for
        assert submit_rc == 0 and migrate_rc == 1, said
        assert "moved 1 records" in migrated and "pay for the frame twice" in migrated, said
        assert [r["output_path"] for r in e2e.records("old_tasks")] == ["out/f1.png"]
    assert len(_records_of(store, "out/f1.png")) == 1
    e2e.ok("asyncimg", "monitor", "--interval", "1", env=env, timeout=60)
    assert e2e.emu.stats()["tasks_submitted"] == 2  # f1 once, f2 once
