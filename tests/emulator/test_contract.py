"""The real error contract (research §3, §5; issue 10 findings 2 and 5): each test here
failed against the emulator on main."""

from __future__ import annotations

import pytest

from asyncimg import constants
from asyncimg.emulator.faults import FaultKind

from .conftest import SUBMIT, V40, Start

CANCEL = constants.ACTION_CANCEL
INVALID = "Input invalid for this service."


async def test_unknown_fields_are_ignored_by_default(start: Start) -> None:
    emu, api = await start()
    reply = await api.call(SUBMIT, {"req_key": V40, "prompt": "x", "zz": 1, "seed": 5})
    assert (reply.status, reply.code) == (200, 10000), reply
    assert emu.stats()["tasks_submitted"] == 1


async def test_unknown_fields_are_refused_under_strict(start: Start) -> None:
    emu, api = await start(strict=True)
    reply = await api.call(SUBMIT, {"req_key": V40, "prompt": "x", "zz": 1})
    assert (reply.status, reply.code, reply.data) == (400, 50215, None), reply
    assert reply.body["message"].startswith(INVALID) and "zz" in reply.body["message"]
    assert emu.stats()["tasks_submitted"] == 0


async def test_parameter_errors_are_50215_http_400(start: Start) -> None:
    _, api = await start()
    reply = await api.call(SUBMIT, {"req_key": V40, "prompt": "x", "width": 100, "height": 100})
    assert (reply.status, reply.code, reply.body["status"]) == (400, 50215, 50215), reply
    assert reply.body["message"].startswith(INVALID)


async def test_late_invalid_accepts_then_fails_at_poll(start: Start) -> None:
    emu, api = await start()
    emu.inject(FaultKind.LATE_INVALID)
    task_id = await api.submit()
    assert (await api.poll(task_id)).data["status"] == "in_queue"
    emu.advance(10)
    reply = await api.poll(task_id, return_url=True)
    assert (reply.status, reply.code, reply.data) == (400, 50215, None), reply
    assert reply.body["message"] == INVALID
    assert (await api.get(f"/_emulator/images/{task_id}/0.png"))[0] == 404


@pytest.mark.parametrize("count", [3])
async def test_review_internal_errors_are_http_400(start: Start, count: int) -> None:
    emu, api = await start()
    emu.inject(FaultKind.REVIEW_INTERNAL_ERROR, count)
    ids = [await api.submit(prompt=f"frame {n}") for n in range(count)]
    emu.advance(10)
    for task_id in ids:
        reply = await api.poll(task_id, return_url=True)
        assert reply.status == 400, reply
        assert reply.code in (50520, 50521, 50522) and reply.data is None


async def test_done_data_carries_both_image_keys_and_extras(start: Start) -> None:
    emu, api = await start()
    task_id = await api.submit(width=1024, height=1024)
    emu.advance(10)
    data = (await api.poll(task_id, return_url=True)).data
    assert data["binary_data_base64"] is None and len(data["image_urls"]) == 1
    assert "algorithm_base_resp" in data


async def test_new_faults_are_opt_in_for_fault_rate(start: Start) -> None:
    emu, _ = await start()
    assert FaultKind.LATE_INVALID not in emu.config.fault_kinds
    emu2, api = await start(fault_rate=1.0, fault_kinds={FaultKind.LATE_INVALID}, seed=1)
    task_id = await api.submit()
    emu2.advance(10)
    assert (await api.poll(task_id)).code == 50215


async def test_cancel_a_queued_task_frees_its_slot(start: Start) -> None:
    emu, api = await start(concurrency=1)
    task_id = await api.submit()
    reply = await api.call(
        CANCEL, {"req_key": V40, "task_id": task_id}, version=constants.CANCEL_API_VERSION
    )
    assert (reply.status, reply.code) == (200, 10000), reply
    assert (await api.poll(task_id)).data["status"] == "not_found"
    await api.submit()  # the slot is free again: no 50430
    emu.advance(20)
    assert (await api.poll(task_id)).data["status"] == "not_found"
    assert (await api.get(f"/_emulator/images/{task_id}/0.png"))[0] == 404


async def test_cancel_refuses_a_generating_task(start: Start) -> None:
    emu, api = await start()
    task_id = await api.submit()
    emu.advance(5)  # 30 % of 10 s is queueing
    reply = await api.call(
        CANCEL, {"req_key": V40, "task_id": task_id}, version=constants.CANCEL_API_VERSION
    )
    assert (reply.status, reply.code) == (400, 50215), reply
    assert "generating" in reply.body["message"]
    emu.advance(5)
    assert (await api.poll(task_id)).data["status"] == "done"


async def test_cancel_needs_its_own_version(start: Start) -> None:
    _, api = await start()
    reply = await api.call(CANCEL, {"req_key": V40, "task_id": "1"})
    assert reply.error["Code"] == "InvalidActionOrVersion"
