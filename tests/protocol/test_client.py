"""VisualClient end to end: the real client over real sockets against the real emulator.

The emulator's clock is a FakeClock moved with `emu.advance`, and the client's clock follows
it, so task timing, retention and X-Date checks need no sleeping. The fixtures live here, not
in a conftest: tests/protocol is no package, so helpers in a conftest could not be imported.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from asyncimg import constants
from asyncimg.emulator import Emulator, EmulatorConfig
from asyncimg.protocol.client import (
    Result,
    TaskStatus,
    VisualClient,
    credentials_from_env,
)
from asyncimg.protocol.errors import (
    AsyncImgError,
    AuthError,
    ConcurrencyLimited,
    ConfigError,
    ConnectFailed,
    EmptyResult,
    InputRejected,
    InvalidInput,
    NetworkError,
    OutputRejected,
    RateLimited,
    RequestRefused,
    ServerError,
    TaskGone,
)
from asyncimg.protocol.retry import submit_outcome_unknown
from asyncimg.protocol.signing import Credentials

AK = "AKLTprotocoltestkey"
# Distinctive, so a leak into a message or a log line is easy to spot.
SK = "sk-PROTOCOL-TEST-secret-7f3a9c"
CREDS = Credentials(AK, SK)


class FakeClock:
    """Starts at the real time so signed X-Dates look normal; moves only when told."""

    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


class RecordingSleep:
    """The client's `sleep`: returns at once and remembers every delay it was asked for."""

    def __init__(self, then: Callable[[float], None] | None = None) -> None:
        self.delays: list[float] = []
        self.then = then

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.then is not None:
            self.then(seconds)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PeerLog:
    """Records each emulator request's client address (ip, port) through a middleware."""

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            transport = request.transport
            if transport is not None:
                peer = transport.get_extra_info("peername")
                self.peers.append((str(peer[0]), int(peer[1])))
            return await handler(request)

        self.middleware = record


StartEmulator = Callable[..., Awaitable[Emulator]]
MakeClient = Callable[..., VisualClient]


def emulator_clock(emu: Emulator, offset: float = 0.0) -> Callable[[], datetime]:
    """A client clock that follows the emulator's (moved by `emu.advance`), plus `offset` s."""
    return lambda: datetime.fromtimestamp(emu.now() + offset, UTC)


@pytest.fixture
async def start_emulator() -> AsyncIterator[StartEmulator]:
    """`emu = await start_emulator(qps=1, ...)`: EmulatorConfig overrides, a FakeClock default.

    Tasks take exactly 10 s of emulator time: `in_queue` for 3 s, then `generating`.
    """
    running: list[Emulator] = []

    async def _start(peer_log: PeerLog | None = None, **overrides: Any) -> Emulator:
        settings: dict[str, Any] = {
            "access_key": AK,
            "secret_key": SK,
            "gen_seconds": (10.0, 10.0),
            "clock": FakeClock(),
            "seed": 7,
            "slow_seconds": 0.3,
        }
        settings.update(overrides)
        emu = Emulator(EmulatorConfig(**settings))
        if peer_log is not None:
            emu.app.middlewares.append(peer_log.middleware)
        await emu.start()
        running.append(emu)
        return emu

    yield _start
    for emu in running:
        await emu.close()


@pytest.fixture
async def emu(start_emulator: StartEmulator) -> Emulator:
    return await start_emulator()


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """`client = make_client(emu, max_attempts=1, ...)`: VisualClient overrides; closed after.

    By default the client's clock follows the emulator's and retries do not wait.
    """
    made: list[VisualClient] = []

    def _make(emu: Emulator | None = None, **overrides: Any) -> VisualClient:
        settings: dict[str, Any] = {"retry_base_delay": 0, "sleep": RecordingSleep()}
        if emu is not None:
            settings["endpoint"] = emu.url
            settings["clock"] = emulator_clock(emu)
        settings.update(overrides)
        credentials = settings.pop("credentials", CREDS)
        client = VisualClient(credentials, **settings)
        made.append(client)
        return client

    yield _make
    for client in made:
        await client.close()


@pytest.fixture
def client(emu: Emulator, make_client: MakeClient) -> VisualClient:
    return make_client(emu)


V40 = "jimeng_t2i_v40"
V31 = "jimeng_t2i_v31"
SUBMIT = constants.ACTION_SUBMIT
RESULT = constants.ACTION_GET_RESULT
SMALL = {"prompt": "a red fox in the snow", "width": 1024, "height": 1024}
GEN = 10.0  # every task takes 10 s of emulator time: in_queue < 3 s <= generating < 10 s

E = TypeVar("E", bound=AsyncImgError)


