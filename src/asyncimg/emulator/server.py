"""The emulator's HTTP server: routing, the two API actions, images, faults and stats."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web
from PIL import Image

from asyncimg import constants
from asyncimg.emulator.callbacks import CallbackDispatcher, Delivery
from asyncimg.emulator.config import EmulatorConfig
from asyncimg.emulator.faults import FaultKind, FaultPlan
from asyncimg.emulator.fetch import INPUT_INVALID, INPUT_INVALID_MESSAGE, fetch_reference
from asyncimg.emulator.gateway import GatewayError, gateway_envelope, new_request_id, verify_request
from asyncimg.emulator.render import render
from asyncimg.emulator.shapes import output_size
from asyncimg.emulator.state import RateLimiter, Status, Task, TaskTable
from asyncimg.protocol.errors import InvalidInput
from asyncimg.protocol.models import (
    get_profile,
    unknown_fields,
    validate_fields,
    validate_reference_base64,
)

ACTIONS = frozenset(constants.ACTION_VERSIONS)
IMAGE_PREFIX = "/_emulator/images"
# Reference images are sent inline: up to 10 x 15 MB as base64.
MAX_BODY_BYTES = 256 * 1024 * 1024

INVALID = 50215
_MESSAGES = {
    50200: "Invalid parameter",
    INVALID: "Input invalid for this service.",
    50400: "Access Denied",
    50429: "Request Has Reached API Limit, Please Try Later",
    50430: "Request Has Reached API Concurrent Limit, Please Try Later",
    50500: "Internal Error",
    50511: "Post Img Risk Not Pass",
    50520: "Risk Internal Error",
    50521: "Antidirt Internal Error",
    50522: "Image Copyright Internal Error",
}
_HTTP_429 = frozenset({50429, 50430})
# 50520-50522 are HTTP 400 in every doc copy (research §3), only 50500/50501 are 500.
_HTTP_500 = frozenset({50500, 50501})
_REVIEW_INTERNAL = (50520, 50521, 50522)
# Keys real `data` objects carry beside the documented ones (research S18); a client must
# not trip over them.
_EXTRA_DATA = {
    "algorithm_base_resp": {"status_code": 0, "status_message": "Success"},
    "resp_data": "",
}


_NO_IMAGE_FAULTS = (
    FaultKind.REVIEW_FAILURE,
    FaultKind.LATE_INVALID,
    FaultKind.REVIEW_INTERNAL_ERROR,
)


class BusinessError(Exception):
    def __init__(self, code: int, message: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message or _MESSAGES.get(code, "Error")

    @property
    def http_status(self) -> int:
        if self.code in _HTTP_429:
            return 429
        return 500 if self.code in _HTTP_500 else 400


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise _bad("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise _bad("the body must be a JSON object")
    return value


def _required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise _bad(f"{name} is required (a string)")
    return value


def _bad(detail: str) -> BusinessError:
    """The documented invalid-input reply (50215, HTTP 400), with the emulator's detail."""
    return BusinessError(INVALID, f"{_MESSAGES[INVALID]} ({detail})")


def _invalid(exc: InvalidInput) -> BusinessError:
    if exc.code == 50400:  # an unknown req_key
        return BusinessError(50400, f"{_MESSAGES[50400]}: {exc.message}")
    return _bad(exc.message)


def _data(
    status: Status,
    image_urls: list[str] | None = None,
    binary_data_base64: list[str] | None = None,
) -> dict[str, Any]:
    """A GetResult `data` as the service sends it: both image keys, one of them (or both)
    null, and keys the docs do not describe."""
    return {
        "status": status.value,
        "image_urls": image_urls,
        "binary_data_base64": binary_data_base64,
        **_EXTRA_DATA,
    }


