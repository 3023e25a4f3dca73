"""Pay exactly once: the reproductions of issue 6's items 3, 6, 7, 11 and 12.

Each test drives the real client against the real emulator on a socket. The emulator is
seeded, so its task ids repeat from one emulator to the next (item 11 uses that).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from asyncimg import constants
from asyncimg.lifecycle import decide
from asyncimg.lifecycle.submit import RecordNotSaved, billing_warnings, submit_records
from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.errors import RequestRefused, classify_business, classify_gateway
from asyncimg.protocol.signing import Credentials
from asyncimg.store.states import TaskState
from asyncimg.store.store import TaskStore

if TYPE_CHECKING:
    from conftest import Env, Start

S = TaskState
SUBMIT = constants.ACTION_SUBMIT
RESULT = constants.ACTION_GET_RESULT


def _status(env: Env, local_id: str) -> TaskState:
    return TaskStore(env.tasks_dir).get(local_id).status


async def _accepted(env: Env, *names: str) -> list[str]:
    records = [env.add(name) for name in names]
    summary = await env.run_pass()
    assert summary.submitted == len(names)
    return [r.local_id for r in records]


# -- item 3: a task id the API returned is never lost while the process lives ---------------


async def test_a_record_that_cannot_be_written_after_acceptance_names_the_task_and_the_fix(
    start: Start,
) -> None:
    env = await start()
    record = env.add("f1")
    # The seeded emulator's first task id is known; directories at both names the record
    # could take make every write of the accepted record fail (as a full disk would).
    probe = await start()
    first_id = await probe.client.submit("jimeng_t2i_v40", {"prompt": "x", "size": 1024**2})
    for name in (f"{first_id}.json", f"{first_id}.{record.local_id[:12]}.json"):
        (env.tasks_dir / name).mkdir()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    with pytest.raises(RecordNotSaved) as info:
        await submit_records(env.client, env.store, [record], clock=env.now, sleep=sleep)
    error = info.value
    assert error.task_id == first_id and len(slept) == 2  # tried three times
    text = str(error)
    assert first_id in text and str(env.out_dir / "f1.png") in text and "\n" not in text
    assert f"asyncimg adopt {first_id} -o " in text and "--req-key jimeng_t2i_v40" in text
    assert str(env.tasks_dir.absolute()) in text
    assert env.emu.stats()["tasks_submitted"] == 1


async def test_a_check_pass_stops_on_an_unwritable_record_and_says_how_to_adopt(
    start: Start,
) -> None:
    env = await start()
    record = env.add("f1")
    probe = await start()
    first_id = await probe.client.submit("jimeng_t2i_v40", {"prompt": "x", "size": 1024**2})
    for name in (f"{first_id}.json", f"{first_id}.{record.local_id[:12]}.json"):
        (env.tasks_dir / name).mkdir()
    lines: list[str] = []
    summary = await env.checker(report=lines.append).run_pass()
    assert summary.halted is not None and first_id in summary.halted
    assert summary.exit_code == 2
    assert any(f"asyncimg adopt {first_id}" in line for line in lines)


# -- item 6: a wrong key never fails a frame the API never accepted ---------------------------


async def test_a_wrong_key_at_submit_keeps_the_frames_queued_and_stops(start: Start) -> None:
    env = await start()
    wrong = VisualClient(
        Credentials(env.client.access_key, "not-the-secret"),
        endpoint=env.emu.url,
        clock=lambda: datetime.fromtimestamp(env.emu.now(), UTC),
        retry_base_delay=0,
    )
    records = [env.add(f"f{i}") for i in range(3)]
    async with wrong:
        batch = await submit_records(wrong, env.store, records, clock=env.now)
    assert batch.halted is not None and "SignatureDoesNotMatch" in str(batch.halted)
    assert batch.rejected == 0
    assert [_status(env, r.local_id) for r in records] == [S.PENDING] * 3
    assert env.emu.stats()["tasks_submitted"] == 0
    summary = await env.run_pass()  # the right key: every frame goes out, once
    assert summary.submitted == 3 and env.emu.stats()["tasks_submitted"] == 3


# -- item 7: our own request refused on a poll fails no paid task ------------------------------


@pytest.mark.parametrize(("fault", "word"), [("gateway_refusal", "MissingParameter"),
                                             ("param_error", "50200")])  # fmt: skip
async def test_a_poll_refused_as_malformed_stops_the_pass_and_fails_nothing(
    start: Start, fault: str, word: str
) -> None:
    env = await start()
    local_ids = await _accepted(env, "f1", "f2", "f3")
    env.advance(10)
    env.emu.inject(fault, count=3, action=RESULT)
    lines: list[str] = []
    summary = await env.checker(report=lines.append).run_pass()
    assert summary.failed == 0 and summary.halted is not None and word in summary.halted
    assert summary.exit_code == 2
    assert sum(line.startswith("stopping this pass") for line in lines) == 1
    assert [_status(env, i) for i in local_ids] == [S.SUBMITTED] * 3
    assert "fix the prompt" not in summary.halted
    summary = await env.run_pass()
    assert [_status(env, i) for i in local_ids] == [S.COMPLETED] * 3
    assert env.emu.stats()["tasks_submitted"] == 3


# -- item 11: a task id the API repeats never overwrites another task's record ----------------


async def test_a_repeated_task_id_is_kept_apart_and_reported(start: Start) -> None:
    env = await start()
    [first] = await _accepted(env, "f1")
    replay = await start()  # same seed: it hands out the same task ids again
    second = env.add("f2")
    client = env.new_client(endpoint=replay.emu.url)
    batch = await submit_records(client, env.store, [second], clock=env.now)
    [outcome] = batch.outcomes
    assert outcome.accepted and outcome.warning is not None
    one = TaskStore(env.tasks_dir).get(first)
    two = TaskStore(env.tasks_dir).get(second.local_id)
    assert one.task_id == two.task_id
    assert one.output_path.endswith("f1.png") and two.output_path.endswith("f2.png")
    files = sorted(p.name for p in env.tasks_dir.glob("*.json"))
    assert files == sorted([f"{one.task_id}.json", f"{one.task_id}.{second.local_id[:12]}.json"])
    assert one.task_id in outcome.warning and "kept apart" in outcome.warning
    assert len(TaskStore(env.tasks_dir).load_all().records) == 2


# -- item 12: one image per frame unless asked -------------------------------------------------


async def test_frames_ask_for_one_image_unless_told_otherwise(start: Start) -> None:
    env = await start(images_per_task=4)
    default = env.add("one")
    many = env.add("many", params={"force_single": False})
    assert default.params["force_single"] is True
    assert billing_warnings(default) == []
    [warning] = billing_warnings(many)
    assert "many.png" in warning and "force_single is false" in warning and "15" in warning
    await env.run_pass()
    env.advance(10)
    await env.run_pass()
    assert sorted(p.name for p in env.out_dir.iterdir()) == [
        "many.png",
        "many_2.png",
        "many_3.png",
        "many_4.png",
        "one.png",
    ]


async def test_a_batch_that_asks_for_many_images_is_warned(start: Start) -> None:
    env = await start()
    report = await env.workspace().submit([env.request("many", params={"force_single": False})])
    assert len(report.warnings) == 1 and "may return and bill up to" in report.warnings[0]


# -- found in review ---------------------------------------------------------------------------


async def test_every_task_accepted_before_a_full_disk_is_named(start: Start) -> None:
    """Parallel submits hit an unwritable folder together: each accepted task id (and its
    adopt command) reaches the user, not only the first."""
    env = await start()
    records = [env.add(f"f{i}") for i in range(3)]
    probe = await start()
    ids = [
        await probe.client.submit("jimeng_t2i_v40", {"prompt": "x", "size": 1024**2})
        for _ in records
    ]
    for task_id in ids:
        (env.tasks_dir / f"{task_id}.json").mkdir()
        for record in records:
            (env.tasks_dir / f"{task_id}.{record.local_id[:12]}.json").mkdir()

    async def no_sleep(_seconds: float) -> None:
        return None

    with pytest.raises(RecordNotSaved) as info:
        await submit_records(env.client, env.store, records, clock=env.now, sleep=no_sleep)
    assert env.emu.stats()["tasks_submitted"] == 3
    text = str(info.value)
    for task_id in ids:
        assert f"asyncimg adopt {task_id} -o " in text
    assert len(info.value.others) == 2


async def test_an_unlisted_gateway_refusal_on_a_poll_fails_no_paid_task(start: Start) -> None:
    env = await start()
    [local_id] = await _accepted(env, "f1")
    refused = classify_gateway("RequestExpired", "expired", "r", 400)
    assert isinstance(refused, RequestRefused) and refused.unrecognised
    decision = decide.after_error(refused)
    assert decision.halt and decision.state is None
    assert _status(env, local_id) is S.SUBMITTED


def test_an_unknown_business_code_on_a_poll_is_a_stalled_poll_not_a_failure() -> None:
    odd = classify_business(50999, "something new", "r", 400)
    assert odd.unrecognised
    decision = decide.after_error(odd)
    assert decision.stalled and decision.state is None
    known = classify_business(50511, "", "r", 400)
    assert not known.unrecognised and decide.after_error(known).fails