async def expect(kind: type[E], awaitable: Awaitable[Any]) -> E:
    """Await, require `kind`, and check the error never shows the secret key."""
    with pytest.raises(kind) as info:
        await awaitable
    exc = info.value
    assert SK not in str(exc)
    assert SK not in repr(exc)
    assert SK not in exc.message
    return exc


def requests(emu: Emulator, action: str) -> int:
    return int(emu.stats()["requests"].get(action, 0))


def sleeps(client: VisualClient) -> list[float]:
    sleep = client._sleep
    assert isinstance(sleep, RecordingSleep)
    return sleep.delays


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- statuses ----------------------------------------------------------------------------------


async def test_submit_then_poll_through_in_queue_generating_done_with_urls(
    emu: Emulator, client: VisualClient
) -> None:
    task_id = await client.submit(V40, SMALL)
    assert task_id.isdigit()

    first = await client.get_result(V40, task_id)
    assert first.status is TaskStatus.IN_QUEUE
    assert first.task_id == task_id and first.code == 10000 and first.message == "Success"
    assert first.request_id
    assert not first.finished and not first.has_images and first.error() is None

    emu.advance(0.5 * GEN)
    middle = await client.get_result(V40, task_id)
    assert middle.status is TaskStatus.GENERATING
    assert not middle.finished and middle.error() is None

    emu.advance(0.5 * GEN)
    done = await client.get_result(V40, task_id)
    assert done.status is TaskStatus.DONE
    assert done.finished and done.has_images and done.error() is None
    assert len(done.image_urls) == 1 and done.images_base64 == []
    assert done.image_urls[0].startswith(emu.url + "/")
    assert done.request_id and done.request_id != first.request_id


async def test_done_without_return_url_gives_base64(emu: Emulator, client: VisualClient) -> None:
    task_id = await client.submit(V40, SMALL)
    emu.advance(GEN)
    done = await client.get_result(V40, task_id, return_url=False)
    assert done.status is TaskStatus.DONE and done.has_images
    assert done.image_urls == [] and len(done.images_base64) == 1
    img = decode(base64.b64decode(done.images_base64[0], validate=True))
    assert (img.format, img.size) == ("PNG", (1024, 1024))


async def test_several_images_per_task(
    start_emulator: StartEmulator, make_client: MakeClient
) -> None:
    emu = await start_emulator(images_per_task=2)
    client = make_client(emu)
    task_id = await client.submit(V40, SMALL)
    emu.advance(GEN)
    done = await client.get_result(V40, task_id)
    assert len(done.image_urls) == 2 and len(set(done.image_urls)) == 2


async def test_unknown_task_id_is_not_found_and_task_gone(client: VisualClient) -> None:
    result = await client.get_result(V40, "1234567890123456789")
    assert result.status is TaskStatus.NOT_FOUND
    assert result.finished and not result.has_images
    err = result.error()
    assert isinstance(err, TaskGone)
    assert err.code == "not_found" and err.request_id == result.request_id and err.request_id
    assert err.resubmittable and not err.retryable


async def test_polling_with_another_models_req_key_is_not_found(
    emu: Emulator, client: VisualClient
) -> None:
    task_id = await client.submit(V40, SMALL)
    assert (await client.get_result(V31, task_id)).status is TaskStatus.NOT_FOUND
    assert (await client.get_result(V40, task_id)).status is TaskStatus.IN_QUEUE


async def test_not_found_after_retention(
    start_emulator: StartEmulator, make_client: MakeClient
) -> None:
    emu = await start_emulator(retention_seconds=100.0)
    client = make_client(emu)
    task_id = await client.submit(V40, SMALL)
    emu.advance(99)
    assert (await client.get_result(V40, task_id)).status is TaskStatus.DONE
    emu.advance(2)
    gone = await client.get_result(V40, task_id)
    assert gone.status is TaskStatus.NOT_FOUND
    assert isinstance(gone.error(), TaskGone)


async def test_expired_then_not_found(
    start_emulator: StartEmulator, make_client: MakeClient
) -> None:
    emu = await start_emulator(expire_seconds=50.0, retention_seconds=100.0)
    client = make_client(emu)
    task_id = await client.submit(V40, SMALL)
    emu.advance(49)
    assert (await client.get_result(V40, task_id)).status is TaskStatus.DONE
    emu.advance(2)
    expired = await client.get_result(V40, task_id)
    assert expired.status is TaskStatus.EXPIRED
    assert expired.finished and not expired.has_images
    err = expired.error()
    assert isinstance(err, TaskGone) and err.code == "expired" and err.resubmittable
    emu.advance(50)
    assert (await client.get_result(V40, task_id)).status is TaskStatus.NOT_FOUND


