"""Injected and seeded faults (spec §7)."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from typing import Any

import aiohttp
import pytest
from PIL import Image

from asyncimg.emulator import Emulator, EmulatorConfig, FaultKind
from asyncimg.protocol.signing import Credentials

from .conftest import RESULT, SUBMIT, V40, Api, Start


async def test_server_error_alternates(start: Start) -> None:
    emu, api = await start()
    emu.inject(FaultKind.SERVER_ERROR, count=3)
    replies = [await api.call(SUBMIT, {"req_key": V40, "prompt": "x"}) for _ in range(4)]
    assert [r.status for r in replies] == [500, 500, 500, 200]
    assert (replies[0].code, replies[0].data) == (50500, None)
    assert replies[1].error == {
        "Code": "InternalError",
        "CodeN": 100014,
        "Message": replies[1].error["Message"],
    }
    assert replies[2].code == 50500
    assert replies[3].code == 10000
    assert emu.stats()["tasks_submitted"] == 1
    assert emu.stats()["errors"] == {"50500": 2, "InternalError": 1}


async def test_fault_only_hits_its_action(start: Start) -> None:
    emu, api = await start()
    emu.inject("server_error", action=RESULT)
    task_id = await api.submit()
    assert (await api.poll(task_id)).status == 500
    assert (await api.poll(task_id)).status == 200


async def test_slow(start: Start) -> None:
    emu, api = await start(slow_seconds=0.3)
    emu.inject(FaultKind.SLOW)
    began = time.perf_counter()
    task_id = await api.submit()
    assert time.perf_counter() - began >= 0.3
    began = time.perf_counter()
    await api.poll(task_id)
    assert time.perf_counter() - began < 0.3


async def test_slow_is_held_until_released(start: Start) -> None:
    """`release_slow` lets a held request go at once; a later `slow` fault waits again."""
    emu, api = await start(slow_seconds=600.0)
    emu.inject(FaultKind.SLOW, count=2, action=SUBMIT)
    async with asyncio.timeout(30):  # a request never released fails, never hangs
        for n in (1, 2):
            job = asyncio.create_task(api.submit())
            for _ in range(5000):  # until the emulator holds it
                if emu.stats()["faults_fired"].get("slow", 0) == n:
                    break
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.05)
            assert not job.done() and emu.stats()["tasks_submitted"] == n - 1
            emu.release_slow()
            assert await job


async def test_drop(start: Start) -> None:
    emu, api = await start()
    emu.inject(FaultKind.DROP, action=SUBMIT)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.call(SUBMIT, {"req_key": V40, "prompt": "x"})
    assert emu.stats()["tasks_submitted"] == 0
    await api.submit()
    assert emu.stats()["faults_fired"] == {"drop": 1}


async def test_review_failure(start: Start) -> None:
    emu, api = await start()
    emu.inject(FaultKind.REVIEW_FAILURE)
    task_id = await api.submit()
    healthy = await api.submit()
    assert (await api.poll(task_id)).data["status"] == "in_queue"
    emu.advance(10)
    reply = await api.poll(task_id, return_url=True)
    assert (reply.status, reply.code, reply.data) == (400, 50511, None)
    assert (await api.get(f"/_emulator/images/{task_id}/0.png"))[0] == 404
    assert (await api.poll(healthy)).code == 10000


async def test_no_image(start: Start) -> None:
    emu, api = await start(images_per_task=2)
    emu.inject(FaultKind.NO_IMAGE)
    task_id = await api.submit()
    emu.advance(10)
    data = (await api.poll(task_id)).data
    assert (data["status"], data["binary_data_base64"]) == ("done", [])
    reply = await api.poll(task_id, return_url=True)
    assert (reply.code, reply.data["status"], reply.data["image_urls"]) == (10000, "done", [])
    assert (await api.get(f"/_emulator/images/{task_id}/0.png"))[0] == 404


async def test_base64_only_ignores_return_url(start: Start) -> None:
    emu, api = await start()
    emu.inject(FaultKind.BASE64_ONLY)
    task_id = await api.submit()
    emu.advance(10)
    reply = await api.poll(task_id, return_url=True)
    assert reply.code == 10000 and reply.data["image_urls"] is None
    assert len(reply.data["binary_data_base64"]) == 1


def _decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
    except OSError:
        return False
    return True


async def test_truncated_image(start: Start) -> None:
    emu, api = await start()
    emu.inject(FaultKind.TRUNCATED_IMAGE)
    cut = await api.submit(size=1024 * 1024)
    whole = await api.submit(size=1024 * 1024)
    emu.advance(10)
    (encoded,) = (await api.poll(cut)).data["binary_data_base64"]
    cut_b64 = base64.b64decode(encoded)
    (url,) = (await api.poll(cut, return_url=True)).data["image_urls"]
    status, cut_url, _ = await api.get(url)
    assert status == 200 and cut_url == cut_b64
    (encoded,) = (await api.poll(whole)).data["binary_data_base64"]
    whole_bytes = base64.b64decode(encoded)
    assert _decodes(whole_bytes)
    assert not _decodes(cut_b64)
    assert abs(len(cut_b64) - len(whole_bytes) / 2) < len(whole_bytes) / 4


async def test_inject_over_http(start: Start) -> None:
    emu, api = await start()
    async with api.session.post(
        f"{emu.url}/_emulator/faults", json={"kind": "server_error", "count": 2, "action": SUBMIT}
    ) as resp:
        assert resp.status == 200
    codes = [(await api.call(SUBMIT, {"req_key": V40, "prompt": "x"})).status for _ in range(3)]
    assert codes == [500, 500, 200]


@pytest.mark.parametrize(
    "body",
    [
        {"kind": "meteor"},
        {"kind": "slow", "count": 0},
        {"kind": "slow", "action": "CVProcess"},
        {"kind": "no_image", "action": RESULT},
        {"kind": "slow", "count": "2"},
        [1],
    ],
)
async def test_inject_over_http_rejects(start: Start, body: Any) -> None:
    emu, api = await start()
    async with api.session.post(f"{emu.url}/_emulator/faults", json=body) as resp:
        assert resp.status == 400
        assert "error" in await resp.json()


async def _run_seeded(seed: int, session: aiohttp.ClientSession) -> tuple[list[str], list[Any]]:
    config = EmulatorConfig(
        access_key="AK",
        secret_key="SK",
        seed=seed,
        fault_rate=0.4,
        fault_kinds=frozenset(
            {FaultKind.SERVER_ERROR, FaultKind.REVIEW_FAILURE, FaultKind.NO_IMAGE}
        ),
        gen_seconds=(1.0, 3.0),
    )
    async with Emulator(config) as emu:
        api = Api(emu, session)
        creds = Credentials("AK", "SK")
        ids: list[str] = []
        outcomes: list[Any] = []
        for i in range(12):
            reply = await api.call(SUBMIT, {"req_key": V40, "prompt": f"p{i}"}, credentials=creds)
            outcomes.append(reply.status)
            if reply.status == 200:
                ids.append(reply.data["task_id"])
        emu.advance(3)
        for task_id in ids:
            reply = await api.call(RESULT, {"req_key": V40, "task_id": task_id}, credentials=creds)
            data = reply.body.get("data") or {}
            outcomes.append((reply.status, reply.body.get("code"), data.get("binary_data_base64")))
        return ids, outcomes


async def test_seed_reproduces_ids_and_faults() -> None:
    async with aiohttp.ClientSession() as session:
        a = await _run_seeded(7, session)
        b = await _run_seeded(7, session)
        c = await _run_seeded(8, session)
    assert a == b
    assert a[0] != c[0]
    submits = [o for o in a[1] if isinstance(o, int)]
    assert 500 in submits and 200 in submits
    polls = [o for o in a[1] if isinstance(o, tuple)]
    assert (400, 50511, None) in polls
    assert (200, 10000, []) in polls
    assert any(code == 10000 and images for _, code, images in polls)


async def test_image_faults_hit_only_image_downloads(start: Start) -> None:
    emu, api = await start()
    task_id = await api.submit()
    emu.advance(10)
    url = (await api.poll(task_id, return_url=True)).data["image_urls"][0]
    emu.inject(FaultKind.SERVER_ERROR, action="image")
    emu.inject(FaultKind.SLOW)  # no action: the next API request, not the image
    assert (await api.get(url))[0] == 502
    status, data, _ = await api.get(url)
    assert status == 200 and _decodes(data)
    assert emu.stats()["faults_fired"] == {"server_error": 1}
    # aiohttp repeats an idempotent GET once on a reused connection that drops: drop both.
    emu.inject(FaultKind.DROP, count=2, action="image")
    with pytest.raises(aiohttp.ClientError):
        await api.get(url)
