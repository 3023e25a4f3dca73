"""Callback mode (research §5, S3): when a task given a `callback_url` finishes, POST its
GetResult envelope plus a top-level `task_id` there, retrying a failed delivery.

Deliveries are due on the emulator's clock (so `time_scale` and `advance()` apply). One
background loop sends what is due; `deliver_due()` does one round for tests that drive the
clock by hand. Real callbacks are unsigned and their retry policy is undocumented: the
delays here are a stand-in (`EmulatorConfig.callback_retry_seconds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

Payload = Callable[["Delivery"], Awaitable[dict[str, Any]]]
Session = Callable[[], aiohttp.ClientSession]

# The loop never sleeps longer than this (real seconds): a clock moved by `advance()` or
# an injected clock is noticed within it.
_MAX_NAP_S = 0.2
_POST_TIMEOUT_S = 10.0


@dataclass
class Delivery:
    """One task's callback: where, when next, and what happened so far."""

    task_id: str
    req_key: str
    url: str
    return_url: bool
    due: float
    attempts: int = 0
    delivered: bool = False
    gave_up: bool = False
    last_status: str | None = None
    sending: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "url": self.url,
            "attempts": self.attempts,
            "delivered": self.delivered,
            "gave_up": self.gave_up,
            "last_status": self.last_status,
        }


class CallbackDispatcher:
    def __init__(
        self,
        *,
        payload: Payload,
        session: Session,
        now: Callable[[], float],
        time_scale: float,
        retry_seconds: tuple[float, ...],
    ) -> None:
        self._payload = payload
        self._session = session
        self._now = now
        self._scale = time_scale
        self._retry = retry_seconds
        self.deliveries: list[Delivery] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._loop_task: asyncio.Task[None] | None = None

    def schedule(
        self, task_id: str, req_key: str, url: str, *, return_url: bool, due: float
    ) -> None:
        self.deliveries.append(Delivery(task_id, req_key, url, return_url, due))
        self._wake.set()

    def poke(self) -> None:
        """The clock jumped (`advance()`): look again now."""
        self._wake.set()

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._closing = True
            self._wake.set()
            self._loop_task.cancel()
            await asyncio.wait({self._loop_task}, timeout=_POST_TIMEOUT_S)
            self._loop_task = None

    def pending(self) -> list[Delivery]:
        return [d for d in self.deliveries if not (d.delivered or d.gave_up or d.sending)]

    async def deliver_due(self) -> int:
        """Send every delivery that is due now; how many were attempted."""
        now = self._now()
        due = [d for d in self.pending() if d.due <= now]
        await asyncio.gather(*(self._attempt(d) for d in due))
        return len(due)

    async def _run(self) -> None:
        while not self._closing:
            await self.deliver_due()
            waiting = self.pending()
            nap = _MAX_NAP_S
            if waiting:
                ahead = min(d.due for d in waiting) - self._now()
                nap = min(nap, max(0.0, ahead / self._scale))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(nap):
                    await self._wake.wait()

    async def _attempt(self, delivery: Delivery) -> None:
        delivery.attempts += 1
        delivery.sending = True
        try:
            body = await self._payload(delivery)
            async with self._session().post(
                delivery.url,
                data=json.dumps(body, ensure_ascii=False).encode(),
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=_POST_TIMEOUT_S),
            ) as resp:
                await resp.read()
                delivery.last_status = str(resp.status)
                ok = 200 <= resp.status < 300
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            delivery.last_status = type(exc).__name__
            ok = False
        finally:
            delivery.sending = False
        if ok:
            delivery.delivered = True
        elif delivery.attempts > len(self._retry):
            delivery.gave_up = True
        else:
            delivery.due = self._now() + self._retry[delivery.attempts - 1]
