"""The official SDK, unchanged, against the emulator over a real socket (spec §7)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import urllib.request
from typing import Any

import pytest
from PIL import Image
from volcengine.visual.VisualService import VisualService

from asyncimg.emulator import Emulator, EmulatorConfig

from .conftest import V40

AK, SK = "AKLTsdkcheck", "sdk-check-secret"


def _service(port: int, secret: str = SK, token: str | None = None) -> VisualService:
    svc = VisualService()
    svc.set_ak(AK)
    svc.set_sk(secret)
    if token:
        svc.set_session_token(token)
    svc.set_host(f"127.0.0.1:{port}")
    svc.set_scheme("http")
    return svc


def _fetch(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.headers["Content-Type"], resp.read()


async def test_sdk_submit_poll_download() -> None:
    async with Emulator(EmulatorConfig(access_key=AK, secret_key=SK, gen_seconds=(5, 5))) as emu:
        svc = _service(emu.port)
        submitted: dict[str, Any] = await asyncio.to_thread(
            svc.cv_sync2async_submit_task,
            {"req_key": V40, "prompt": "山间小屋 a cabin in the mountains", "size": 1024 * 1024},
        )
        assert submitted["code"] == 10000, submitted
        task_id = submitted["data"]["task_id"]
        form = {"req_key": V40, "task_id": task_id, "req_json": json.dumps({"return_url": True})}
        statuses = []
        for _ in range(3):
            reply = await asyncio.to_thread(svc.cv_sync2async_get_result, form)
            assert reply["code"] == 10000, reply
            statuses.append(reply["data"]["status"])
            emu.advance(2.5)
        assert statuses == ["in_queue", "generating", "done"]
        (url,) = reply["data"]["image_urls"]
        content_type, data = await asyncio.to_thread(_fetch, url)
        assert content_type == "image/png"
        assert Image.open(io.BytesIO(data)).size == (1024, 1024)

        reply = await asyncio.to_thread(
            svc.cv_sync2async_get_result, {"req_key": V40, "task_id": task_id}
        )
        (encoded,) = reply["data"]["binary_data_base64"]
        assert base64.b64decode(encoded) == data


async def test_sdk_session_token() -> None:
    config = EmulatorConfig(access_key=AK, secret_key=SK, session_token="sts-1")
    async with Emulator(config) as emu:
        svc = _service(emu.port, token="sts-1")
        reply = await asyncio.to_thread(
            svc.cv_sync2async_submit_task, {"req_key": V40, "prompt": "x"}
        )
        assert reply["code"] == 10000, reply


async def test_sdk_wrong_secret() -> None:
    async with Emulator(EmulatorConfig(access_key=AK, secret_key=SK)) as emu:
        svc = _service(emu.port, secret="not-the-secret")
        with pytest.raises(Exception, match="SignatureDoesNotMatch") as info:
            await asyncio.to_thread(svc.cv_sync2async_submit_task, {"req_key": V40, "prompt": "x"})
        assert "100010" in str(info.value)
        assert SK not in str(info.value)
        assert emu.stats()["tasks_submitted"] == 0


async def test_sdk_cancel_task() -> None:
    """The SDK's cv_cancel_task (Version 2024-06-06) reaches the emulator's CVCancelTask."""
    async with Emulator(EmulatorConfig(access_key=AK, secret_key=SK, gen_seconds=(5, 5))) as emu:
        svc = _service(emu.port)
        submitted = await asyncio.to_thread(
            svc.cv_sync2async_submit_task, {"req_key": V40, "prompt": "a cabin"}
        )
        task_id = submitted["data"]["task_id"]
        reply = await asyncio.to_thread(svc.cv_cancel_task, {"req_key": V40, "task_id": task_id})
        assert reply["code"] == 10000, reply
        polled = await asyncio.to_thread(
            svc.cv_sync2async_get_result, {"req_key": V40, "task_id": task_id}
        )
        assert polled["data"]["status"] == "not_found"
