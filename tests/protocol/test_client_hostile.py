"""The real client against a hostile (or broken) server on a real socket: odd reply shapes,
huge bodies, wrong content types, other URL schemes, redirect chains.

The server is a few aiohttp handlers whose replies each test sets; it does not check
signatures (the emulator's tests do that), only answers as told.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from asyncimg.protocol import models
from asyncimg.protocol.client import TaskStatus, VisualClient
from asyncimg.protocol.errors import NetworkError, ReplyUnreadable
from asyncimg.protocol.retry import submit_outcome_unknown
from asyncimg.protocol.signing import Credentials

CREDS = Credentials("AKLThostiletest", "sk-hostile-test-secret")
V40 = "jimeng_t2i_v40"
MB = 1000 * 1000  # decimal, as the service states its limits (models.MB)


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


class Hostile:
    """What the server answers: `reply` for the API, `routes` for image URLs."""

    def __init__(self) -> None:
        self.reply: Callable[[], web.StreamResponse | Awaitable[web.StreamResponse]] = lambda: (
            web.json_response({"code": 10000, "data": {"status": "in_queue"}})
        )
        self.routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}
        self.url = ""
        self.hits: dict[str, int] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        if request.path in self.routes:
            return await self.routes[request.path](request)
        answer = self.reply()
        return await answer if isinstance(answer, Awaitable) else answer

    def poll_data(self, data: Any) -> None:
        self.reply = lambda: web.json_response({"code": 10000, "message": "ok", "data": data})


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    server = Hostile()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


@pytest.fixture
async def make_client(hostile: Hostile) -> AsyncIterator[Callable[..., VisualClient]]:
    made: list[VisualClient] = []

    def _make(**overrides: Any) -> VisualClient:
        settings: dict[str, Any] = {"endpoint": hostile.url, "retry_base_delay": 0}
        settings.update(overrides)
        client = VisualClient(CREDS, **settings)
        made.append(client)
        return client

    yield _make
    for client in made:
        await client.close()


# -- shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"status": "done", "image_urls": "http://127.0.0.1/a.png"}, "data.image_urls is a string"),
        ({"status": "done", "image_urls": [7]}, "data.image_urls[0] is a number"),
        ({"status": "done", "binary_data_base64": "aGVsbG8="}, "binary_data_base64 is a string"),
        ({"status": "done", "image_urls": {"0": "x"}}, "data.image_urls is an object"),
        (None, "no data object (data is null)"),
        ("done", "no data object (data is a string)"),
        ({"status": 3}, "no data.status"),
        ({"status": "done", "image_urls": ["file:///etc/passwd"]}, "not an http(s) URL"),
        ({"status": "done", "image_urls": ["ftp://127.0.0.1/a.png"]}, "not an http(s) URL"),
    ],
    ids=[
        "urls-string",
        "urls-number",
        "b64-string",
        "urls-object",
        "data-null",
        "data-string",
        "status-number",
        "file-url",
        "ftp-url",
    ],
)
async def test_a_poll_reply_of_the_wrong_shape_is_reply_unreadable(
    hostile: Hostile, make_client: Callable[..., VisualClient], data: Any, words: str
) -> None:
    """A bare string used to be read character by character as URLs, retried for ever."""
    hostile.poll_data(data)
    with pytest.raises(ReplyUnreadable) as caught:
        await make_client(max_attempts=1).get_result(V40, "7392")
    assert words in str(caught.value)
    assert hostile.hits == {"/": 1}  # nothing was downloaded


async def test_a_number_as_a_string_and_a_missing_list_are_read(
    hostile: Hostile, make_client: Callable[..., VisualClient]
) -> None:
    hostile.reply = lambda: web.json_response(
        {"code": "10000", "message": None, "data": {"status": "generating", "image_urls": None}}
    )
    result = await make_client().get_result(V40, "7392")
    assert result.status is TaskStatus.GENERATING and result.image_urls == []


async def test_a_submit_reply_with_data_null_is_unreadable_and_may_have_billed(
    hostile: Hostile, make_client: Callable[..., VisualClient]
) -> None:
    hostile.reply = lambda: web.json_response({"code": 10000, "data": None})
    with pytest.raises(ReplyUnreadable) as caught:
        await make_client().submit(V40, {"prompt": "a fox", "width": 1024, "height": 1024})
    assert submit_outcome_unknown(caught.value)


# -- bounded bodies ---------------------------------------------------------------------------


async def _endless(request: web.Request) -> web.StreamResponse:
    """An image body that never ends (chunked, no length): 1 MB at a time, up to 64 MB."""
    resp = web.StreamResponse(headers={"Content-Type": "image/png"})
    await resp.prepare(request)
    chunk = b"\0" * MB
    try:
        for _ in range(64):
            await resp.write(chunk)
    except (ConnectionError, RuntimeError):
        pass  # the client hung up: what we want
    return resp


async def test_an_endless_image_body_is_cut_at_the_cap(
    hostile: Hostile, make_client: Callable[..., VisualClient]
) -> None:
    hostile.routes["/big.png"] = _endless
    client = make_client(max_image_bytes=2 * MB)
    with pytest.raises(ReplyUnreadable) as caught:
        await client.download(f"{hostile.url}/big.png")
    assert "larger than 2 MB (max_image_mb in asyncimg.toml)" in str(caught.value)
    assert not caught.value.retryable
    assert hostile.hits["/big.png"] == 1  # not fetched again


async def test_an_announced_length_over_the_cap_is_refused_before_reading(
    hostile: Hostile, make_client: Callable[..., VisualClient]
) -> None:
    async def big(_request: web.Request) -> web.Response:
        return web.Response(body=b"\0" * (3 * MB), content_type="image/png")

    hostile.routes["/big.png"] = big
    with pytest.raises(ReplyUnreadable, match="larger than 1 MB"):
        await make_client(max_image_bytes=MB).download(f"{hostile.url}/big.png")


async def test_a_huge_json_reply_is_cut_at_the_cap_and_may_have_billed(
    hostile: Hostile, make_client: Callable[..., VisualClient]
) -> None:
    async def huge() -> web.StreamResponse:
        body = json.dumps({"code": 10000, "data": {"task_id": "1", "pad": "x" * (3 * MB)}})
        return web.Response(text=body, content_type="application/json")

    hostile.reply = huge
    client = make_client(max_reply_bytes=MB)
    with pytest.raises(ReplyUnreadable, match="larger than 1 MB \\(max_reply_mb") as caught:
        await client.submit(V40, {"prompt": "a fox", "width": 1024, "height": 1024})
    assert submit_outcome_unknown(caught.value)  # the task may exist: never resubmitted blindly


def test_the_default_caps_come_from_the_largest_output() -> None:
    largest = max(p.size.max_area or 0 for p in models.PROFILES.values())
    assert models.max_output_pixels() == largest == 4096 * 4096
    assert models.default_image_cap() == largest * 4 + MB
    assert models.default_reply_cap() == models.default_image_cap() * 4 // 3 + MB


# -- what an image URL may be -----------------------------------------------------------------


@pytest.mark.parametrize("content_type", ["text/html", "application/json"])
async def test_an_image_must_come_as_an_image(
    hostile: Hostile, make_client: Callable[..., VisualClient], content_type: str
) -> None:
    async def page(_request: web.Request) -> web.Response:
        return web.Response(body=b"<html>login</html>", content_type=content_type)

    hostile.routes["/a.png"] = page
    with pytest.raises(ReplyUnreadable, match=f"answered {content_type}, not an image"):
        await make_client().download(f"{hostile.url}/a.png")


async def test_octet_stream_is_an_image(
    hostile: Hostile, make_client: Callable[..., VisualClient]
) -> None:
    async def blob(_request: web.Request) -> web.Response:
        return web.Response(body=png(), content_type="application/octet-stream")

    hostile.routes["/a.png"] = blob
    assert await make_client().download(f"{hostile.url}/a.png") == png()


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/a.png", "data:image/png;base64,AAAA", "/a.png"]
)
async def test_only_http_and_https_urls_are_fetched(
    make_client: Callable[..., VisualClient], url: str
) -> None:
    with pytest.raises(ReplyUnreadable, match="not http"):
        await make_client().download(url)


async def test_redirects_are_followed_a_few_times_only(
    hostile: Hostile, make_client: Callable[..., VisualClient]
) -> None:
    def hop(n: int) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(_request: web.Request) -> web.StreamResponse:
            if n == 0:
                return web.Response(body=png(), content_type="image/png")
            raise web.HTTPFound(f"/hop{n - 1}")

        return handler

    for n in range(8):
        hostile.routes[f"/hop{n}"] = hop(n)
    client = make_client(max_attempts=1)
    assert await client.download(f"{hostile.url}/hop2") == png()
    with pytest.raises(NetworkError):
        await client.download(f"{hostile.url}/hop7")
    assert hostile.hits["/hop0"] == 1  # the long chain never reached the image


async def test_a_redirect_to_another_scheme_is_not_followed(
    hostile: Hostile, make_client: Callable[..., VisualClient]
) -> None:
    async def away(_request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("file:///etc/passwd")

    hostile.routes["/a.png"] = away
    with pytest.raises(NetworkError):
        await make_client(max_attempts=1).download(f"{hostile.url}/a.png")
