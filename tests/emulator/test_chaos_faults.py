"""The fault kinds the reliability suite (`make chaos`) adds: `limit`, `truncated_body`, and
image downloads drawn at random (`image_fault_rate`)."""

from __future__ import annotations

import io
from collections import Counter

import pytest
from PIL import Image

from asyncimg.emulator import EmulatorConfig, FaultKind
from asyncimg.emulator.faults import HOSTILE_RESULTS, HOSTILE_TASK_IDS, FaultPlan

from .conftest import RESULT, SUBMIT, V40, Start


def _decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except Exception:
        return False
    return True


async def test_limit_answers_50429_and_50430_in_turn_and_creates_no_task(start: Start) -> None:
    emu, api = await start()
    emu.inject(FaultKind.LIMIT, count=2, action=SUBMIT)
    replies = [await api.call(SUBMIT, {"req_key": V40, "prompt": "x"}) for _ in range(3)]
    assert [(r.status, r.body["code"]) for r in replies[:2]] == [(429, 50430), (429, 50429)]
    assert replies[2].code == 10000
    assert emu.stats()["tasks_submitted"] == 1
    emu.inject(FaultKind.LIMIT, action=RESULT)
    task_id = replies[2].data["task_id"]
    poll = await api.poll(task_id)
    assert (poll.status, poll.code) == (429, 50429)
    assert (await api.poll(task_id)).code == 10000


async def test_truncated_body_cuts_one_download_only(start: Start) -> None:
    emu, api = await start()
    task_id = await api.submit()
    emu.advance(10)
    url = (await api.poll(task_id, return_url=True)).data["image_urls"][0]
    emu.inject(FaultKind.TRUNCATED_BODY, action="image")
    status, cut, _ = await api.get(url)
    assert status == 200 and not _decodes(cut)
    status, whole, _ = await api.get(url)
    assert status == 200 and _decodes(whole) and len(cut) == len(whole) // 2
    stats = emu.stats()
    assert stats["image_downloads_by_task"] == {task_id: 2}
    assert stats["faults_fired"] == {"truncated_body": 1}


def test_image_faults_are_drawn_only_with_an_image_rate_and_keep_request_draws() -> None:
    kinds = frozenset(FaultKind)
    plain = FaultPlan(0.3, kinds, seed=5)
    with_images = FaultPlan(0.3, kinds, seed=5, image_rate=0.5)
    assert [plain.for_image() for _ in range(50)] == [None] * 50
    drawn = Counter(with_images.for_image() for _ in range(400))
    assert set(drawn) - {None} == {
        FaultKind.SERVER_ERROR,
        FaultKind.DROP,
        FaultKind.SLOW,
        FaultKind.TRUNCATED_BODY,
    }
    assert 120 < sum(n for k, n in drawn.items() if k is not None) < 280
    # Turning image faults on does not change which API requests get a fault.
    assert [plain.for_request(SUBMIT) for _ in range(50)] == [
        with_images.for_request(SUBMIT) for _ in range(50)
    ]


def test_image_fault_rate_is_checked() -> None:
    with pytest.raises(ValueError, match="image_fault_rate"):
        EmulatorConfig(access_key="AK", secret_key="SK", image_fault_rate=1.5)


async def test_hostile_task_id_bills_a_task_and_hands_out_the_next_hostile_value(
    start: Start,
) -> None:
    emu, api = await start()
    emu.inject(FaultKind.HOSTILE_TASK_ID, count=len(HOSTILE_TASK_IDS), action=SUBMIT)
    ids = []
    for _ in HOSTILE_TASK_IDS:
        reply = await api.call(SUBMIT, {"req_key": V40, "prompt": "x"})
        assert reply.code == 10000
        ids.append(reply.data["task_id"])
    assert ids == list(HOSTILE_TASK_IDS)
    assert emu.stats()["tasks_submitted"] == len(HOSTILE_TASK_IDS)
    assert isinstance(await api.submit(), str)  # and then real ids again


async def test_hostile_result_reshapes_a_finished_tasks_reply_in_turn(start: Start) -> None:
    emu, api = await start()
    task_id = await api.submit()
    emu.advance(10)
    emu.inject(FaultKind.HOSTILE_RESULT, count=len(HOSTILE_RESULTS), action=RESULT)
    seen = []
    for _ in HOSTILE_RESULTS:
        reply = await api.poll(task_id, return_url=True)
        assert reply.code == 10000
        seen.append(_shape(reply.data))
    url = (await api.poll(task_id, return_url=True)).data["image_urls"][0]
    assert seen == [
        {"status": "done", "image_urls": url},
        None,
        {"status": 2, "image_urls": [url]},
        {"status": "done", "image_urls": ["file:///etc/passwd"]},
        {"status": "done", "image_urls": [12345]},
        {"status": "done", "binary_data_base64": ["!!! not base64 !!!"]},
    ]


def _shape(data: object) -> object:
    """The reply's data without the keys every real reply carries (`algorithm_base_resp`,
    `resp_data`, the unused image key as null): what the hostile shape changed."""
    if not isinstance(data, dict):
        return data
    usual = {"algorithm_base_resp", "resp_data"}
    return {
        k: v
        for k, v in data.items()
        if k not in usual and not (k == "binary_data_base64" and v is None)
    }
