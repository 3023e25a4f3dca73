"""`asyncimg serve`: the gallery page live, over aiohttp, updated by server-sent events.

Read-only: GET only, nothing is written (a folder is read through a read-only store, which
never creates, moves, indexes or quarantines a file). A watcher polls the chapter's feed
every `watch_interval` seconds (a folder: its names, sizes and mtimes; a shared store: the
rows written since the last look) and rebuilds the frames when something changed; each
open page then gets one `update` event with the cards that changed, the order of all
frames and the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp import web

from asyncimg.gallery.frames import Frame
from asyncimg.gallery.page import card_html, card_version, render_page, summary_html
from asyncimg.gallery.source import Chapter, Feed, feed
from asyncimg.gallery.thumbs import Thumbnails

#: Seconds between looks at the tasks folder or store.
WATCH_INTERVAL = 1.0
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE = 15.0


@dataclass
class Snapshot:
    """The frames as of one look at the records."""

    version: int
    frames: list[Frame]
    cards: dict[str, str]
    summary: str


@dataclass
class LiveGallery:
    """The chapter's current frames, refreshed by :meth:`watch`, shared by every page."""

    chapter: Chapter
    watch_interval: float = WATCH_INTERVAL
    thumbs: Thumbnails = field(default_factory=Thumbnails)
    snapshot: Snapshot = field(init=False)
    _changed: asyncio.Condition = field(init=False, default_factory=asyncio.Condition)
    _feed: Feed = field(init=False)

    def __post_init__(self) -> None:
        self.snapshot = Snapshot(0, [], {}, "")
        self._feed = feed(self.chapter.store)
        self.refresh()

    @staticmethod
    def link(frame: Frame) -> str | None:
        return f"image/{frame.key}" if frame.image is not None else None

    def refresh(self) -> bool:
        """Rebuild the frames if the records changed; whether anything did."""
        records = self._feed.poll()
        if records is None:
            return False
        frames = self.chapter.frames_of(records)
        cards = {f.key: card_html(f, self.thumbs, self.link) for f in frames}
        self.snapshot = Snapshot(self.snapshot.version + 1, frames, cards, summary_html(frames))
        return True

    async def watch(self) -> None:
        """Look at the records until cancelled; wake every open stream when they changed.
        A look that fails (a store that stopped answering) is tried again next time; the
        pages keep what they show, and their "updated" time says how old it is."""
        while True:
            await asyncio.sleep(self.watch_interval)
            try:
                changed = await asyncio.to_thread(self.refresh)
            except OSError:
                continue
            if changed:
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
        title = self.chapter.title
        return render_page(snap.frames, self.thumbs, title=title, link=self.link, live=True)

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