class Emulator:
    """A local stand-in for the Volcengine visual API: ``async with Emulator(cfg) as emu``."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        cfg = self.config
        self._offset = 0.0
        # The scaled clock runs `time_scale` times faster than the configured one from here.
        self._anchor = cfg.clock()
        self._tasks = TaskTable(
            gen_seconds=cfg.gen_seconds,
            retention_seconds=cfg.retention_seconds,
            expire_seconds=cfg.expire_seconds,
            seed=cfg.seed,
        )
        self._limiter = RateLimiter(cfg.qps)
        self._faults = FaultPlan(
            cfg.fault_rate, cfg.fault_kinds, cfg.seed, image_rate=cfg.image_fault_rate
        )
        self._requests: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._rate_limited: Counter[str] = Counter()  # 50429s by action
        self._downloads = 0
        self._downloads_by_task: Counter[str] = Counter()
        # Answered polls per task, in real seconds (time.monotonic): how far apart a client
        # polls one task can be measured even while a test holds the emulator's clock.
        self._polled_at: dict[str, list[float]] = {}
        self._render_locks: dict[str, asyncio.Lock] = {}
        # Set by release_slow(): every request held by a `slow` fault goes on at once.
        self._slow_over = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._http: aiohttp.ClientSession | None = None
        self._reference_fetches: list[dict[str, Any]] = []
        self._callbacks = CallbackDispatcher(
            payload=self._callback_payload,
            session=self._session,
            now=self.now,
            time_scale=cfg.time_scale,
            retry_seconds=cfg.callback_retry_seconds,
        )
        self.app = self._build_app()

    # -- public API ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the emulator is not running")
        return self._port

    @property
    def url(self) -> str:
        host = self.config.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def now(self) -> float:
        """The emulator's clock: the configured clock (sped up `time_scale` times) plus every
        :meth:`advance`. Task timing, retention and the limits' windows run on it."""
        return self.emulator_time(self.config.clock())

    def wall_now(self) -> float:
        """The unscaled clock signed X-Dates are checked against: the configured clock plus
        every :meth:`advance`. The same as :meth:`now` at `time_scale` 1."""
        return self.config.clock() + self._offset

    def emulator_time(self, wall: float) -> float:
        """A reading of the configured clock (e.g. a client's `time.time()`) on the
        emulator's clock, so client timestamps compare with the task log's."""
        scale = self.config.time_scale
        if scale == 1.0:
            return wall + self._offset
        return self._anchor + (wall - self._anchor) * scale + self._offset

    def advance(self, seconds: float) -> None:
        """Jump the emulator's clock forward by `seconds` (signed X-Dates are checked against
        the unscaled clock, which jumps by the same amount)."""
        self._offset += seconds
        self._callbacks.poke()

    async def deliver_callbacks(self) -> int:
        """Send every callback due now (the background loop does this by itself too)."""
        return await self._callbacks.deliver_due()

    def inject(self, kind: FaultKind | str, count: int = 1, action: str | None = None) -> None:
        """Make the next `count` matching requests (or submitted tasks) suffer `kind`."""
        self._faults.inject(kind, count, action)

    def release_slow(self) -> None:
        """End the delay of every request a `slow` fault holds now: each goes on as if
        `slow_seconds` had passed; later `slow` faults wait again. With a large
        `slow_seconds`, a test holds a request exactly as long as it needs instead of
        racing a delay. Call it on the emulator's loop."""
        self._slow_over.set()
        self._slow_over = asyncio.Event()

    def task_log(self) -> list[dict[str, Any]]:
        """Every task created so far, oldest first: `task_id`, `received_at` (when its submit
        request reached the handler), `submitted_at` (when the task was created, after any
        latency), `started_at` (when it leaves `in_queue`), `done_at` (when it is `done`), all
        in emulator-clock seconds, and `prompt`. Read-only."""
        return [
            {
                "task_id": s.task_id,
                "received_at": s.received_at,
                "submitted_at": s.submitted_at,
                "started_at": s.started_at,
                "done_at": s.done_at,
                "prompt": s.prompt,
            }
            for s in self._tasks.log
        ]

    def stats(self) -> dict[str, Any]:
        unfinished = self._tasks.unfinished(self.now())
        return {
            "requests": dict(self._requests),
            "errors": dict(self._errors),
            "rate_limited": dict(self._rate_limited),
            "image_downloads": self._downloads,
            "image_downloads_by_task": dict(self._downloads_by_task),
            "polled_at_by_task": {k: list(v) for k, v in self._polled_at.items()},
            "tasks_submitted": self._tasks.submitted,
            "tasks_done": self._tasks.done,
            "tasks_unfinished": unfinished,
            "peak_unfinished": self._tasks.peak_unfinished,
            "faults_fired": dict(self._faults.fired),
            "tasks": self.task_log(),
            "reference_fetches": list(self._reference_fetches),
            "callbacks": [d.as_dict() for d in self._callbacks.deliveries],
        }

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._callbacks.start()

    async def close(self) -> None:
        await self._callbacks.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        """The emulator's own outgoing HTTP (reference URLs, callbacks)."""
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- HTTP ---------------------------------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/", self._api)
        app.router.add_get(IMAGE_PREFIX + "/{task_id}/{name}", self._image)
        app.router.add_post("/_emulator/faults", self._inject)
        app.router.add_get("/_emulator/stats", self._stats)
        return app

    def _gateway_reply(
        self, error: GatewayError, request_id: str, action: str, version: str
    ) -> web.Response:
        self._errors[error.code] += 1
        return web.json_response(
            gateway_envelope(error, request_id, action, version),
            status=error.http_status,
            headers={"X-Tt-Logid": request_id},
        )

    def _business_reply(
        self,
        code: int,
        message: str,
        request_id: str,
        data: dict[str, Any] | None,
        started: float,
        status: int = 200,
    ) -> web.Response:
        if code != constants.SUCCESS_CODE:
            self._errors[str(code)] += 1
            data = None
        body = {
            "code": code,
            "message": message,
            "request_id": request_id,
            "status": code,
            "time_elapsed": f"{(time.perf_counter() - started) * 1000:.6f}ms",
            "data": data,
        }
        return web.json_response(body, status=status, headers={"X-Tt-Logid": request_id})

    async def _api(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        received = self.now()
        request_id = new_request_id(self.wall_now())
        action = request.query.get("Action", "")
        version = request.query.get("Version", "")
        self._requests[action or "(none)"] += 1
        body = await request.read()
        if action not in ACTIONS or version != constants.ACTION_VERSIONS[action]:
            error = GatewayError(
                "InvalidActionOrVersion",
                f"Could not find operation {action or '(none)'} for version {version or '(none)'}",
            )
            return self._gateway_reply(error, request_id, action, version)
        try:
            verify_request(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=request.headers,
                body=body,
                access_key=self.config.access_key,
                secret_key=self.config.secret_key,
                session_token=self.config.session_token,
                now=self.wall_now(),
                max_skew=self.config.max_clock_skew,
            )
        except GatewayError as refused:
            return self._gateway_reply(refused, request_id, action, version)

        if self.config.latency_seconds:
            await asyncio.sleep(self.config.latency_seconds)
        fault = self._faults.for_request(action)
        if await self._drop_or_delay(fault, request):
            return web.Response()
        if fault is FaultKind.GATEWAY_REFUSAL:
            missing = GatewayError("MissingParameter", "A required parameter is missing.")
            return self._gateway_reply(missing, request_id, action, version)
        if fault is FaultKind.PARAM_ERROR:
            return self._business_reply(50200, _MESSAGES[50200], request_id, None, started, 400)
        if fault is FaultKind.LIMIT:
            code = self._faults.limit_code(action)
            return self._business_reply(code, _MESSAGES[code], request_id, None, started, 429)
        if fault is FaultKind.SERVER_ERROR:
            if self._faults.server_error_is_gateway():
                internal = GatewayError("InternalError", "The service hit an internal error.")
                return self._gateway_reply(internal, request_id, action, version)
            return self._business_reply(50500, _MESSAGES[50500], request_id, None, started, 500)

        try:
            if action == constants.ACTION_SUBMIT:
                data = await self._submit(body, received)
                if fault is FaultKind.HOSTILE_TASK_ID:
                    data = {"task_id": self._faults.hostile_task_id()}
            elif action == constants.ACTION_CANCEL:
                data = self._cancel(body)
            else:
                data = await self._get_result(body, f"{request.scheme}://{request.host}")
                if fault is FaultKind.HOSTILE_RESULT and data.get("status") == "done":
                    hostile = self._faults.hostile_result(data)
                    return self._business_reply(
                        constants.SUCCESS_CODE, "Success", request_id, hostile, started
                    )
        except BusinessError as exc:
            return self._business_reply(
                exc.code, exc.message, request_id, None, started, exc.http_status
            )
        return self._business_reply(constants.SUCCESS_CODE, "Success", request_id, data, started)

    async def _submit(self, raw: bytes, received: float) -> dict[str, Any]:
        body = _json_object(raw)
        req_key = _required_str(body, "req_key")
        fields = {k: v for k, v in body.items() if k != "req_key"}
        inputs: list[tuple[int, int]] = []
        try:
            profile = get_profile(req_key)
            unknown = unknown_fields(profile, fields)
            if unknown and self.config.strict:
                raise _bad(f"{unknown[0]}: {req_key} does not take this field (--strict)")
            fields = {k: v for k, v in fields.items() if k not in unknown}
            validate_fields(req_key, fields)
            for i, encoded in enumerate(fields.get("binary_data_base64") or []):
                info = validate_reference_base64(profile, i, encoded)
                inputs.append((info.width, info.height))
        except InvalidInput as exc:
            raise _invalid(exc) from None
        if fields.get("binary_data_base64") and req_key in self.config.reject_base64_references:
            raise BusinessError(INPUT_INVALID, INPUT_INVALID_MESSAGE)
        fetched = [
            await fetch_reference(self._session(), url, i, profile)
            for i, url in enumerate(fields.get("image_urls") or [])
        ]
        self._reference_fetches.extend(f.as_dict() for f in fetched)
        problems = [f.problem for f in fetched if f.problem]
        if problems:
            raise BusinessError(INPUT_INVALID, f"{INPUT_INVALID_MESSAGE} ({problems[0]})")
        inputs.extend(size for f in fetched if (size := _image_size(f.data)) is not None)
        now = self.now()
        if not self._limiter.admit(constants.ACTION_SUBMIT, now):
            self._rate_limited[constants.ACTION_SUBMIT] += 1
            raise BusinessError(50429)
        limit = self.config.concurrency
        if limit is not None and self._tasks.unfinished(now) >= limit:
            raise BusinessError(50430)
        fault = self._faults.for_task()
        task = self._tasks.submit(
            req_key,
            profile,
            fields,
            fault,
            now,
            received_at=received,
            output_size=output_size(profile, fields, inputs),
        )
        task.url_references = [base64.b64encode(f.data).decode() for f in fetched if f.data]
        callback_url = fields.get("callback_url")
        if isinstance(callback_url, str) and callback_url:
            self._callbacks.schedule(
                task.task_id,
                req_key,
                callback_url,
                return_url=fields.get("return_url") in (True, "true"),
                due=task.done_at,
            )
        return {"task_id": task.task_id}

    def _cancel(self, raw: bytes) -> dict[str, Any]:
        """`CVCancelTask`: drops a task still `in_queue`; refuses one already generating
        (research §5). The reply's shape and the refusal's code are undocumented: the
        emulator answers `data: {}` and 50215."""
        body = _json_object(raw)
        req_key = _required_str(body, "req_key")
        task_id = _required_str(body, "task_id")
        now = self.now()
        if not self._limiter.admit(constants.ACTION_CANCEL, now):
            raise BusinessError(50429)
        task = self._tasks.get(task_id)
        if task is None or task.req_key != req_key:
            raise _bad(f"no task {task_id} for {req_key}")
        status = self._tasks.cancel(task, now)
        if status is not None:
            raise _bad(f"task {task_id} is {status.value}; only in_queue tasks can be cancelled")
        return {}

    async def _callback_payload(self, delivery: Delivery) -> dict[str, Any]:
        """The GetResult envelope for a callback, plus the top-level `task_id` (S3)."""
        started = time.perf_counter()
        query = {"req_key": delivery.req_key, "task_id": delivery.task_id}
        query["req_json"] = json.dumps({"return_url": delivery.return_url})
        code, message, data = constants.SUCCESS_CODE, "Success", None
        try:
            data = await self._get_result(json.dumps(query).encode(), self.url, internal=True)
        except BusinessError as exc:
            code, message = exc.code, exc.message
        return {
            "code": code,
            "data": data,
            "message": message,
            "request_id": new_request_id(self.wall_now()),
            "status": code,
            "time_elapsed": f"{(time.perf_counter() - started) * 1000:.6f}ms",
            "task_id": delivery.task_id,
        }

    async def _get_result(
        self, raw: bytes, base_url: str, *, internal: bool = False
    ) -> dict[str, Any]:
        """A poll's `data`; `internal` (a callback being built) bypasses the QPS limit."""
        body = _json_object(raw)
        req_key = _required_str(body, "req_key")
        task_id = _required_str(body, "task_id")
        try:
            get_profile(req_key)
        except InvalidInput as exc:
            raise _invalid(exc) from None
        options: dict[str, Any] = {}
        if "req_json" in body:
            req_json = body["req_json"]
            if not isinstance(req_json, str):
                raise _bad("req_json must be a JSON string")
            try:
                options = json.loads(req_json)
            except ValueError:
                raise _bad("req_json is not valid JSON") from None
            if not isinstance(options, dict):
                raise _bad("req_json must encode an object")
        now = self.now()
        if not internal and not self._limiter.admit(constants.ACTION_GET_RESULT, now):
            self._rate_limited[constants.ACTION_GET_RESULT] += 1
            raise BusinessError(50429)

        task = self._tasks.get(task_id)
        if task is None or task.req_key != req_key:
            return _data(Status.NOT_FOUND)
        if not internal:
            self._polled_at.setdefault(task_id, []).append(time.monotonic())
        status = self._tasks.status(task, now)
        if status is not Status.DONE:
            return _data(status)
        if task.fault is FaultKind.REVIEW_FAILURE:
            raise BusinessError(50511)
        if task.fault is FaultKind.LATE_INVALID:
            raise BusinessError(INVALID)
        if task.fault is FaultKind.REVIEW_INTERNAL_ERROR:
            raise BusinessError(_REVIEW_INTERNAL[int(task.task_id) % len(_REVIEW_INTERNAL)])
        count = task.image_count(self.config.images_per_task)
        if options.get("return_url") is True and task.fault is not FaultKind.BASE64_ONLY:
            urls = [self._image_url(base_url, task, i) for i in range(count)]
            return _data(Status.DONE, image_urls=urls)
        images = [base64.b64encode(await self._image_bytes(task, i)).decode() for i in range(count)]
        return _data(Status.DONE, binary_data_base64=images)

    @staticmethod
    def _image_url(base_url: str, task: Task, index: int) -> str:
        return f"{base_url}{IMAGE_PREFIX}/{task.task_id}/{index}.{task.extension}"

    async def _image_bytes(self, task: Task, index: int) -> bytes:
        """Render on first use (in a thread: a 4096² PNG takes a few hundred ms), then cache."""
        lock = self._render_locks.setdefault(task.task_id, asyncio.Lock())
        async with lock:
            if index not in task.images:
                prompt = task.fields.get("prompt")
                task.images[index] = await asyncio.to_thread(
                    render,
                    prompt=prompt if isinstance(prompt, str) else "",
                    task_id=task.task_id,
                    index=index,
                    count=task.image_count(self.config.images_per_task),
                    size=task.size,
                    output_format=task.profile.output_format,
                    references=task.references,
                )
        data = task.images[index]
        if task.fault is FaultKind.TRUNCATED_IMAGE:
            return data[: len(data) // 2]
        return data

    async def _image(self, request: web.Request) -> web.StreamResponse:
        task = self._tasks.get(request.match_info["task_id"])
        stem, _, ext = request.match_info["name"].partition(".")
        if (
            task is None
            or ext != task.extension
            or not stem.isdigit()
            or int(stem) >= task.image_count(self.config.images_per_task)
            or task.fault in _NO_IMAGE_FAULTS
            or task.cancelled
            or self.now() < task.done_at
        ):
            return web.json_response({"error": "no such image"}, status=404)
        fault = self._faults.for_image()
        if await self._drop_or_delay(fault, request):
            return web.Response()
        if fault is FaultKind.SERVER_ERROR:
            return web.json_response({"error": "internal error"}, status=502)
        if fault is FaultKind.EXPIRED_URL:
            return web.Response(text="AccessDenied: Request has expired", status=403)
        data = await self._image_bytes(task, int(stem))
        self._downloads += 1
        self._downloads_by_task[task.task_id] += 1
        if fault is FaultKind.TRUNCATED_BODY:
            data = data[: len(data) // 2]
        return web.Response(body=data, content_type=task.content_type)

    async def _drop_or_delay(self, fault: FaultKind | None, request: web.Request) -> bool:
        """Apply a `drop` (True: the connection is gone, send nothing) or a `slow` fault."""
        if fault is FaultKind.DROP:
            if request.transport is not None:
                request.transport.close()
            return True
        if fault is FaultKind.SLOW:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.slow_seconds):
                    await self._slow_over.wait()
        return False

    async def _inject(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            count = body.get("count", 1)
            action = body.get("action")
            if not isinstance(count, int) or (action is not None and not isinstance(action, str)):
                raise ValueError("count must be an integer and action a string")
            self.inject(str(body.get("kind")), count, action)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"queued": body})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())


async def serve(config: EmulatorConfig, on_ready: Callable[[Emulator], None] | None = None) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Emulator(config) as emulator:
            if on_ready is not None:
                on_ready(emulator)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_forever(config: EmulatorConfig, on_ready: Callable[[Emulator], None] | None = None) -> None:
    """Blocking entry point for the CLI."""
    asyncio.run(serve(config, on_ready))


def _image_size(data: bytes | None) -> tuple[int, int] | None:
    """A fetched reference's pixel size (what SeedEdit and v40 follow), if it decodes."""
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