async def test_no_image_fault_is_done_without_image_and_empty_result(
    emu: Emulator, client: VisualClient
) -> None:
    emu.inject("no_image")
    task_id = await client.submit(V40, SMALL)
    emu.advance(GEN)
    for return_url in (True, False):
        done = await client.get_result(V40, task_id, return_url=return_url)
        assert done.status is TaskStatus.DONE and done.finished
        assert not done.has_images
        err = done.error()
        assert isinstance(err, EmptyResult)
        assert err.code == 10000 and err.request_id == done.request_id
        assert err.resubmittable and not err.retryable


def test_result_error_is_none_while_running() -> None:
    for status in (TaskStatus.IN_QUEUE, TaskStatus.GENERATING, TaskStatus.PROCESSING):
        assert Result("1", status).error() is None
        assert not Result("1", status).finished
    assert Result("1", TaskStatus.DONE, images_base64=["AAAA"]).error() is None


# -- download ----------------------------------------------------------------------------------


async def test_download_decodes_at_requested_size(emu: Emulator, client: VisualClient) -> None:
    task_id = await client.submit(V40, {"prompt": "a tall tower", "width": 1024, "height": 1536})
    emu.advance(GEN)
    done = await client.get_result(V40, task_id)
    data = await client.download(done.image_urls[0])
    img = decode(data)
    assert (img.format, img.size) == ("PNG", (1024, 1536))
    assert emu.stats()["image_downloads"] == 1


async def test_download_jpeg_model(emu: Emulator, client: VisualClient) -> None:
    task_id = await client.submit(V31, {"prompt": "a bowl of noodles", "width": 768, "height": 512})
    emu.advance(GEN)
    done = await client.get_result(V31, task_id)
    img = decode(await client.download(done.image_urls[0]))
    assert (img.format, img.size) == ("JPEG", (768, 512))


