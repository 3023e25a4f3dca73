"""Fixtures: emulators on real sockets with a clock the test moves, and a signing HTTP helper."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from PIL import Image

from asyncimg import constants
from asyncimg.emulator import Emulator, EmulatorConfig
from asyncimg.protocol import signing
from asyncimg.protocol.signing import Credentials

AK = "AKLTtestaccesskey"
SK = "test-secret-key"
CREDS = Credentials(AK, SK)
SUBMIT = constants.ACTION_SUBMIT
RESULT = constants.ACTION_GET_RESULT
V40 = "jimeng_t2i_v40"


class FakeClock:
    """Starts at the real time so signed X-Dates look normal; moves only when told."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


def png_b64(size: tuple[int, int] = (64, 64), color: tuple[int, int, int] = (255, 0, 0)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


class Reply:
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body

    @property
    def code(self) -> int:
        return int(self.body["code"])

    @property
    def data(self) -> Any:
        return self.body["data"]

    @property
    def error(self) -> dict[str, Any]:
        return dict(self.body["ResponseMetadata"]["Error"])

    def __repr__(self) -> str:
        return f"Reply({self.status}, {json.dumps(self.body)[:300]})"


class Api:
    """Signs requests like the client does (signing.sign) and returns status + JSON."""

    def __init__(self, emu: Emulator, session: aiohttp.ClientSession) -> None:
        self.emu = emu
        self.session = session

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.emu.port}"

    async def call(
        self,
        action: str,
        body: Mapping[str, Any] | bytes,
        *,
        credentials: Credentials = CREDS,
        now: float | None = None,
        version: str = constants.API_VERSION,
        query: Mapping[str, str] | None = None,
        send_body: bytes | None = None,
        mutate: Callable[[dict[str, str]], None] | None = None,
    ) -> Reply:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        params = dict(query) if query is not None else {"Action": action, "Version": version}
        sig = signing.sign(
            method="POST",
            host=self.host,
            path="/",
            query=params,
            body=raw,
            credentials=credentials,
            region=constants.REGION,
            service=constants.SERVICE,
            now=datetime.fromtimestamp(self.emu.wall_now() if now is None else now, UTC),
            headers={"Content-Type": "application/json"},
            scheme="http",
        )
        headers = dict(sig.headers)
        if mutate is not None:
            mutate(headers)
        async with self.session.post(
            f"{self.emu.url}/",
            params=params,
            data=raw if send_body is None else send_body,
            headers=headers,
        ) as resp:
            return Reply(resp.status, await resp.json(content_type=None))

    async def submit(self, req_key: str = V40, **fields: Any) -> str:
        fields.setdefault("prompt", "a red fox in the snow")
        reply = await self.call(SUBMIT, {"req_key": req_key, **fields})
        assert reply.status == 200 and reply.code == 10000, reply
        task_id = reply.data["task_id"]
        assert isinstance(task_id, str)
        return task_id

    async def poll(
        self, task_id: str, req_key: str = V40, *, return_url: bool | None = None
    ) -> Reply:
        body: dict[str, Any] = {"req_key": req_key, "task_id": task_id}
        if return_url is not None:
            body["req_json"] = json.dumps({"return_url": return_url})
        return await self.call(RESULT, body)

    async def get(self, path_or_url: str) -> tuple[int, bytes, str]:
        url = path_or_url if path_or_url.startswith("http") else self.emu.url + path_or_url
        async with self.session.get(url) as resp:
            return resp.status, await resp.read(), resp.content_type


Start = Callable[..., Awaitable[tuple[Emulator, Api]]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """`emu, api = await start(qps=2, ...)`: EmulatorConfig overrides; a FakeClock by default."""
    running: list[Emulator] = []
    session = aiohttp.ClientSession()

    async def _start(**overrides: Any) -> tuple[Emulator, Api]:
        settings: dict[str, Any] = {
            "access_key": AK,
            "secret_key": SK,
            "gen_seconds": (10.0, 10.0),
            "clock": FakeClock(),
        }
        settings.update(overrides)
        emu = Emulator(EmulatorConfig(**settings))
        await emu.start()
        running.append(emu)
        return emu, Api(emu, session)

    yield _start
    await session.close()
    for emu in running:
        await emu.close()
