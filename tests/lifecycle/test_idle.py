"""Idle work over finished records: a check pass, the end-of-run summary and `list` read them
from the store's index (`TaskStore.scan`), and still show everything they showed.

Reads are counted through a spy on the store's reader, never timed.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner
from rich.cells import cell_len
from rich.console import Console

from asyncimg.cli.commands import list_
from asyncimg.cli.output import print_summary, task_table
from asyncimg.protocol.errors import NetworkError
from asyncimg.store import index as store_index
from asyncimg.store import store as store_module
from asyncimg.store.record import ErrorInfo, TaskRecord
from asyncimg.store.states import TaskState, transition
from asyncimg.store.store import TaskStore

if TYPE_CHECKING:
    from conftest import Start

S = TaskState


@pytest.fixture(autouse=True)
def settle_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let records written a moment ago be cached (real folders hold old ones)."""
    monkeypatch.setattr(store_index, "SETTLE_NS", 0)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the record files the store parses during scans and full loads."""
    names: list[str] = []
    real = store_module._read_record_keyed

    def spy(path: Path) -> Any:
        names.append(path.name)
        return real(path)

    monkeypatch.setattr(store_module, "_read_record_keyed", spy)
    return names


def finished(n: int, state: S, message: str = "输出审核未通过", **extra: Any) -> TaskRecord:
    pending = TaskRecord.model_validate(
        {
            "output_path": f"frames/{n:03d}.png",
            "filename": f"{n:03d}.png",
            "prompt": f"frame {n}",
            "full_prompt": f"frame {n}, manga",
            "status": "pending",
            "created_at": 100.0 + n,
            "updated_at": 100.0 + n,
            **extra,
        }
    )
    accepted = transition(pending, S.SUBMITTED, now=200.0, task_id=f"99{n:04d}", attempts=1)
    if state is S.FAILED:
        error = ErrorInfo(kind="OutputRejected", message=message, time=300.0, resubmittable=True)
        return transition(accepted, S.FAILED, now=300.0 + n, last_error=error)
    return transition(accepted, S.COMPLETED, now=300.0 + n)


def unconfirmed(store: TaskStore, n: int) -> TaskRecord:
    pending = finished(n, S.COMPLETED)  # only for its fields
    data = pending.model_dump()
    data.update(
        status="unconfirmed",
        task_id=None,
        completed_time=None,
        unconfirmed_resubmits=5,
        last_error=ErrorInfo.from_exception(NetworkError("no reply"), 400.0),
    )
    record = TaskRecord.model_validate(data)
    store.save(record)
    return record


async def test_an_idle_pass_reads_no_finished_record(start: Start, opened: list[str]) -> None:
    env = await start()
    names = [env.store.save(finished(n, S.COMPLETED)).name for n in range(1, 4)]
    names.append(env.store.save(finished(4, S.FAILED)).name)
    frame = env.add("f1")
    first = await env.run_pass()
    assert first.submitted == 1
    assert set(names) <= set(opened)  # the first pass builds the index

    opened.clear()
    summary = await env.run_pass()  # polls f1; the four finished records stay cached
    assert summary.polled == 1
    assert not set(opened) & set(names), opened
    assert opened, "the unfinished record is read at the start and the end of the pass"
    assert summary.counts[S.COMPLETED.value] == 3 and summary.counts[S.FAILED.value] == 1
    assert summary.counts[S.PROCESSING.value] + summary.counts[S.SUBMITTED.value] == 1
    assert summary.unfinished == 1 and summary.exit_code == 1  # one frame failed

    env.advance(20)
    opened.clear()
    done = await env.run_pass()
    assert done.completed == 1 and done.counts[S.COMPLETED.value] == 4
    assert not set(opened) & set(names)
    assert env.load(frame).status is S.COMPLETED


async def test_the_summary_shows_failed_and_waiting_records_from_the_index(
    start: Start, opened: list[str]
) -> None:
    env = await start()
    env.store.save(finished(1, S.COMPLETED))
    env.store.save(finished(2, S.FAILED))
    waiting = unconfirmed(env.store, 3)
    summary = await env.run_pass()
    assert summary.waiting == 1 and summary.exit_code == 1
    await env.run_pass()  # the index holds both finished records now

    opened.clear()
    out = io.StringIO()
    print_summary(Console(file=out, width=200), summary, env.workspace())
    text = out.getvalue()
    assert opened == [f"pending-{waiting.local_id}.json"]  # only the unfinished record
    assert "1 failed:" in text
    assert "990002  frames/002.png: 输出审核未通过 (resubmitting may help)" in text
    assert "1 unconfirmed" in text and f"{waiting.local_id[:8]}  frames/003.png" in text
    assert "retry them all with: asyncimg retry --failed" in text


def test_list_shows_every_task_from_the_index(
    chdir_tmp: Path, opened: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = chdir_tmp / "async_tasks"
    store = TaskStore(tasks)
    store.save(finished(1, S.COMPLETED, output_path="frames/第一章/001.png"))
    store.save(finished(2, S.FAILED))
    waiting = unconfirmed(store, 3)
    TaskStore(tasks).scan()
    runner = CliRunner()

    opened.clear()
    ran = runner.invoke(list_, ["--tasks-dir", str(tasks)])
    assert ran.exit_code == 0, ran.output
    assert opened == [f"pending-{waiting.local_id}.json"]
    lines = ran.output.splitlines()
    assert lines[0].split() == ["task", "status", "output", "updated", "error"]
    assert lines[1].split()[:3] == ["990001", "completed", "frames/第一章/001.png"]
    assert lines[2].split()[:3] == ["990002", "failed", "frames/002.png"]
    assert lines[2].endswith("输出审核未通过")
    assert lines[3].startswith(f"(local {waiting.local_id[:8]})  unconfirmed")
    assert lines[3].endswith("no reply")
    assert lines[-1] == "3 tasks"

    ran = runner.invoke(list_, ["--tasks-dir", str(tasks), "--status", "failed"])
    assert ran.output.splitlines()[1].startswith("990002") and "1 tasks" in ran.output

    ran = runner.invoke(list_, ["--tasks-dir", str(tasks), "--json"])  # whole records
    items = json.loads(ran.output)
    assert [i["status"] for i in items] == ["completed", "failed", "unconfirmed"]
    assert items[1]["last_error"]["message"] == "输出审核未通过"


def test_list_reports_an_unreadable_record_and_leaves_it_where_it_is(chdir_tmp: Path) -> None:
    """`list` only looks: the file is reported, never moved (nor is an index written)."""
    tasks = chdir_tmp / "async_tasks"
    TaskStore(tasks).save(finished(1, S.COMPLETED))
    (tasks / "7392.json").write_text("{", encoding="utf-8")
    before = sorted(p.name for p in tasks.iterdir())
    ran = CliRunner().invoke(list_, ["--tasks-dir", str(tasks)])
    assert ran.exit_code == 0
    assert "7392.json: not valid JSON" in ran.output and "1 tasks" in ran.output
    assert sorted(p.name for p in tasks.iterdir()) == before


def test_the_list_table_aligns_wide_characters_and_flattens_control_characters(
    tmp_path: Path,
) -> None:
    store = TaskStore(tmp_path)
    store.save(finished(1, S.COMPLETED, output_path="章/一.png"))
    store.save(finished(2, S.FAILED, message="a\nb\tc"))
    tasks = sorted(store.scan().tasks, key=lambda t: t.created_at)
    lines = task_table(tasks).splitlines()
    assert len(lines) == 3
    stamps = ["updated"] + [
        time.strftime("%m-%d %H:%M:%S", time.localtime(t.updated_at)) for t in tasks
    ]
    # "章/一.png" takes 9 screen columns for 7 characters: padding must count columns, so
    # that the next column starts at the same place on every line.
    starts = {
        cell_len(line[: line.index(stamp)]) for line, stamp in zip(lines, stamps, strict=True)
    }
    assert len(starts) == 1, lines
    assert lines[2].endswith("a b c")