async def test_download_404_is_task_gone(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client(emu, max_attempts=3)
    url = f"{emu.url}/_emulator/images/1234567890123456789/0.png"
    err = await expect(TaskGone, client.download(url))
    assert err.http_status == 404 and err.code == 404
    assert err.resubmittable and not err.retryable
    assert sleeps(client) == []  # not retried


async def test_download_of_review_failed_task_is_task_gone(
    emu: Emulator, client: VisualClient
) -> None:
    emu.inject("review_failure")
    task_id = await client.submit(V40, SMALL)
    emu.advance(GEN)
    await expect(TaskGone, client.download(f"{emu.url}/_emulator/images/{task_id}/0.png"))


async def test_truncated_image_is_returned_as_is(emu: Emulator, client: VisualClient) -> None:
    """The client does not inspect bytes: a truncated image reaches the caller, which must check."""
    emu.inject("truncated_image")
    task_id = await client.submit(V40, SMALL)
    emu.advance(GEN)
    done = await client.get_result(V40, task_id)
    data = await client.download(done.image_urls[0])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(OSError):
        decode(data)


async def test_download_from_closed_port_is_network_error(make_client: MakeClient) -> None:
    client = make_client(max_attempts=2)
    url = f"http://127.0.0.1:{closed_port()}/_emulator/images/1/0.png"
    err = await expect(NetworkError, client.download(url))
    assert err.retryable
    assert len(sleeps(client)) == 1  # a download is safe to repeat


# -- gateway (auth) errors -----------------------------------------------------------------------


async def test_wrong_secret_is_signature_does_not_match(
    emu: Emulator, make_client: MakeClient
) -> None:
    client = make_client(emu, credentials=Credentials(AK, "not-the-secret"), max_attempts=3)
    err = await expect(AuthError, client.submit(V40, SMALL))
    assert err.code == "SignatureDoesNotMatch" and err.http_status == 401
    assert err.request_id and err.message
    assert not err.retryable and not err.resubmittable
    assert requests(emu, SUBMIT) == 1
    assert emu.stats()["errors"] == {"SignatureDoesNotMatch": 1}


async def test_unknown_access_key(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client(emu, credentials=Credentials("AKLTsomeoneelse", SK), max_attempts=3)
    err = await expect(AuthError, client.get_result(V40, "1"))
    assert err.code == "InvalidAccessKey" and err.http_status == 401 and err.request_id
    assert not err.retryable
    assert requests(emu, RESULT) == 1


@pytest.mark.parametrize("skew", [20 * 60.0, -20 * 60.0])
async def test_skewed_clock_is_invalid_timestamp(
    emu: Emulator, make_client: MakeClient, skew: float
) -> None:
    client = make_client(emu, clock=emulator_clock(emu, skew), max_attempts=3)
    err = await expect(AuthError, client.submit(V40, SMALL))
    assert err.code == "InvalidTimestamp" and err.http_status == 400 and err.request_id
    assert not err.retryable
    assert requests(emu, SUBMIT) == 1
    assert emu.stats()["tasks_submitted"] == 0


async def test_small_clock_skew_is_accepted(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client(emu, clock=emulator_clock(emu, 10 * 60.0))
    assert await client.submit(V40, SMALL)


async def test_session_token(start_emulator: StartEmulator, make_client: MakeClient) -> None:
    emu = await start_emulator(session_token="sts-token-123")
    good = make_client(emu, credentials=Credentials(AK, SK, "sts-token-123"))
    task_id = await good.submit(V40, SMALL)
    assert (await good.get_result(V40, task_id)).status is TaskStatus.IN_QUEUE

    for creds in (Credentials(AK, SK, "sts-token-999"), Credentials(AK, SK)):
        bad = make_client(emu, credentials=creds, max_attempts=3)
        err = await expect(AuthError, bad.get_result(V40, task_id))
        assert err.code == "InvalidSecretToken" and err.http_status == 401 and err.request_id
        assert "sts-token" not in str(err)


async def test_session_token_not_expected(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client(emu, credentials=Credentials(AK, SK, "unexpected-token"))
    err = await expect(AuthError, client.submit(V40, SMALL))
    assert err.code == "InvalidSecretToken"


async def test_unknown_action_is_gateway_404(emu: Emulator, client: VisualClient) -> None:
    # Our own request refused: a setup problem, never the fault of the task it was about.
    err = await expect(RequestRefused, client.call("CVNoSuchAction", {"req_key": V40}))
    assert err.code == "InvalidActionOrVersion" and err.http_status == 404 and err.request_id
    assert not err.retryable


# -- business errors ---------------------------------------------------------------------------


async def test_bad_size_is_invalid_input_before_any_request(
    emu: Emulator, client: VisualClient
) -> None:
    err = await expect(
        InvalidInput, client.submit(V40, {"prompt": "a cat", "width": 720, "height": 1280})
    )
    assert err.suggestion == "try 1440x2560"
    assert "1440x2560" in str(err)
    assert err.code == 50200 and err.request_id is None
    assert not err.retryable and not err.resubmittable
    assert emu.stats()["requests"] == {}
    assert client._session is None  # not even a connection was opened


async def test_prompt_too_long_is_invalid_input_before_any_request(
    emu: Emulator, client: VisualClient
) -> None:
    err = await expect(InvalidInput, client.submit(V40, {"prompt": "樱" * 801}))
    assert err.field == "prompt"
    assert emu.stats()["requests"] == {}


async def test_server_rejects_bad_size_when_validation_is_off(
    emu: Emulator, make_client: MakeClient
) -> None:
    client = make_client(emu, validate=False, max_attempts=3)
    err = await expect(
        InputRejected, client.submit(V40, {"prompt": "a cat", "width": 720, "height": 1280})
    )
    assert type(err) is InputRejected  # from the server, not the local InvalidInput
    assert err.code == 50215 and err.http_status == 400
    assert err.request_id and "Input invalid for this service." in err.message
    assert not err.retryable and not err.resubmittable
    assert requests(emu, SUBMIT) == 1
    assert emu.stats()["tasks_submitted"] == 0


async def test_unknown_req_key_is_access_denied_when_validation_is_off(
    emu: Emulator, make_client: MakeClient
) -> None:
    client = make_client(emu, validate=False, max_attempts=3)
    err = await expect(AuthError, client.submit("jimeng_no_such_model", {"prompt": "a cat"}))
    assert err.code == 50400 and err.http_status == 400 and err.request_id
    assert not err.retryable
    assert requests(emu, SUBMIT) == 1


async def test_unknown_req_key_is_rejected_locally(emu: Emulator, client: VisualClient) -> None:
    err = await expect(InvalidInput, client.submit("jimeng_no_such_model", {"prompt": "a cat"}))
    assert err.code == 50400 and err.field == "req_key"
    assert emu.stats()["requests"] == {}


async def test_rate_limited(start_emulator: StartEmulator, make_client: MakeClient) -> None:
    emu = await start_emulator(qps=1)
    client = make_client(emu, max_attempts=1)
    task_id = await client.submit(V40, SMALL)
    await client.get_result(V40, task_id)
    err = await expect(RateLimited, client.get_result(V40, task_id))
    assert err.code == 50429 and err.http_status == 429 and err.request_id
    assert err.retryable and not err.resubmittable
    await expect(RateLimited, client.get_result(V40, task_id))
    assert requests(emu, RESULT) == 3
    assert emu.stats()["errors"] == {"50429": 2}


async def test_rate_limited_poll_is_retried_until_attempts_run_out(
    start_emulator: StartEmulator, make_client: MakeClient
) -> None:
    emu = await start_emulator(qps=1)
    client = make_client(emu, max_attempts=3)
    task_id = await client.submit(V40, SMALL)
    await client.get_result(V40, task_id)
    await expect(RateLimited, client.get_result(V40, task_id))  # the clock never moves
    assert requests(emu, RESULT) == 1 + 3
    assert len(sleeps(client)) == 2


async def test_rate_limited_poll_succeeds_once_the_window_passes(
    start_emulator: StartEmulator, make_client: MakeClient
) -> None:
    emu = await start_emulator(qps=1)
    client = make_client(emu, max_attempts=3, sleep=RecordingSleep(then=lambda s: emu.advance(1.0)))
    task_id = await client.submit(V40, SMALL)
    await client.get_result(V40, task_id)
    result = await client.get_result(V40, task_id)
    assert result.status is TaskStatus.IN_QUEUE
    assert requests(emu, RESULT) == 3
    assert sleeps(client) == [0.0]


async def test_concurrency_limited_submit_is_not_retried(
    start_emulator: StartEmulator, make_client: MakeClient
) -> None:
    emu = await start_emulator(concurrency=1)
    client = make_client(emu, max_attempts=3)
    await client.submit(V40, SMALL)
    err = await expect(ConcurrencyLimited, client.submit(V40, SMALL))
    assert err.code == 50430 and err.http_status == 429 and err.request_id
    assert err.retryable and not err.resubmittable
    assert requests(emu, SUBMIT) == 2  # the caller queues; the client does not repeat it
    assert sleeps(client) == []
    emu.advance(GEN)  # the first task finished: capacity is free again
    assert await client.submit(V40, SMALL)
    assert emu.stats()["tasks_submitted"] == 2


async def test_review_failure_is_output_rejected_at_done(
    emu: Emulator, make_client: MakeClient
) -> None:
    client = make_client(emu, max_attempts=3)
    emu.inject("review_failure")
    task_id = await client.submit(V40, SMALL)
    assert (await client.get_result(V40, task_id)).status is TaskStatus.IN_QUEUE
    emu.advance(GEN)
    err = await expect(OutputRejected, client.get_result(V40, task_id))
    assert err.code == 50511 and err.http_status == 400 and err.request_id
    assert err.resubmittable and not err.retryable
    assert requests(emu, RESULT) == 2  # not repeated


async def test_server_error_in_both_envelopes(emu: Emulator, make_client: MakeClient) -> None:
    """The emulator alternates the business 50500 and the gateway's InternalError."""
    client = make_client(emu, max_attempts=1)
    task_id = await client.submit(V40, SMALL)
    emu.inject("server_error", count=2, action=RESULT)

    business = await expect(ServerError, client.get_result(V40, task_id))
    assert business.code == 50500 and business.http_status == 500
    assert business.message == "Internal Error" and business.request_id
    assert business.retryable and not business.resubmittable

    gateway = await expect(ServerError, client.get_result(V40, task_id))
    assert gateway.code == "InternalError" and gateway.http_status == 500
    assert gateway.request_id and gateway.request_id != business.request_id
    assert gateway.retryable

    assert (await client.get_result(V40, task_id)).status is TaskStatus.IN_QUEUE
    assert emu.stats()["faults_fired"] == {"server_error": 2}


async def test_server_error_on_poll_is_retried_transparently(
    emu: Emulator, make_client: MakeClient
) -> None:
    client = make_client(emu, max_attempts=3)
    task_id = await client.submit(V40, SMALL)
    emu.inject("server_error", action=RESULT)
    result = await client.get_result(V40, task_id)
    assert result.status is TaskStatus.IN_QUEUE
    assert requests(emu, RESULT) == 2
    assert len(sleeps(client)) == 1


async def test_retry_waits_back_off(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client(emu, max_attempts=4, retry_base_delay=1.0, retry_max_delay=8.0)
    emu.inject("server_error", count=3, action=RESULT)
    await client.get_result(V40, "1")
    delays = sleeps(client)
    assert len(delays) == 3
    for attempt, delay in enumerate(delays, start=1):
        ceiling = 2.0 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling


async def test_drop_is_network_error(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client(emu, max_attempts=1)
    emu.inject("drop", action=RESULT)
    err = await expect(NetworkError, client.get_result(V40, "1"))
    assert err.retryable and not err.resubmittable
    assert err.request_id is None and err.code is None and err.message
    assert requests(emu, RESULT) == 1


async def test_drop_on_poll_is_retried_transparently(
    emu: Emulator, make_client: MakeClient
) -> None:
    client = make_client(emu, max_attempts=3)
    emu.inject("drop", action=RESULT)
    assert (await client.get_result(V40, "1")).status is TaskStatus.NOT_FOUND
    assert requests(emu, RESULT) == 2


async def test_closed_port_is_network_error(make_client: MakeClient) -> None:
    client = make_client(endpoint=f"http://127.0.0.1:{closed_port()}", max_attempts=3)
    err = await expect(NetworkError, client.submit(V40, SMALL))
    assert err.retryable and err.request_id is None
    assert sleeps(client) == []  # a submit is never repeated blind
    await expect(NetworkError, client.get_result(V40, "1"))
    assert len(sleeps(client)) == 2  # a poll is


async def test_slow_reply_past_read_timeout_is_network_error(
    start_emulator: StartEmulator, make_client: MakeClient
) -> None:
    # The slow reply is held until released, so the timeout certainly fires first; the
    # timeout is long enough for a normal reply on a loaded machine.
    emu = await start_emulator(slow_seconds=600.0)
    client = make_client(emu, read_timeout=0.5, max_attempts=1)
    emu.inject("slow", action=RESULT)
    err = await expect(NetworkError, client.get_result(V40, "1"))
    assert "timed out" in str(err) and err.retryable
    emu.release_slow()
    # The next, normal reply comes well within the timeout on the same client.
    assert (await client.get_result(V40, "1")).status is TaskStatus.NOT_FOUND


async def test_slow_reply_within_read_timeout_succeeds(
    start_emulator: StartEmulator, make_client: MakeClient
) -> None:
    emu = await start_emulator(slow_seconds=0.1)
    client = make_client(emu, read_timeout=5.0, max_attempts=1)
    emu.inject("slow", action=SUBMIT)
    assert await client.submit(V40, SMALL)
    assert emu.stats()["faults_fired"] == {"slow": 1}


async def test_timed_out_submit_is_not_repeated_and_may_still_create_the_task(
    start_emulator: StartEmulator, make_client: MakeClient
) -> None:
    """Why a submit is never repeated after a network failure: the service may have its task."""
    emu = await start_emulator(slow_seconds=0.2)
    client = make_client(emu, submit_read_timeout=0.05, max_attempts=3)
    emu.inject("slow", action=SUBMIT)
    err = await expect(NetworkError, client.submit(V40, SMALL))
    assert not isinstance(err, ConnectFailed) and submit_outcome_unknown(err)
    assert requests(emu, SUBMIT) == 1 and sleeps(client) == []
    for _ in range(50):
        if emu.stats()["tasks_submitted"]:
            break
        await asyncio.sleep(0.02)
    assert emu.stats()["tasks_submitted"] == 1


async def test_a_submit_waits_longer_than_a_poll(
    start_emulator: StartEmulator, make_client: MakeClient
) -> None:
    """A body of ten references takes long to send and answer: the poll timeout must not
    cut a submit short (a cut submit is an unknown outcome, maybe a billed task)."""
    emu = await start_emulator(slow_seconds=0.3)
    client = make_client(emu, read_timeout=0.05, submit_read_timeout=5.0, max_attempts=1)
    emu.inject("slow", action=SUBMIT)
    task_id = await client.submit(V40, SMALL)
    emu.inject("slow", action=RESULT)
    await expect(NetworkError, client.get_result(V40, task_id))
    assert emu.stats()["tasks_submitted"] == 1


async def test_a_refused_connection_certainly_sent_nothing(make_client: MakeClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the client connects
    client = make_client(endpoint=f"http://127.0.0.1:{port}", max_attempts=1)
    err = await expect(ConnectFailed, client.submit(V40, SMALL))
    assert not submit_outcome_unknown(err)


def _code_as_string(reply: dict[str, Any]) -> dict[str, Any]:
    if isinstance(reply.get("code"), int):
        reply["code"] = str(reply["code"])
    return reply


async def test_a_success_code_given_as_a_string_is_a_success(
    start_emulator: StartEmulator, make_client: MakeClient
) -> None:
    """Issue item 2: `"code": "10000"` (a proxy or SDK layer stringifies it) was taken for an
    error, and the frame was resubmitted every pass."""

    @web.middleware
    async def stringify(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if isinstance(response, web.Response) and response.content_type == "application/json":
            assert response.body is not None and isinstance(response.body, bytes)
            reply = json.loads(response.body)
            return web.json_response(_code_as_string(reply), status=response.status)
        return response

    emu = Emulator(
        EmulatorConfig(access_key=AK, secret_key=SK, gen_seconds=(10.0, 10.0), clock=FakeClock())
    )
    emu.app.middlewares.append(stringify)
    await emu.start()
    try:
        client = make_client(emu, max_attempts=1)
        task_id = await client.submit(V40, SMALL)
        assert emu.stats()["tasks_submitted"] == 1
        assert (await client.get_result(V40, task_id)).status is TaskStatus.IN_QUEUE
        emu.inject("server_error", action=SUBMIT)  # 50500 as "50500": still that error
        err = await expect(ServerError, client.submit(V40, SMALL))
        assert err.code == 50500 or err.code == "InternalError"
    finally:
        await emu.close()


# -- retry policy for submit ---------------------------------------------------------------------


async def test_submit_hitting_server_error_is_retried(
    emu: Emulator, make_client: MakeClient
) -> None:
    client = make_client(emu, max_attempts=3)
    emu.inject("server_error", action=SUBMIT)
    task_id = await client.submit(V40, SMALL)
    assert requests(emu, SUBMIT) == 2
    assert emu.stats()["tasks_submitted"] == 1  # the failed attempt created nothing
    assert emu.stats()["errors"] == {"50500": 1}
    assert (await client.get_result(V40, task_id)).status is TaskStatus.IN_QUEUE


async def test_submit_retries_a_business_50500_but_not_a_gateway_internal_error(
    emu: Emulator, make_client: MakeClient
) -> None:
    # The emulator alternates: first the business 50500 (no task created: safe to repeat),
    # then the gateway's InternalError (the request may have reached the service: not repeated).
    client = make_client(emu, max_attempts=3)
    emu.inject("server_error", count=2, action=SUBMIT)
    err = await expect(ServerError, client.submit(V40, SMALL))
    assert err.code == "InternalError" and err.retryable
    assert requests(emu, SUBMIT) == 2
    assert emu.stats()["errors"] == {"50500": 1, "InternalError": 1}
    assert emu.stats()["tasks_submitted"] == 0
    assert len(sleeps(client)) == 1


async def test_submit_hitting_drop_is_not_retried(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client(emu, max_attempts=3)
    emu.inject("drop", action=SUBMIT)
    err = await expect(NetworkError, client.submit(V40, SMALL))
    assert err.retryable  # the caller may decide; the client itself must not
    assert requests(emu, SUBMIT) == 1
    assert emu.stats()["tasks_submitted"] == 0
    assert sleeps(client) == []


async def test_submit_gives_up_after_max_attempts(emu: Emulator, make_client: MakeClient) -> None:
    client = make_client(emu, max_attempts=2)
    emu.inject("server_error", count=5, action=SUBMIT)
    await expect(ServerError, client.submit(V40, SMALL))
    assert requests(emu, SUBMIT) == 2
    assert emu.stats()["tasks_submitted"] == 0


# -- session, credentials, secrets, timeouts --------------------------------------------------


async def test_one_session_and_one_connection_for_many_calls(
    start_emulator: StartEmulator, make_client: MakeClient
) -> None:
    peers = PeerLog()
    emu = await start_emulator(peer_log=peers)
    async with make_client(emu) as client:
        session = client._session
        assert session is not None
        task_ids = [await client.submit(V40, SMALL) for _ in range(3)]
        for task_id in task_ids:
            await client.get_result(V40, task_id)
        emu.advance(GEN)
        done = await client.get_result(V40, task_ids[0])
        await client.download(done.image_urls[0])
        assert client._session is session and not session.closed
    assert client._session is None and session.closed
    assert len(peers.peers) == 8  # 3 submits, 4 polls, 1 download
    assert len(set(peers.peers)) == 1  # keep-alive: one TCP connection for every call


async def test_session_is_created_lazily_and_reopened_after_close(
    emu: Emulator, client: VisualClient
) -> None:
    assert client._session is None
    await client.submit(V40, SMALL)
    first = client._session
    assert first is not None
    await client.close()
    assert first.closed
    await client.submit(V40, SMALL)
    assert client._session is not None and client._session is not first


def test_credentials_from_env_missing_both() -> None:
    with pytest.raises(ConfigError) as info:
        credentials_from_env({})
    text = str(info.value)
    assert text.startswith("VOLC_ACCESSKEY and VOLC_SECRETKEY are not set")


@pytest.mark.parametrize(
    ("env", "missing", "present"),
    [
        ({"VOLC_ACCESSKEY": AK}, "VOLC_SECRETKEY", "VOLC_ACCESSKEY"),
        ({"VOLC_SECRETKEY": SK}, "VOLC_ACCESSKEY", "VOLC_SECRETKEY"),
        ({"VOLC_ACCESSKEY": AK, "VOLC_SECRETKEY": "   "}, "VOLC_SECRETKEY", "VOLC_ACCESSKEY"),
    ],
)
def test_credentials_from_env_missing_one(env: dict[str, str], missing: str, present: str) -> None:
    with pytest.raises(ConfigError) as info:
        credentials_from_env(env)
    text = str(info.value)
    verdict = text.split(":", 1)[0]
    assert verdict == f"{missing} is not set"
    assert present not in verdict
    assert SK not in text


def test_credentials_from_env_with_session_token() -> None:
    env = {"VOLC_ACCESSKEY": f" {AK} ", "VOLC_SECRETKEY": SK, "VOLC_SESSION_TOKEN": "tok"}
    creds = credentials_from_env(env)
    assert (creds.access_key, creds.secret_key, creds.session_token) == (AK, SK, "tok")
    assert credentials_from_env({"VOLC_ACCESSKEY": AK, "VOLC_SECRETKEY": SK}).session_token is None
    assert SK not in repr(creds) and "tok" not in repr(creds)


async def test_from_env_uses_endpoint_and_works(
    start_emulator: StartEmulator, make_client: MakeClient
) -> None:
    emu = await start_emulator(session_token="sts-env-token")
    env = {
        "VOLC_ACCESSKEY": AK,
        "VOLC_SECRETKEY": SK,
        "VOLC_SESSION_TOKEN": "sts-env-token",
        "ASYNCIMG_ENDPOINT": emu.url,
    }
    async with VisualClient.from_env(env, clock=emulator_clock(emu)) as client:
        assert client.endpoint == emu.url + "/"
        assert client.access_key == AK
        task_id = await client.submit(V40, SMALL)
        assert (await client.get_result(V40, task_id)).status is TaskStatus.IN_QUEUE


def test_from_env_defaults_to_the_real_endpoint() -> None:
    client = VisualClient.from_env({"VOLC_ACCESSKEY": AK, "VOLC_SECRETKEY": SK})
    assert client.endpoint == "https://visual.volcengineapi.com/"
    with pytest.raises(ConfigError):
        VisualClient.from_env({"VOLC_ACCESSKEY": AK})
    with pytest.raises(ConfigError):
        VisualClient.from_env(
            {"VOLC_ACCESSKEY": AK, "VOLC_SECRETKEY": SK, "ASYNCIMG_ENDPOINT": "ftp://x"}
        )


def test_secret_not_in_repr() -> None:
    client = VisualClient(Credentials(AK, SK, "session-tok"), endpoint="http://127.0.0.1:9")
    text = repr(client)
    assert AK in text and "127.0.0.1:9" in text
    assert SK not in text and "session-tok" not in text


async def test_secret_not_in_debug_logs(
    emu: Emulator, client: VisualClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    task_id = await client.submit(V40, SMALL)
    emu.advance(GEN)
    done = await client.get_result(V40, task_id)
    await client.download(done.image_urls[0])
    emu.inject("server_error", action=RESULT)
    await client.get_result(V40, task_id)  # a retried error, too
    assert SK not in caplog.text
    for record in caplog.records:
        assert SK not in record.getMessage()


async def test_chinese_prompt_round_trip(emu: Emulator, client: VisualClient) -> None:
    prompt = "少女站在樱花树下"
    task_id = await client.submit(V40, {"prompt": prompt, "width": 1024, "height": 1024})
    task = emu._tasks.get(task_id)
    assert task is not None and task.fields["prompt"] == prompt
    emu.advance(GEN)
    done = await client.get_result(
        V40, task_id, logo_info={"add_logo": True, "logo_text_content": "樱花"}
    )
    assert done.status is TaskStatus.DONE and done.has_images


async def test_longest_chinese_prompt_is_accepted(emu: Emulator, client: VisualClient) -> None:
    """800 characters (2400 UTF-8 bytes) is within the limit: characters count, not bytes."""
    prompt = "樱" * 800
    task_id = await client.submit(V40, {"prompt": prompt})
    task = emu._tasks.get(task_id)
    assert task is not None and task.fields["prompt"] == prompt


async def test_default_timeouts(make_client: MakeClient) -> None:
    client = make_client(endpoint="http://127.0.0.1:9")
    timeout = client._timeout
    assert isinstance(timeout, aiohttp.ClientTimeout)
    assert timeout.connect == 10.0 and timeout.sock_connect == 10.0
    assert timeout.sock_read == 30.0
    assert timeout.total is None
    async with client:
        assert client._session is not None and client._session.timeout == timeout


async def test_custom_timeouts(make_client: MakeClient) -> None:
    client = make_client(endpoint="http://127.0.0.1:9", connect_timeout=2.0, read_timeout=7.0)
    assert client._timeout.sock_connect == 2.0 and client._timeout.sock_read == 7.0


def test_bad_endpoint_is_config_error() -> None:
    for endpoint in ("127.0.0.1:8080", "ftp://example.com", "http://"):
        with pytest.raises(ConfigError):
            VisualClient(Credentials(AK, SK), endpoint=endpoint)
