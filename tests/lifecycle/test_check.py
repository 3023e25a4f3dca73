"""Check passes against the emulator: submit as capacity frees, poll, download, survive faults."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PIL import Image

from asyncimg import constants
from asyncimg.lifecycle import decide
from asyncimg.lifecycle.check import PassSummary
from asyncimg.lifecycle.decide import MAX_STALLED_PASSES
from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.signing import Credentials
from asyncimg.store.states import TaskState
from asyncimg.store.store import TaskStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Env, Start

SUBMIT = constants.ACTION_SUBMIT
RESULT = constants.ACTION_GET_RESULT
S = TaskState


def _assert_results_match_files(env: Env, name: str, expected: list[Path]) -> None:
    record = next(r for r in env.load_all() if r.filename == name)
    assert record.status is S.COMPLETED
    assert [Path(f.path) for f in record.results] == expected
    for file in record.results:
        data = Path(file.path).read_bytes()
        assert file.sha256 == hashlib.sha256(data).hexdigest()
        assert file.bytes == len(data)
        with Image.open(file.path) as img:
            assert (file.width, file.height) == img.size


async def _submitted(env: Env, name: str, **kwargs: object) -> str:
    """A task the API accepted; returns its local_id."""
    record = env.add(name, **kwargs)  # type: ignore[arg-type]
    summary = await env.run_pass()
    assert summary.submitted == 1
    return record.local_id


def _status(env: Env, local_id: str) -> S:
    return TaskStore(env.tasks_dir).get(local_id).status


# -- the queue drains as capacity frees -------------------------------------------------------


async def test_pending_tasks_go_out_as_capacity_frees(start: Start) -> None:
    env = await start(concurrency=2)
    records = [env.add(f"f{i}") for i in range(6)]
    summaries: list[PassSummary] = []
    for _ in range(6):
        summary = await env.run_pass()
        summaries.append(summary)
        assert env.emu.stats()["tasks_unfinished"] <= 2
        if summary.unfinished == 0:
            break
        env.advance(10)
    stats = env.emu.stats()
    assert stats["peak_unfinished"] == 2
    assert stats["tasks_submitted"] == 6
    assert summaries[-1].counts == {
        "pending": 0,
        "unconfirmed": 0,
        "submitted": 0,
        "processing": 0,
        "completed": 6,
        "failed": 0,
    }
    assert sum(s.submitted for s in summaries) == 6
    assert sum(s.completed for s in summaries) == 6
    assert summaries[0].submitted == 2 and summaries[0].queued == 4
    assert len(summaries) == 4  # 2 per 10 s, then the last two are downloaded
    assert sorted(p.name for p in env.out_dir.iterdir()) == [f"f{i}.png" for i in range(6)]
    assert {r.output_path for r in records} == {str(env.out_dir / f"f{i}.png") for i in range(6)}


async def test_local_cap_limits_submissions_without_asking_the_api(start: Start) -> None:
    env = await start()
    for i in range(5):
        env.add(f"f{i}")
    summary = await env.run_pass(max_in_flight=2)
    assert summary.submitted == 2 and summary.queued == 3
    summary = await env.run_pass(max_in_flight=2)
    assert summary.submitted == 0  # still two in flight
    assert env.emu.stats()["requests"][SUBMIT] == 2


async def test_oldest_pending_goes_first(start: Start) -> None:
    env = await start(concurrency=1)
    first = env.add("first")
    env.advance(1)
    second = env.add("second")
    await env.run_pass()
    assert _status(env, first.local_id) is S.SUBMITTED
    assert _status(env, second.local_id) is S.PENDING


# -- statuses ---------------------------------------------------------------------------------


async def test_statuses_map_and_persist(start: Start) -> None:
    env = await start(gen_seconds=(10.0, 10.0))
    local_id = await _submitted(env, "f1")
    env.advance(1)  # in_queue
    summary = await env.run_pass()
    assert summary.polled == 1 and _status(env, local_id) is S.SUBMITTED
    env.advance(3)  # generating (after 30 % of the duration)
    summary = await env.run_pass()
    assert _status(env, local_id) is S.PROCESSING
    assert summary.counts["processing"] == 1 and summary.unfinished == 1
    env.advance(6)  # done
    summary = await env.run_pass()
    assert summary.completed == 1 and summary.unfinished == 0
    record = TaskStore(env.tasks_dir).get(local_id)
    assert record.status is S.COMPLETED
    assert record.completed_time == pytest.approx(env.now())
    assert record.last_error is None
    # Completed tasks are not polled again.
    polls = env.emu.stats()["requests"][RESULT]
    await env.run_pass()
    assert env.emu.stats()["requests"][RESULT] == polls


async def test_done_image_is_saved_and_described_in_the_record(start: Start) -> None:
    env = await start()
    local_id = await _submitted(env, "f1", size="1024x1024")
    env.advance(10)
    reported: list[str] = []
    summary = await env.checker(report=reported.append).run_pass()
    assert summary.completed == 1
    target = env.out_dir / "f1.png"
    _assert_results_match_files(env, "f1.png", [target])
    with Image.open(target) as img:
        assert img.format == "PNG" and img.size == (1024, 1024)
    assert any("completed" in line and str(target) in line for line in reported)
    assert env.emu.stats()["image_downloads"] == 1
    assert _status(env, local_id) is S.COMPLETED


async def test_several_images_go_to_numbered_files(start: Start) -> None:
    env = await start(images_per_task=3)
    await _submitted(env, "multi", params={"force_single": False})
    await _submitted(env, "single")  # force_single is the default
    env.advance(10)
    await env.run_pass()
    out = env.out_dir
    _assert_results_match_files(
        env, "multi.png", [out / "multi.png", out / "multi_2.png", out / "multi_3.png"]
    )
    _assert_results_match_files(env, "single.png", [out / "single.png"])
    assert not (out / "single_2.png").exists()
    hashes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("multi*.png")}
    assert len(hashes) == 3  # three different images, not one copied


async def test_jpeg_output_path_gets_a_jpeg_file(start: Start) -> None:
    env = await start()
    target = env.out_dir / "frame.jpeg"
    await _submitted(env, "frame", output_path=str(target))
    env.advance(10)
    await env.run_pass()
    with Image.open(target) as img:
        assert img.format == "JPEG" and img.size == (1024, 1024)
    _assert_results_match_files(env, "frame.jpeg", [target])


async def test_base64_results_are_decoded_and_saved(start: Start) -> None:
    """URLs were asked for, yet the reply carries only base64 (spec §4): it is still saved."""
    env = await start()
    env.emu.inject("base64_only")
    local_id = await _submitted(env, "b64")
    env.advance(10)
    summary = await env.run_pass()
    assert summary.completed == 1
    _assert_results_match_files(env, "b64.png", [env.out_dir / "b64.png"])
    assert env.emu.stats()["image_downloads"] == 0  # nothing fetched by URL
    assert _status(env, local_id) is S.COMPLETED


# -- task outcomes ----------------------------------------------------------------------------


async def test_review_failure_fails_resubmittable_and_says_resubmit(start: Start) -> None:
    env = await start()
    env.emu.inject("review_failure")
    local_id = await _submitted(env, "f1")
    env.advance(10)
    reported: list[str] = []
    summary = await env.checker(report=reported.append).run_pass()
    assert summary.failed == 1 and summary.unfinished == 0
    record = TaskStore(env.tasks_dir).get(local_id)
    assert record.status is S.FAILED and record.last_error is not None
    assert record.last_error.code == 50511 and record.last_error.kind == "OutputRejected"
    assert record.last_error.resubmittable and record.last_error.request_id
    assert not (env.out_dir / "f1.png").exists()
    line = next(line for line in reported if "failed" in line)
    assert "f1.png" in line and "resubmit" in line and "\n" not in line


async def test_done_without_image_fails_resubmittable(start: Start) -> None:
    env = await start()
    env.emu.inject("no_image")
    local_id = await _submitted(env, "f1")
    env.advance(10)
    summary = await env.run_pass()
    assert summary.failed == 1
    record = TaskStore(env.tasks_dir).get(local_id)
    assert record.status is S.FAILED and record.last_error is not None
    assert record.last_error.kind == "EmptyResult" and record.last_error.resubmittable
    assert not (env.out_dir / "f1.png").exists()


@pytest.mark.parametrize(
    ("settings", "wait", "code"),
    [
        ({"retention_seconds": 100.0}, 101.0, "not_found"),
        ({"expire_seconds": 50.0}, 51.0, "expired"),
    ],
)
async def test_task_gone_after_retention_fails_resubmittable(
    start: Start, settings: dict[str, float], wait: float, code: str
) -> None:
    env = await start(**settings)
    local_id = await _submitted(env, "f1")
    env.advance(wait)
    summary = await env.run_pass()
    assert summary.failed == 1
    record = TaskStore(env.tasks_dir).get(local_id)
    assert record.status is S.FAILED and record.last_error is not None
    assert record.last_error.kind == "TaskGone" and record.last_error.code == code
    assert record.last_error.resubmittable


# -- transient faults -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind"),
    [("server_error", "ServerError"), ("drop", "NetworkError"), ("slow", "NetworkError")],
)
async def test_poll_faults_keep_the_state_and_a_later_pass_completes(
    start: Start, fault: str, kind: str
) -> None:
    # A `slow` poll is held until released: the 50 ms read timeout certainly ends it. Only
    # the faulted pass uses that timeout; a normal reply need not come within 50 ms.
    env = await start(slow_seconds=600.0)
    client = env.new_client(read_timeout=0.05, max_attempts=2)
    local_id = await _submitted(env, "f1")
    env.advance(5)
    await env.checker().run_pass()
    assert _status(env, local_id) is S.PROCESSING
    env.advance(5)  # done, but the poll fails every time the client tries this pass
    env.emu.inject(fault, count=2, action=RESULT)
    summary = await env.checker(client).run_pass()
    env.emu.release_slow()
    assert summary.transient_errors == 1 and summary.failed == 0 and summary.completed == 0
    record = TaskStore(env.tasks_dir).get(local_id)
    assert record.status is S.PROCESSING
    assert record.last_error is not None and record.last_error.kind == kind
    assert record.last_error.retryable
    assert env.emu.stats()["faults_fired"] == {fault: 2}
    # The default client: a 50 ms read timeout could also cut the image download short
    # on a loaded machine (the emulator renders the image on first request).
    summary = await env.checker().run_pass()
    assert summary.completed == 1
    record = TaskStore(env.tasks_dir).get(local_id)
    assert record.status is S.COMPLETED and record.last_error is None
    assert (env.out_dir / "f1.png").is_file()


async def test_a_single_poll_fault_is_absorbed_by_the_client(start: Start) -> None:
    env = await start()
    local_id = await _submitted(env, "f1")
    env.advance(10)
    env.emu.inject("server_error", count=1, action=RESULT)
    summary = await env.run_pass()
    assert summary.completed == 1 and summary.transient_errors == 0
    assert _status(env, local_id) is S.COMPLETED


@pytest.mark.parametrize(("fault", "count"), [("server_error", 2), ("drop", 4)])
async def test_image_download_faults_never_fail_the_task(
    start: Start, fault: str, count: int
) -> None:
    env = await start()
    client = env.new_client(max_attempts=2)
    local_id = await _submitted(env, "f1")
    env.advance(10)
    # Every try of this pass: 2 client attempts (aiohttp itself repeats a dropped GET once).
    env.emu.inject(fault, count=count, action="image")
    summary = await env.checker(client).run_pass()
    assert summary.completed == 0 and summary.failed == 0 and summary.transient_errors == 1
    record = TaskStore(env.tasks_dir).get(local_id)
    assert record.status is S.SUBMITTED
    # Only a corrupt image counts toward giving up on the image; a failed fetch is a
    # stalled poll (the next poll hands out fresh URLs).
    assert record.download_failures == 0 and record.stalled_passes == 1
    assert record.last_error is not None and record.last_error.retryable
    assert not (env.out_dir / "f1.png").exists()
    summary = await env.checker(client).run_pass()
    record = TaskStore(env.tasks_dir).get(local_id)
    assert record.status is S.COMPLETED and record.download_failures == 0
    assert record.stalled_passes == 0 and record.stalled_since is None
    assert (env.out_dir / "f1.png").is_file()


async def test_an_image_url_answering_403_is_fetched_again_from_a_fresh_poll(
    start: Start,
) -> None:
    """Issue item 8: a 403/404/410 on an image URL failed the paid task at once, though the
    next poll hands out fresh URLs."""
    env = await start()
    client = env.new_client(max_attempts=1)
    local_id = await _submitted(env, "f1")
    env.advance(10)
    env.emu.inject("expired_url", count=2, action="image")
    for _ in range(2):
        summary = await env.checker(client).run_pass()
        assert summary.failed == 0
        assert _status(env, local_id) is S.SUBMITTED
    record = TaskStore(env.tasks_dir).get(local_id)
    assert record.last_error is not None and "403" in record.last_error.message
    await env.checker(client).run_pass()
    assert _status(env, local_id) is S.COMPLETED
    assert env.emu.stats()["tasks_submitted"] == 1


async def test_dropped_image_downloads_never_give_up_a_paid_image(start: Start) -> None:
    """Issue item 8: `download_failures` counted network errors, so three passes with a
    failed download gave up a paid image."""
    env = await start()
    client = env.new_client(max_attempts=1)
    local_id = await _submitted(env, "f1")
    env.advance(10)
    env.emu.inject("server_error", count=decide.MAX_CORRUPT_DOWNLOADS + 2, action="image")
    for _ in range(decide.MAX_CORRUPT_DOWNLOADS + 2):
        summary = await env.checker(client).run_pass()
        assert summary.failed == 0
    record = TaskStore(env.tasks_dir).get(local_id)
    assert record.status is S.SUBMITTED and record.download_failures == 0
    await env.checker(client).run_pass()
    assert _status(env, local_id) is S.COMPLETED


async def test_an_image_that_never_downloads_fails_after_the_stall_limits(start: Start) -> None:
    """A task that can make no progress reaches `failed` with the reason, so `monitor` ends;
    a short outage never does (both a count and a time must pass)."""
    env = await start()
    client = env.new_client(max_attempts=1)
    local_id = await _submitted(env, "f1")
    env.advance(10)
    env.emu.inject("expired_url", count=1000, action="image")
    for _ in range(MAX_STALLED_PASSES - 1):
        await env.checker(client).run_pass()
        env.advance(120)
    assert _status(env, local_id) is S.SUBMITTED  # enough time, too few polls
    summary = await env.checker(client).run_pass()
    assert summary.failed == 1
    record = TaskStore(env.tasks_dir).get(local_id)
    assert record.status is S.FAILED and record.last_error is not None
    assert record.last_error.kind == "NoProgress" and "403" in record.last_error.message
    assert record.task_id  # kept: `retry` can fetch it again without resubmitting


async def test_a_corrupt_image_is_never_saved_and_fails_after_three_downloads_and_a_minute(
    start: Start, no_leftovers: Callable[..., list[Path]]
) -> None:
    """Three corrupt downloads a second apart used to fail the paid frame (a retry bills
    again), however short the glitch; now a minute must pass too."""
    env = await start()
    env.emu.inject("truncated_image")
    local_id = await _submitted(env, "f1")
    env.advance(10)
    target = env.out_dir / "f1.png"
    reported: list[str] = []
    for attempt in range(1, decide.MAX_CORRUPT_DOWNLOADS + 2):
        summary = await env.checker(report=reported.append).run_pass()
        record = TaskStore(env.tasks_dir).get(local_id)
        assert record.status is S.SUBMITTED and summary.transient_errors == 1
        assert record.download_failures == attempt
        assert record.last_error is not None and record.last_error.kind == "ImageCheckFailed"
        assert not target.exists()
        assert no_leftovers(env.out_dir, env.tasks_dir) == []
        env.advance(1)
    env.advance(decide.MIN_CORRUPT_S)
    summary = await env.checker(report=reported.append).run_pass()
    record = TaskStore(env.tasks_dir).get(local_id)
    assert record.status is S.FAILED and summary.failed == 1
    assert record.last_error is not None and record.last_error.kind == "DownloadAbandoned"
    message = record.last_error.message
    assert "corrupt in 5 downloads" in message and "incomplete or corrupt" in message
    # Waiting will not fix it; a new task might: the user is told how, with the command.
    assert record.last_error.resubmittable and not record.last_error.retryable
    assert f"asyncimg retry {record.task_id} --tasks-dir {env.tasks_dir}" in message
    assert f"asyncimg retry {record.task_id}" in reported[-1]
    assert not target.exists()
    assert env.emu.stats()["image_downloads"] == 5


# -- the folder -------------------------------------------------------------------------------


async def test_corrupt_record_is_quarantined_and_the_others_complete(start: Start) -> None:
    env = await start()
    env.add("a")
    env.add("b")
    bad = env.tasks_dir / "7392616336519610409.json"
    bad.write_text('{"task_id": "7392616336519610409", "status": ', "utf-8")
    os.utime(bad, (time.time() - 60, time.time() - 60))  # not being written right now
    reported: list[str] = []
    summary = await env.checker(report=reported.append).run_pass()
    assert len(summary.problems) == 1 and str(bad) in summary.problems[0]
    assert "not valid JSON" in summary.problems[0] and "\n" not in summary.problems[0]
    assert summary.problems[0] in reported
    assert not bad.exists()
    quarantine = env.tasks_dir / ".quarantine"
    assert (quarantine / bad.name).read_text("utf-8").startswith('{"task_id"')
    assert (quarantine / f"{bad.name}.reason.txt").is_file()
    assert summary.submitted == 2
    env.advance(10)
    summary = await env.run_pass()
    assert summary.completed == 2 and summary.problems == []
    assert "unreadable" not in summary.line()


async def test_locked_record_is_skipped_then_handled_next_pass(start: Start) -> None:
    env = await start()
    local_id = await _submitted(env, "f1")
    env.advance(10)
    record = TaskStore(env.tasks_dir).get(local_id)
    other = TaskStore(env.tasks_dir)  # another process working on the same folder
    polls = env.emu.stats()["requests"].get(RESULT, 0)
    with other.lock(record) as held:
        assert held
        summary = await env.run_pass()
        assert summary.skipped_locked == 1 and summary.polled == 0
        assert _status(env, local_id) is S.SUBMITTED
        assert env.emu.stats()["requests"].get(RESULT, 0) == polls
    summary = await env.run_pass()
    assert summary.skipped_locked == 0 and summary.completed == 1
    assert _status(env, local_id) is S.COMPLETED


async def test_summary_line_counts_states(start: Start) -> None:
    env = await start(concurrency=1)
    env.add("a")
    env.add("b")
    summary = await env.run_pass()
    assert summary.line() == "1 pending, 1 submitted — 1 newly submitted"
    empty = await (await start()).run_pass()
    assert empty.line() == "no tasks" and empty.unfinished == 0


async def test_a_wrong_key_never_fails_accepted_tasks_and_stops_the_pass(start: Start) -> None:
    env = await start()
    first = await _submitted(env, "f1")
    second = await _submitted(env, "f2")
    pending = env.add("f3")
    env.advance(10)
    submitted_before = env.emu.stats()["tasks_submitted"]
    wrong = VisualClient(
        Credentials(env.client.access_key, "not-the-secret"),
        endpoint=env.emu.url,
        clock=lambda: datetime.fromtimestamp(env.emu.now(), UTC),
        retry_base_delay=0,
    )
    async with wrong:
        reported: list[str] = []
        summary = await env.checker(wrong, report=reported.append).run_pass()
    assert summary.halted and "SignatureDoesNotMatch" in summary.halted
    # Issue item 6: the queued frame goes first and the gateway refuses it; that is the
    # key's fault, not the frame's, so it stays queued (failing it made `retry` bill it).
    assert summary.failed == 0 and summary.polled == 0
    assert _status(env, pending.local_id) is S.PENDING
    assert summary.exit_code == 2
    assert sum(line.startswith("stopping this pass") for line in reported) == 1
    for local_id in (first, second):
        assert _status(env, local_id) is S.SUBMITTED  # not failed, task id kept
    # With the right key every frame finishes; each was billed once.
    await env.run_pass()
    env.advance(10)
    await env.run_pass()
    for local_id in (first, second, pending.local_id):
        assert _status(env, local_id) is S.COMPLETED
    assert env.emu.stats()["tasks_submitted"] == submitted_before + 1
