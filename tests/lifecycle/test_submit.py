"""Submitting: the record is durable before the API is asked, and says what happened after."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asyncimg import constants
from asyncimg.lifecycle.submit import (
    build_record,
    request_fields,
    submit_record,
    submit_records,
)
from asyncimg.protocol.errors import InvalidInput
from asyncimg.store.states import TaskState, transition

if TYPE_CHECKING:
    from conftest import Env, Start

SUBMIT = constants.ACTION_SUBMIT
RESULT = constants.ACTION_GET_RESULT
MANGA_SUFFIX = "，日系漫画风格，线条清晰，赛璐璐上色，色彩明快"


def _submits(env: Env) -> int:
    return int(env.emu.stats()["requests"].get(SUBMIT, 0))


def _files(env: Env) -> list[str]:
    return sorted(p.name for p in env.tasks_dir.iterdir() if p.is_file())


# -- building the record ----------------------------------------------------------------------


async def test_full_prompt_is_composed_from_the_style_preset(start: Start) -> None:
    env = await start()
    prompt = "少女站在樱花树下，回眸一笑"
    record = env.add("f1", prompt, style="漫画")
    assert record.prompt == prompt
    assert record.full_prompt == prompt + MANGA_SUFFIX
    assert record.style == "漫画"
    assert request_fields(record)["prompt"] == record.full_prompt


async def test_config_default_style_applies_and_none_overrides_it(start: Start) -> None:
    env = await start(config={"defaults": {"style": "watercolor"}})
    styled = env.add("a", "a fox")
    plain = env.add("b", "a fox", style="none")
    assert styled.style == "watercolor" and styled.full_prompt.startswith("a fox，水彩画风格")
    assert plain.full_prompt == "a fox"


async def test_chinese_prompt_is_stored_and_sent_exactly_as_typed(start: Start) -> None:
    env = await start()
    prompt = "  雨夜的小巷，林晓撑着红伞回头张望…「你好」 😀 {x}\t"
    record = env.add("rain", prompt, style=None)
    outcome = await submit_record(env.client, env.store, record, clock=env.now)
    assert outcome.accepted
    text = env.store.path_for(outcome.record).read_text("utf-8")
    assert "雨夜的小巷，林晓撑着红伞回头张望" in text  # readable, not \\u escapes
    assert json.loads(text)["prompt"] == prompt
    assert env.load(record).prompt == prompt and env.load(record).full_prompt == prompt
    # What reached the emulator over the wire (ASCII-escaped JSON) is the same string.
    task = env.emu._tasks.get(outcome.record.task_id or "")
    assert task is not None and task.fields["prompt"] == prompt


async def test_build_record_resolves_size_and_params(start: Start) -> None:
    env = await start(config={"defaults": {"params": {"force_single": True}}})
    record = env.add("f", size="1440X2560", params={"scale": 0.7, "prompt": "smuggled"})
    assert record.params == {"force_single": True, "width": 1440, "height": 2560, "scale": 0.7}
    assert record.status is TaskState.PENDING and record.task_id is None
    assert record.req_key == "jimeng_t2i_v40" and record.attempts == 0
    assert record.filename == "f.png"


async def test_relative_paths_resolve_against_the_submitters_folder(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = await start()
    work = tmp_path / "novel"
    (work / "chars").mkdir(parents=True)
    env.image("lin.png").replace(work / "chars" / "lin.png")
    monkeypatch.chdir(work)
    record = build_record(
        env.request("f", output_path="frames/001.png", character_images=("chars/lin.png",)),
        env.config,
        now=env.now(),
    )
    env.store.save(record)
    # Stored as typed (the guide's fields), with the folder they were typed in.
    assert record.output_path == "frames/001.png"
    assert record.character_images == ["chars/lin.png"]
    assert record.working_dir == str(work)
    # A check run from another folder (or cron) still reads and writes the same files.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    summary = await env.run_pass()
    assert summary.submitted == 1
    env.advance(10)
    summary = await env.run_pass()
    assert summary.completed == 1
    assert (work / "frames" / "001.png").is_file()
    assert not (elsewhere / "frames").exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"size": "big"}, "size"),
        ({"size": "0x100"}, "size"),
        ({"style": "cubism"}, "style"),
        ({"output_path": "  "}, "output_path"),
    ],
)
async def test_build_record_refuses_what_can_be_judged_locally(
    start: Start, changes: dict[str, str], field: str
) -> None:
    env = await start()
    with pytest.raises(InvalidInput) as info:
        build_record(env.request("f", **changes), env.config, now=env.now())
    assert info.value.field == field
    assert "\n" not in str(info.value)


# -- one submission ---------------------------------------------------------------------------


async def test_accepted_submission_is_renamed_to_its_task_id(start: Start) -> None:
    env = await start()
    record = env.add("f1")
    assert _files(env) == [f"pending-{record.local_id}.json"]
    outcome = await submit_record(env.client, env.store, record, clock=env.now)
    assert outcome.accepted and outcome.error is None
    saved = env.load(record)
    assert saved.status is TaskState.SUBMITTED
    assert saved.task_id and saved.task_id == outcome.record.task_id
    assert saved.attempts == 1 and saved.last_error is None
    assert saved.submit_time == pytest.approx(env.now())
    assert _files(env) == [f"{saved.task_id}.json"]  # no pending file left
    assert env.emu.stats()["tasks_submitted"] == 1


# The `slow` submits below are held until the test releases them (`release_slow`): the
# submit is certainly still in the air when the test looks or interrupts, however the
# machine's load delays the test's turn.


async def test_record_is_on_disk_as_pending_while_the_api_is_being_asked(start: Start) -> None:
    env = await start(slow_seconds=600.0)
    env.emu.inject("slow", action=SUBMIT)
    workspace = env.workspace()
    job = asyncio.create_task(workspace.submit([env.request("f1")]))
    await env.wait_until(lambda: _submits(env) == 1)  # the emulator is sitting on it
    on_disk = env.load_all()
    assert [r.status for r in on_disk] == [TaskState.PENDING]
    assert _files(env) == [f"pending-{on_disk[0].local_id}.json"]
    env.emu.release_slow()
    report = await job
    assert report.submitted == 1
    assert env.load(on_disk[0]).status is TaskState.SUBMITTED


async def test_interrupt_during_a_submit_still_records_its_task_id(start: Start) -> None:
    env = await start(slow_seconds=600.0)
    env.emu.inject("slow", action=SUBMIT)
    record = env.add("f1")
    job = asyncio.create_task(submit_records(env.client, env.store, [record], clock=env.now))
    await env.wait_until(lambda: _submits(env) == 1)  # the service is creating the task
    job.cancel()  # Ctrl+C
    await asyncio.sleep(0)  # the cancel reaches the submit while its answer is held
    env.emu.release_slow()
    with pytest.raises(asyncio.CancelledError):
        await job
    saved = env.load(record)
    assert saved.status is TaskState.SUBMITTED and saved.task_id
    assert env.emu.stats()["tasks_submitted"] == 1
    summary = await env.run_pass()  # the next pass polls it; it does not submit it again
    assert summary.submitted == 0 and env.emu.stats()["tasks_submitted"] == 1


async def test_a_second_interrupt_gives_up_and_the_record_says_why(start: Start) -> None:
    env = await start(slow_seconds=600.0)
    env.emu.inject("slow", action=SUBMIT)
    record = env.add("f1")
    job = asyncio.create_task(submit_records(env.client, env.store, [record], clock=env.now))
    await env.wait_until(lambda: _submits(env) == 1)
    job.cancel()
    await asyncio.sleep(0.01)
    job.cancel()  # Ctrl+C again
    with pytest.raises(asyncio.CancelledError):
        await job
    env.emu.release_slow()
    saved = env.load(record)
    assert saved.status is TaskState.UNCONFIRMED and saved.task_id is None
    assert saved.last_error is not None and "may have created" in saved.last_error.message
    assert saved.submit_started_at is None


async def test_dropped_submit_is_unconfirmed_and_resubmitted_once_by_the_next_pass(
    start: Start,
) -> None:
    env = await start()
    env.emu.inject("drop", action=SUBMIT)
    record = env.add("f1")
    outcome = await submit_record(env.client, env.store, record, clock=env.now)
    assert outcome.unconfirmed and not outcome.accepted and not outcome.queued
    saved = env.load(record)
    assert saved.status is TaskState.UNCONFIRMED and saved.task_id is None
    assert saved.last_error is not None and saved.last_error.kind == "NetworkError"
    assert saved.attempts == 0
    # A submit lost on the network is never repeated blindly by the client.
    assert _submits(env) == 1
    assert _files(env) == [f"pending-{record.local_id}.json"]
    # The next pass spends the one automatic resubmit, and it goes through.
    summary = await env.run_pass()
    assert summary.submitted == 1
    again = env.load(record)
    assert again.status is TaskState.SUBMITTED and again.last_error is None
    assert again.unconfirmed_resubmits == 1
    assert [a.status for a in again.history] == [TaskState.UNCONFIRMED]


async def test_lost_replies_bill_a_frame_at_most_once_more_however_many_passes(
    start: Start,
) -> None:
    """Issue item 1: with a short submit timeout, one frame became 9 billed tasks, one per
    pass. Now a lost reply is `unconfirmed`, resubmitted within the budget (default 1)."""
    env = await start(slow_seconds=0.2)
    client = env.new_client(submit_read_timeout=0.02)
    env.emu.inject("slow", count=20, action=SUBMIT)
    record = env.add("f1")
    await submit_records(client, env.store, [record], clock=env.now)
    passes = [await env.checker(client).run_pass() for _ in range(8)]
    # Every slow submit still creates its task after the client gave up on it.
    await env.wait_until(lambda: env.emu.stats()["tasks_submitted"] == _submits(env))
    assert _submits(env) == 2 and env.emu.stats()["tasks_submitted"] == 2
    saved = env.load(record)
    assert saved.status is TaskState.UNCONFIRMED and saved.unconfirmed_resubmits == 1
    last = passes[-1]
    assert last.waiting == 1 and last.unfinished == 0 and last.exit_code == 1
    assert sum(p.submitted for p in passes) == 0


async def test_the_unconfirmed_budget_is_the_users_to_set(start: Start) -> None:
    env = await start(slow_seconds=0.2)
    client = env.new_client(submit_read_timeout=0.02)
    env.emu.inject("slow", count=20, action=SUBMIT)
    record = env.add("f1")
    for _ in range(5):
        await env.checker(client, unconfirmed_budget=0).run_pass()
    assert _submits(env) == 1  # budget 0: a lost reply is never resubmitted automatically
    for _ in range(5):
        await env.checker(client, unconfirmed_budget=3).run_pass()
    assert _submits(env) == 4
    assert env.load(record).unconfirmed_resubmits == 3


async def test_a_process_killed_mid_submit_leaves_an_unconfirmed_record(start: Start) -> None:
    """The record is marked before the request leaves; a marked pending record whose lock
    nobody holds means its submitter died with the answer in the air."""
    env = await start()
    record = env.add("f1")
    marked = transition(record, TaskState.PENDING, now=env.now(), submit_started_at=env.now())
    env.store.save(marked)  # what a SIGKILL during the request leaves on disk
    summary = await env.run_pass(unconfirmed_budget=0)
    assert summary.submitted == 0 and _submits(env) == 0
    saved = env.load(record)
    assert saved.status is TaskState.UNCONFIRMED and saved.submit_started_at is None
    assert saved.last_error is not None and "stopped before" in saved.last_error.message
    assert summary.waiting == 1 and summary.exit_code == 1
    summary = await env.run_pass()  # with the default budget of 1: resubmitted once
    assert summary.submitted == 1 and env.load(record).status is TaskState.SUBMITTED


async def test_server_error_on_submit_is_retried_or_left_pending(start: Start) -> None:
    env = await start()
    # The emulator's server errors alternate: business 50500 first, then the gateway's
    # InternalError, after which the service may have created the task.
    env.emu.inject("server_error", count=1, action=SUBMIT)
    first = env.add("f1")
    outcome = await submit_record(env.client, env.store, first, clock=env.now)
    assert outcome.accepted  # 50500: the client asked again at once
    assert _submits(env) == 2 and env.emu.stats()["tasks_submitted"] == 1

    env.emu.inject("server_error", count=1, action=SUBMIT)
    second = env.add("f2")
    outcome = await submit_record(env.client, env.store, second, clock=env.now)
    assert outcome.unconfirmed  # gateway InternalError: the service may have the task
    saved = env.load(second)
    assert saved.last_error is not None and saved.last_error.code == "InternalError"
    assert _submits(env) == 3


# -- input the API would refuse ---------------------------------------------------------------


async def test_missing_character_image_fails_the_record_naming_the_path(start: Start) -> None:
    env = await start()
    good = env.image("lin.png")
    missing = env.root / "chars" / "nobody.png"
    record = env.add("f1", character_images=[str(good), str(missing)])
    outcome = await submit_record(env.client, env.store, record, clock=env.now)
    assert outcome.rejected and isinstance(outcome.error, InvalidInput)
    saved = env.load(record)
    assert saved.status is TaskState.FAILED
    assert saved.last_error is not None
    message = saved.last_error.message
    assert "character_images[1]" in message and str(missing) in message
    assert "no such file" in message and "\n" not in message
    assert not saved.last_error.resubmittable and not saved.last_error.retryable
    assert _submits(env) == 0  # refused locally, nothing sent


async def test_size_below_the_models_minimum_fails_naming_the_field(start: Start) -> None:
    env = await start()
    record = env.add("f1", size="720x1280")
    outcome = await submit_record(env.client, env.store, record, clock=env.now)
    assert outcome.rejected
    saved = env.load(record)
    assert saved.status is TaskState.FAILED and saved.last_error is not None
    message = saved.last_error.message
    assert "720" in message and "1280" in message and "minimum" in message
    assert "1440x2560" in message  # the suggested size
    assert "\n" not in message
    assert _submits(env) == 0


async def test_unknown_param_is_refused_naming_it(start: Start) -> None:
    env = await start()
    record = env.add("f1", params={"sise": 3})
    outcome = await submit_record(env.client, env.store, record, clock=env.now)
    assert outcome.rejected
    assert "sise" in (env.load(record).last_error or pytest.fail("no error")).message


# -- references -------------------------------------------------------------------------------


async def test_references_are_sent_as_base64_but_never_stored(start: Start) -> None:
    env = await start(images_per_task=15)
    lin = env.image("lin.png", color=(10, 20, 30))
    mei = env.image("mei.jpg", color=(200, 100, 0), fmt="JPEG")
    record = env.add("f1", character_images=[str(lin), str(mei)], params={"force_single": False})
    fields = request_fields(record)
    encoded = [base64.b64encode(p.read_bytes()).decode() for p in (lin, mei)]
    assert fields["binary_data_base64"] == encoded

    outcome = await submit_record(env.client, env.store, record, clock=env.now)
    assert outcome.accepted
    text = env.store.path_for(outcome.record).read_text("utf-8")
    assert "binary_data_base64" not in text
    assert all(e[:40] not in text for e in encoded)
    saved = env.load(record)
    assert saved.character_images == [str(lin), str(mei)]
    assert "binary_data_base64" not in saved.params

    # The emulator got both: a task returns at most 15 images minus the references.
    env.advance(10)
    result = await env.client.get_result(saved.req_key, saved.task_id or "")
    assert len(result.image_urls) == 13


async def test_references_are_reread_from_disk_at_each_submission(start: Start) -> None:
    env = await start()
    lin = env.image("lin.png", color=(1, 2, 3))
    record = env.add("f1", character_images=[str(lin)])
    first = request_fields(record)["binary_data_base64"]
    env.image("lin.png", color=(9, 9, 9))  # the user redraws the character sheet
    assert request_fields(record)["binary_data_base64"] != first


# -- a batch ----------------------------------------------------------------------------------


async def test_batch_stops_at_the_first_concurrency_refusal(start: Start) -> None:
    env = await start(concurrency=1)
    records = [env.add(f"f{i}") for i in range(4)]
    batch = await submit_records(env.client, env.store, records, clock=env.now, parallel=1)
    assert (batch.submitted, batch.queued, batch.rejected) == (1, 3, 0)
    assert [o.record.status for o in batch.outcomes] == [
        TaskState.SUBMITTED,
        TaskState.PENDING,
        TaskState.PENDING,
        TaskState.PENDING,
    ]
    # The second was refused (50430, not retried by the client); the rest were never sent.
    assert _submits(env) == 2
    assert env.emu.stats()["errors"] == {"50430": 1}
    refused = env.load(records[1])
    assert refused.status is TaskState.PENDING and refused.last_error is not None
    assert refused.last_error.kind == "ConcurrencyLimited" and refused.last_error.code == 50430
    assert [env.load(r).last_error for r in records[2:]] == [None, None]


async def test_parallel_batch_sends_little_after_a_refusal(start: Start) -> None:
    env = await start(concurrency=1)
    records = [env.add(f"f{i:02}") for i in range(12)]
    batch = await submit_records(env.client, env.store, records, clock=env.now)
    assert batch.submitted == 1 and batch.queued == 11
    # At most the requests already in flight when the first refusal arrived.
    assert _submits(env) <= 5
    assert sum(r.status is TaskState.PENDING for r in env.load_all()) == 11


async def test_batch_skips_a_record_locked_elsewhere(start: Start) -> None:
    env = await start()
    a, b = env.add("a"), env.add("b")
    other = type(env.store)(env.tasks_dir)  # another process on the same folder
    with other.lock(a) as held:
        assert held
        batch = await submit_records(env.client, env.store, [a, b], clock=env.now)
    assert [o.record.status for o in batch.outcomes] == [TaskState.PENDING, TaskState.SUBMITTED]
    assert env.load(a).status is TaskState.PENDING and _submits(env) == 1


async def test_workspace_submit_reports_invalid_requests_without_writing_them(
    start: Start,
) -> None:
    env = await start()
    report = await env.workspace().submit(
        [
            env.request("ok"),
            env.request("bad-style", style="cubism"),
            env.request("bad-area", size="720x1280"),
        ]
    )
    assert (report.submitted, report.queued, report.rejected) == (1, 0, 2)
    reasons = report.reasons()
    assert len(reasons) == 2 and all("\n" not in r for r in reasons)
    assert any("bad-style.png" in r and "style='cubism'" in r for r in reasons)
    assert any("bad-area.png" in r and "720" in r for r in reasons)
    statuses = sorted(r.status.value for r in env.load_all())
    assert statuses == ["failed", "submitted"]  # the bad style never became a record
