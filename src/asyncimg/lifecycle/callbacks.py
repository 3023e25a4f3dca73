"""Callback mode, the receiving end: the service POSTs a finished task's GetResult envelope
plus `task_id` to the frame's `callback_url`; this completes the matching task at once.

Callbacks are unsigned (research §5: no documented signature), so the body is never
trusted: it only names a task. A task id this folder does not hold is refused (404) and
nothing is written; one in flight is polled there and then with the user's own signed
credentials, through the same `Checker.check_task` a check pass uses (download, verify,
save, state machine). Polling stays the fallback for any callback that never comes.

`add_callback_routes(app, ...)` mounts the receiver on any aiohttp application (the
`asyncimg callbacks` command, or `asyncimg serve --callbacks`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from asyncimg.i18n import _
from asyncimg.lifecycle.check import Checker, PassSummary
from asyncimg.protocol.client import VisualClient
from asyncimg.store.base import Store
from asyncimg.store.states import IN_FLIGHT

CALLBACK_PATH = "/callbacks"
MAX_CALLBACK_BYTES = 64 * 1024 * 1024  # a callback without return_url carries base64 images

Reporter = Callable[[str], None]


def callback_task_id(body: object) -> str | None:
    """The top-level `task_id` of a callback body (digits, as text or a number), or None."""
    if not isinstance(body, dict):
        return None
    value = body.get("task_id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text if text.isdigit() else None


@dataclass
class CallbackReceiver:
    """Turns callbacks into immediate polls of this folder's tasks."""

    store: Store
    client_factory: Callable[[], VisualClient]
    make_checker: Callable[[VisualClient], Checker]
    report: Reporter = field(default=lambda _line: None)
    received: int = 0
    completed: int = 0
    _checker: Checker | None = field(default=None, init=False, repr=False)

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: one client (one HTTP session) for the app's life."""
        async with self.client_factory() as client:
            self._checker = self.make_checker(client)
            yield
            self._checker = None

    async def handle(self, request: web.Request) -> web.Response:
        self.received += 1
        raw = await request.read()
        try:
            body: Any = json.loads(raw)
        except (UnicodeDecodeError, ValueError):
            return web.json_response({"error": "the body is not JSON"}, status=400)
        task_id = callback_task_id(body)
        if task_id is None:
            return web.json_response({"error": "no task_id in the body"}, status=400)
        return await self._complete(task_id)

    async def _complete(self, task_id: str) -> web.Response:
        scanned = self.store.scan()
        record = next((r for r in scanned.records if r.task_id == task_id), None)
        if record is None:
            known = next((t for t in scanned.tasks if t.task_id == task_id), None)
            if known is not None:  # a retried delivery after we finished it: fine
                return web.json_response({"task_id": task_id, "status": known.status.value})
            self.report(
                _("callback for task {task_id}: not a task of {root}; ignored").format(
                    task_id=task_id, root=self.store.root
                )
            )
            return web.json_response(
                {"error": f"task {task_id} is not a task of this folder"}, status=404
            )
        if self._checker is None:
            return web.json_response({"error": "not ready"}, status=503)
        name = record.filename or task_id
        if record.status not in IN_FLIGHT:
            return web.json_response({"task_id": task_id, "status": record.status.value})
        summary = PassSummary()
        after = await self._checker.check_task(record, summary)
        if summary.halted:
            self.report(
                _("{name}: callback received, but the poll stopped: {why}").format(
                    name=name, why=summary.halted
                )
            )
            return web.json_response({"task_id": task_id, "error": summary.halted}, status=503)
        status = after.status.value if after is not None else "busy"
        if summary.completed:
            self.completed += 1
        self.report(
            _("{name}: callback for task {task_id} → {status}").format(
                name=name,
                task_id=task_id,
                status=_(status) if after is not None else _("busy"),
            )
        )
        return web.json_response({"task_id": task_id, "status": status})


def add_callback_routes(
    app: web.Application,
    *,
    store: Store,
    client_factory: Callable[[], VisualClient],
    make_checker: Callable[[VisualClient], Checker],
    path: str = CALLBACK_PATH,
    report: Reporter | None = None,
) -> CallbackReceiver:
    """Receive callbacks for `store`'s tasks at POST `path` on `app` (before it starts)."""
    receiver = CallbackReceiver(store, client_factory, make_checker, report or (lambda _l: None))
    app.router.add_post(path, receiver.handle)
    app.cleanup_ctx.append(receiver.context)
    return receiver
