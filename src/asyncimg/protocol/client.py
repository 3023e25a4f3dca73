"""The async client for `CVSync2AsyncSubmitTask` / `CVSync2AsyncGetResult` (spec §1, §3-§5).

One aiohttp session per client, reused across calls. The JSON body is read whatever the
HTTP status, and both envelopes (business `code`, gateway `ResponseMetadata.Error`) become
one error tree. Retries follow :mod:`asyncimg.protocol.retry`.

Nothing from the other side is trusted: replies and images are read as streams up to a cap
(`max_reply_bytes`, `max_image_bytes`; defaults from the largest output of any model,
:func:`asyncimg.protocol.models.default_image_cap`), image URLs must be http(s), redirects
are bounded, an image must come as an image (or octet-stream) content type, and every
field of a reply is checked for its type before use: anything else is `ReplyUnreadable`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
from yarl import URL

from asyncimg import constants
from asyncimg.i18n import _
from asyncimg.protocol import models, retry, signing
from asyncimg.protocol.errors import (
    AsyncImgError,
    ConfigError,
    ConnectFailed,
    EmptyResult,
    NetworkError,
    ReplyUnreadable,
    ServerError,
    TaskGone,
    classify_business,
    classify_gateway,
    not_set,
)
from asyncimg.protocol.signing import Credentials

USER_AGENT = "asyncimg/0.1"
T = TypeVar("T")
#: Redirects an image download follows (a CDN may redirect once or twice).
MAX_REDIRECTS = 3
_CHUNK = 64 * 1024
_IMAGE_TYPES = ("image/", "application/octet-stream", "binary/octet-stream")


class TaskStatus(StrEnum):
    """`data.status` of a poll reply."""

    IN_QUEUE = "in_queue"  # accepted, waiting for a worker
    GENERATING = "generating"  # being drawn
    PROCESSING = "processing"  # some models say this instead of generating
    DONE = "done"  # finished; success or failure is the envelope's code
    NOT_FOUND = "not_found"  # unknown id, or older than the retention (~12 h)
    EXPIRED = "expired"  # result expired: resubmit

    @classmethod
    def parse(cls, wire: object) -> TaskStatus:
        """The only place a wire status string becomes a status."""
        if not isinstance(wire, str):
            raise ReplyUnreadable(f"reply has no data.status (got {wire!r})")
        try:
            return cls(wire.strip().lower())
        except ValueError:
            raise ReplyUnreadable(f"reply has an unknown data.status {wire!r}") from None


@dataclass(frozen=True)
class Result:
    """One poll reply with code 10000."""

    task_id: str
    status: TaskStatus
    code: int = constants.SUCCESS_CODE
    message: str = ""
    request_id: str | None = None
    image_urls: list[str] = field(default_factory=list)
    images_base64: list[str] = field(default_factory=list)

    @property
    def has_images(self) -> bool:
        return bool(self.image_urls or self.images_base64)

    @property
    def finished(self) -> bool:
        return self.status in (TaskStatus.DONE, TaskStatus.NOT_FOUND, TaskStatus.EXPIRED)

    def error(self) -> AsyncImgError | None:
        """The failure this reply means, if any: a gone task, or `done` without an image."""
        if self.status is TaskStatus.NOT_FOUND:
            return TaskGone(
                "the service does not know this task (unknown id or past its ~12 h retention)",
                code="not_found",
                request_id=self.request_id,
            )
        if self.status is TaskStatus.EXPIRED:
            return TaskGone("the task's result expired", code="expired", request_id=self.request_id)
        if self.status is TaskStatus.DONE and not self.has_images:
            return EmptyResult(
                "the task finished without an image", code=self.code, request_id=self.request_id
            )
        return None


def credentials_from_env(env: Mapping[str, str] | None = None) -> Credentials:
    """Credentials from VOLC_ACCESSKEY / VOLC_SECRETKEY (+ VOLC_SESSION_TOKEN)."""
    env = os.environ if env is None else env
    ak = env.get(constants.ENV_ACCESS_KEY, "").strip()
    sk = env.get(constants.ENV_SECRET_KEY, "").strip()
    missing = [
        name
        for name, value in ((constants.ENV_ACCESS_KEY, ak), (constants.ENV_SECRET_KEY, sk))
        if not value
    ]
    if missing:
        raise not_set(
            missing,
            _(
                "export your Volcengine access key as VOLC_ACCESSKEY and secret key as "
                "VOLC_SECRETKEY"
            ),
        )
    token = env.get(constants.ENV_SESSION_TOKEN, "").strip() or None
    return Credentials(ak, sk, token)


def endpoint_from_env(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(constants.ENV_ENDPOINT, "").strip() or constants.DEFAULT_ENDPOINT


def _now() -> datetime:
    return datetime.now(UTC)


class VisualClient:
    """Talks to the visual API (or the emulator). Use as `async with VisualClient(...) as c:`."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        endpoint: str = constants.DEFAULT_ENDPOINT,
        connect_timeout: float = constants.CONNECT_TIMEOUT_S,
        read_timeout: float = constants.READ_TIMEOUT_S,
        submit_read_timeout: float = constants.SUBMIT_READ_TIMEOUT_S,
        max_attempts: int = constants.CLIENT_MAX_ATTEMPTS,
        retry_base_delay: float = constants.RETRY_BASE_DELAY_S,
        retry_max_delay: float = constants.RETRY_MAX_DELAY_S,
        clock: Callable[[], datetime] = _now,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        validate: bool = True,
        limit: int = 32,
        max_reply_bytes: int | None = None,
        max_image_bytes: int | None = None,
    ) -> None:
        url = URL(endpoint)
        if url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(
                _("endpoint {endpoint!r} is not an http(s) URL").format(endpoint=endpoint)
            )
        self._credentials = credentials
        self._endpoint = url.with_path("/").with_query(None)
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, connect=connect_timeout,
            sock_read=read_timeout,
        )  # fmt: skip
        self._submit_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, connect=connect_timeout,
            sock_read=submit_read_timeout,
        )  # fmt: skip
        self._max_attempts = max(1, max_attempts)
        self._retry_base = retry_base_delay
        self._retry_cap = retry_max_delay
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._validate = validate
        self._limit = limit
        self._max_reply = max_reply_bytes or models.default_reply_cap()
        self._max_image = max_image_bytes or models.default_image_cap()
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> VisualClient:
        """Credentials and endpoint (ASYNCIMG_ENDPOINT) from the environment."""
        kwargs.setdefault("endpoint", endpoint_from_env(env))
        return cls(credentials_from_env(env), **kwargs)

    def __repr__(self) -> str:
        return f"VisualClient(endpoint={str(self._endpoint)!r}, access_key={self.access_key!r})"

    @property
    def access_key(self) -> str:
        return self._credentials.access_key

    @property
    def endpoint(self) -> str:
        return str(self._endpoint)

    async def __aenter__(self) -> Self:
        self._ensure_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=self._limit),
                headers={"User-Agent": USER_AGENT},
                trust_env=True,
            )
        return self._session

    # -- the two actions -------------------------------------------------------------------

    async def submit(self, req_key: str, fields: Mapping[str, Any]) -> str:
        """Submit a task; returns its task_id. Fields are validated against the model first."""
        body = dict(fields)
        body.pop("req_key", None)
        if self._validate:
            models.validate_fields(req_key, body)
        reply = await self.call(constants.ACTION_SUBMIT, {"req_key": req_key, **body})
        data = reply.get("data")
        task_id = data.get("task_id") if isinstance(data, dict) else None
        if not isinstance(task_id, str | int) or isinstance(task_id, bool) or task_id == "":
            raise ReplyUnreadable(
                "submit answered success without a data.task_id", request_id=_request_id(reply)
            )
        return str(task_id)

    async def get_result(
        self,
        req_key: str,
        task_id: str,
        *,
        return_url: bool = True,
        logo_info: Mapping[str, Any] | None = None,
        aigc_meta: Mapping[str, Any] | None = None,
    ) -> Result:
        """Poll a task. Business failures (e.g. 50511 at done) raise; statuses return."""
        body: dict[str, Any] = {"req_key": req_key, "task_id": task_id}
        req_json: dict[str, Any] = {}
        if return_url:
            req_json["return_url"] = True
        if logo_info:
            req_json["logo_info"] = dict(logo_info)
        if aigc_meta:
            req_json["aigc_meta"] = dict(aigc_meta)
        if req_json:
            body["req_json"] = json.dumps(req_json, ensure_ascii=False)
        reply = await self.call(constants.ACTION_GET_RESULT, body)
        request_id = _request_id(reply)
        data = reply.get("data")
        if not isinstance(data, dict):
            raise ReplyUnreadable(
                f"poll reply has no data object (data is {_kind(data)})", request_id=request_id
            )
        status = TaskStatus.parse(data.get("status"))
        urls = _strings(data, "image_urls", request_id)
        for i, url in enumerate(urls):
            if not _is_http_url(url):
                raise ReplyUnreadable(
                    f"poll reply's data.image_urls[{i}] is not an http(s) URL: {url[:60]!r}",
                    request_id=request_id,
                )
        return Result(
            task_id=task_id,
            status=status,
            code=constants.SUCCESS_CODE,
            message=_text(reply.get("message")),
            request_id=request_id,
            image_urls=urls,
            images_base64=_strings(data, "binary_data_base64", request_id),
        )

    async def cancel(self, req_key: str, task_id: str) -> dict[str, Any]:
        """`CVCancelTask` (research §5): only a task still `in_queue` can be cancelled; the
        service's refusal raises like any other business error. Returns the reply's `data`
        (its shape is undocumented)."""
        reply = await self.call(constants.ACTION_CANCEL, {"req_key": req_key, "task_id": task_id})
        data = reply.get("data")
        return data if isinstance(data, dict) else {}

    async def download(self, url: str) -> bytes:
        """Fetch a result image URL (unsigned, http or https only), with the same retry
        policy as polling; at most `max_image_bytes`, through at most MAX_REDIRECTS."""
        if not _is_http_url(url):
            raise ReplyUnreadable(f"image URL is not http(s): {url[:60]!r}", retryable=False)
        return await self._with_retries("download", lambda: self._download_once(url))

    async def _download_once(self, url: str) -> bytes:
        session = self._ensure_session()
        try:
            async with session.get(url, max_redirects=MAX_REDIRECTS) as resp:
                if resp.status < 400:
                    _check_image_type(resp.headers.get("Content-Type", ""))
                data = await _read_capped(resp, self._max_image, "image download", "max_image_mb")
                if resp.status in (403, 404, 410):
                    raise TaskGone(
                        f"image URL answered HTTP {resp.status} (URLs are valid 24 h)",
                        code=resp.status,
                        http_status=resp.status,
                    )
                if resp.status >= 400:
                    raise ServerError(
                        f"image download answered HTTP {resp.status}", http_status=resp.status
                    )
                return data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _network_error("image download", exc) from exc

    # -- one signed call with retries ------------------------------------------------------

    async def call(self, action: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST one action; returns the success envelope or raises the classified error."""
        return await self._with_retries(action, lambda: self._call_once(action, body))

    async def _with_retries(self, action: str, once: Callable[[], Awaitable[T]]) -> T:
        """The one retry loop: `retry.should_retry` decides, `retry.retry_delay` waits."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await once()
            except AsyncImgError as exc:
                if not retry.should_retry(
                    exc, action=action, attempt=attempt, max_attempts=self._max_attempts
                ):
                    raise
                await self._sleep(
                    retry.retry_delay(
                        attempt,
                        base=self._retry_base,
                        cap=self._retry_cap,
                        jitter=self._rng.random(),
                    )
                )

    async def _call_once(self, action: str, body: Mapping[str, Any]) -> dict[str, Any]:
        payload = json.dumps(body).encode()
        version = constants.ACTION_VERSIONS.get(action, constants.API_VERSION)
        query = {"Action": action, "Version": version}
        url = self._endpoint
        host = url.host or ""
        if url.explicit_port is not None:
            host = f"{host}:{url.explicit_port}"
        signed = signing.sign(
            method="POST",
            host=host,
            path="/",
            query=query,
            body=payload,
            credentials=self._credentials,
            region=constants.REGION,
            service=constants.SERVICE,
            now=self._clock(),
            headers={"Content-Type": "application/json"},
            scheme=url.scheme,
        )
        session = self._ensure_session()
        timeout = self._submit_timeout if action == constants.ACTION_SUBMIT else self._timeout
        try:
            async with session.post(
                url.with_query(query), data=payload, headers=signed.headers, timeout=timeout
            ) as resp:
                raw = await _read_capped(resp, self._max_reply, action, "max_reply_mb")
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _network_error(action, exc) from exc
        return _parse_envelope(action, status, raw)


def _parse_envelope(action: str, http_status: int, raw: bytes) -> dict[str, Any]:
    try:
        reply = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        reply = None
    if not isinstance(reply, dict):
        snippet = raw[:80].decode("utf-8", "replace")
        raise ReplyUnreadable(
            f"{action}: HTTP {http_status} with a non-JSON reply {snippet!r}",
            http_status=http_status,
        )
    meta = reply.get("ResponseMetadata")
    if isinstance(meta, dict) and isinstance(meta.get("Error"), dict):
        err = meta["Error"]
        return_error = classify_gateway(
            str(err.get("Code", "")),
            str(err.get("Message", "")),
            _str_or_none(meta.get("RequestId")),
            http_status,
        )
        raise return_error
    code = business_code(reply.get("code"))
    if code is None:
        raise ReplyUnreadable(
            f"{action}: HTTP {http_status} reply has no business code", http_status=http_status
        )
    if code != constants.SUCCESS_CODE:
        raise classify_business(
            code, str(reply.get("message") or ""), _request_id(reply), http_status
        )
    return reply


async def _read_capped(resp: aiohttp.ClientResponse, cap: int, what: str, setting: str) -> bytes:
    """The body, read in chunks; ReplyUnreadable (not retried) once it passes `cap` bytes."""
    length = resp.content_length
    if length is None or length <= cap:
        body = bytearray()
        async for chunk in resp.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > cap:
                break
        else:
            return bytes(body)
    resp.close()  # drop the connection rather than drain the rest
    raise ReplyUnreadable(
        f"{what}: the reply is larger than {cap / models.MB:.3g} MB ({setting} in asyncimg.toml)",
        retryable=False,
    )


def _check_image_type(content_type: str) -> None:
    kind = content_type.split(";", 1)[0].strip().lower()
    if not kind.startswith(_IMAGE_TYPES):
        raise ReplyUnreadable(
            f"image download answered {kind or 'no content type'}, not an image",
            retryable=False,
        )


def _is_http_url(url: str) -> bool:
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def _strings(data: Mapping[str, Any], name: str, request_id: str | None) -> list[str]:
    """`data[name]` as a list of non-empty strings (missing or null: none)."""
    value = data.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReplyUnreadable(
            f"poll reply's data.{name} is {_kind(value)}, not a list", request_id=request_id
        )
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ReplyUnreadable(
                f"poll reply's data.{name}[{i}] is {_kind(item)}, not a string",
                request_id=request_id,
            )
    return [item for item in value if item]


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def business_code(value: object) -> int | None:
    """The envelope's `code` as an int: 10000 and "10000" alike (proxies and some SDK
    layers turn it into a string); None when it is neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _network_error(what: str, exc: BaseException) -> NetworkError:
    """A failed exchange; `ConnectFailed` when no connection was made (nothing was sent)."""
    text = f"{what} failed: {_describe(exc)}"
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return ConnectFailed(text)
    return NetworkError(text)


def _request_id(reply: Mapping[str, Any]) -> str | None:
    return _str_or_none(reply.get("request_id"))


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "timed out"
    return text
