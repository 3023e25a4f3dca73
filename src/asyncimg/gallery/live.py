"""`asyncimg serve`: the gallery page live, over aiohttp, updated by server-sent events.

Read-only: GET only, nothing under the tasks folder is written (records are read the way
`submit --dry-run` reads them, never through the store, which may quarantine or index).
A watcher looks at the folder every `watch_interval` seconds (names, sizes and mtimes
only) and re-reads the records when something changed; each open page then gets one
`update` event with the cards that changed, the order of all frames and the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from asyncimg.api import read_records
from asyncimg.gallery.frames import Frame, frames_of
from asyncimg.gallery.page import card_html, card_version, render_page, summary_html
from asyncimg.gallery.thumbs import Thumbnails

#: Seconds between looks at the tasks folder.
WATCH_INTERVAL = 1.0
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE = 15.0

Signature = tuple[tuple[str, int, int], ...]


def folder_signature(root: Path) -> Signature:
    """What changes when any record is written, added or removed (cheap: one listdir)."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return ()
    found = []
    for entry in entries:
        if entry.name.startswith(".") or not entry.name.endswith((".json", ".txt")):
            continue
        with contextlib.suppress(OSError):
            stat = entry.stat()
            found.append((entry.name, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(found))


@dataclass
class Snapshot:
    """The frames as of one look at the folder."""

    version: int
    frames: list[Frame]
    cards: dict[str, str]
    summary: str


@dataclass
class LiveGallery:
    """The folder's current frames, refreshed by :meth:`watch`, shared by every page."""

    root: Path
    title: str
    watch_interval: float = WATCH_INTERVAL
    thumbs: Thumbnails = field(default_factory=Thumbnails)
    snapshot: Snapshot = field(init=False)
    _changed: asyncio.Condition = field(init=False, default_factory=asyncio.Condition)
    _signature: Signature | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.snapshot = Snapshot(0, [], {}, "")
        self.refresh()

    @staticmethod
    def link(frame: Frame) -> str | None:
        return f"image/{frame.key}" if frame.image is not None else None

    def refresh(self) -> bool:
        """Re-read the records if the folder changed; whether anything did."""
        signature = folder_signature(self.root)
        if signature == self._signature:
            return False
        self._signature = signature
        frames = frames_of(read_records(self.root), str(self.root))
        cards = {f.key: card_html(f, self.thumbs, self.link) for f in frames}
        self.snapshot = Snapshot(self.snapshot.version + 1, frames, cards, summary_html(frames))
        return True

    async def watch(self) -> None:
        """Look at the folder until cancelled; wake every open stream when it changed."""
        while True:
            await asyncio.sleep(self.watch_interval)
            if await asyncio.to_thread(self.refresh):
                async with self._changed:
                    self._changed.notify_all()

    async def next_snapshot(self, after: int, wait: float) -> Snapshot | None:
        """The snapshot once its version passes `after`; None after `wait` seconds."""
        async with self._changed:
            try:
                async with asyncio.timeout(wait):
                    await self._changed.wait_for(lambda: self.snapshot.version > after)
            except TimeoutError:
                return None
            return self.snapshot

    def page(self) -> str:
        snap = self.snapshot
        return render_page(snap.frames, self.thumbs, title=self.title, link=self.link, live=True)

    def update_event(self, snap: Snapshot, shown: dict[str, str]) -> str:
        """The SSE `update` for a page that shows `shown` (key → card version); updates it."""
        changed = {}
        for key, card in snap.cards.items():
            version = card_version(card)
            if shown.get(key) != version:
                changed[key] = [version, card]
                shown[key] = version
        data = {
            "version": snap.version,
            "order": [f.key for f in snap.frames],
            "cards": changed,
            "summary": snap.summary,
        }
        return f"event: update\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def make_app(gallery: LiveGallery) -> web.Application:
    """GET /, /events and /image/{key}; every other path or method is refused."""

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=gallery.page(), content_type="text/html", charset="utf-8")

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        shown: dict[str, str] = {}
        first = gallery.snapshot
        snap: Snapshot | None = first
        after = first.version
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                if snap is not None:
                    await response.write(gallery.update_event(snap, shown).encode("utf-8"))
                    after = snap.version
                else:
                    await response.write(b": keep-alive\n\n")
                snap = await gallery.next_snapshot(after, KEEPALIVE)
        except ConnectionError:  # the page was closed
            return response

    async def image(request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        for frame in gallery.snapshot.frames:
            if frame.key == key and frame.image is not None and frame.image.is_file():
                return web.FileResponse(frame.image)
        raise web.HTTPNotFound(text="no such image")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/events", events)
    app.router.add_get("/image/{key}", image)

    async def watcher(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(gallery.watch())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(watcher)
    return app


async def start(
    gallery: LiveGallery,
    host: str,
    port: int,
    extend: Callable[[web.Application], object] | None = None,
) -> tuple[web.AppRunner, str]:
    """Serve `gallery` on host:port (0: any free port); the runner and the page's URL.
    `extend` adds routes of its own first (`serve --callbacks`)."""
    app = make_app(gallery)
    if extend is not None:
        extend(app)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])
    shown_host = f"[{host}]" if ":" in host else host
    return runner, f"http://{shown_host}:{bound}/"
