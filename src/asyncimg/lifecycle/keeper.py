"""On a shared store: keep other machines' finished frames in storage while they are off.

A machine works (polls, writes) only the frames it asked for, unless their paths are on a
shared folder. When it is off, its accepted tasks finish at the service with nobody
polling them, and the service forgets them after its retention (~12-24 h). A keeper on
any other machine's `monitor` or `check` looks after exactly those tasks
(`PgStore.unwatched`: this account's, another machine's, not polled or held by anyone,
nothing kept yet): under the task's lease it polls it now and then, and once the service
says done it downloads the images, checks them, puts them in the bucket and records them
in the task's `kept`. It never writes the owner's files, never changes the task's state
and never submits (nothing is billed): the owner writes the frame from the service's URL
as usual, or from the bucket once the service has forgotten it (`asyncimg pull`).

Polls go through the account's shared poll pace, so keepers never push the account over
its rate. A keeper stops for the run at a setup problem (credentials, the bucket's keys).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asyncimg.i18n import _
from asyncimg.lifecycle import decide
from asyncimg.lifecycle.download import fetch_images, max_pixels_for, verify_image
from asyncimg.lifecycle.events import Event, frame_name
from asyncimg.lifecycle.interrupt import StopOnSignals
from asyncimg.lifecycle.kept import FrameBucket
from asyncimg.lifecycle.monitor import MonitorOutcome
from asyncimg.lifecycle.schedule import DEFAULT_POLL_RATE
from asyncimg.protocol.client import Result, TaskStatus
from asyncimg.protocol.errors import AsyncImgError, ConfigError
from asyncimg.store.base import StaleRecord
from asyncimg.store.machine import machine_of
from asyncimg.store.pg.store import PgStore, StoreUnavailable
from asyncimg.store.record import KeptImage, TaskRecord
from asyncimg.store.states import IN_FLIGHT, transition

if TYPE_CHECKING:
    from asyncimg.lifecycle.check import Checker, PassSummary

Clock = Callable[[], float]


@dataclass
class FrameKeeper:
    """Keeps the finished images of `store`'s unwatched tasks in `frames` (see above)."""

    checker: Checker
    store: PgStore
    frames: FrameBucket
    every: float = 30.0
    """How long between two polls of one task."""
    poll_rate: float = DEFAULT_POLL_RATE
    kept: int = 0
    """Frames kept by this keeper."""
    halted: str | None = None
    """Why it stopped for this run (a setup problem), said once."""
    _due: dict[str, float] = field(default_factory=dict)
    _settled: set[str] = field(default_factory=set)
    """Tasks the service finished without an image to keep (failed, gone): their machine's."""
    _watching: int = 0

    @property
    def clock(self) -> Clock:
        return self.checker.clock

    @property
    def watching(self) -> int:
        """Tasks seen unfinished (or not yet asked about) at the last sweep."""
        return 0 if self.halted else self._watching

    async def sweep(self, summary: PassSummary | None = None) -> int:
        """Poll each unwatched task whose turn it is; keep the images of those done. The
        number kept."""
        if self.halted is not None:
            return 0
        try:
            tasks = [t for t in self.store.unwatched() if t.local_id not in self._settled]
        except StoreUnavailable as exc:
            self._warn(_("cannot look for other machines' frames: {reason}").format(reason=exc))
            return 0
        self._watching = len(tasks)
        done = 0
        for task in tasks:
            if self.halted is not None:
                break
            if self._due.get(task.local_id, 0.0) > self.clock():
                continue
            self._due[task.local_id] = self.clock() + self.every
            try:
                done += await self._look(task)
            except (StaleRecord, StoreUnavailable) as exc:  # moved on by its machine: fine
                self._warn(f"{frame_name(task)}: {exc}")
        self.kept += done
        if summary is not None:
            summary.kept += done
        return done

    async def _look(self, task: TaskRecord) -> int:
        with self.store.hold(task) as held:
            if not held:
                return 0
            current = self.store.reload(task)
            if (
                current is None
                or current.status not in IN_FLIGHT
                or not current.task_id
                or current.kept
                or self.store.may_work(current)
            ):
                self._settle(task)
                return 0
            await self._pace()
            try:
                result = await self.checker.client.get_result(current.req_key, current.task_id)
            except AsyncImgError as exc:
                if decide.is_poll_setup_problem(exc):
                    self._halt(exc)
                elif decide.after_error(exc).fails:  # failed: its machine will say why
                    self._settle(current)
                return 0  # an outage or a limit: next time
            if result.error() is not None:  # gone, or done without an image: its machine's
                self._settle(current)
                return 0
            if result.status is not TaskStatus.DONE:
                return 0  # still running
            try:
                kept = await self._keep(current, result)
            except AsyncImgError as exc:
                if isinstance(exc, ConfigError) or decide.is_setup_problem(exc):
                    self._halt(exc)
                else:
                    self._warn(
                        _("{name}: not kept in storage — {reason}").format(
                            name=frame_name(current), reason=exc
                        )
                    )
                return 0
            saved = transition(current, current.status, now=self.clock(), kept=kept)
            self.store.save(saved)
            self._settle(current)
            machine = machine_of(saved) or "?"
            text = _("{name}: finished while {machine} is away; kept in storage for it")
            self.checker.tell(
                Event(
                    "kept",
                    text.format(name=frame_name(saved), machine=machine),
                    saved,
                    fields=(("machine", machine), ("keys", [k.key for k in kept])),
                )
            )
            return 1

    async def _keep(self, record: TaskRecord, result: Result) -> list[KeptImage]:
        """The task's images, downloaded and checked, put in the bucket."""
        blobs = await fetch_images(self.checker.client, result)
        bound = max_pixels_for(record.req_key)
        kept: list[KeptImage] = []
        for blob in blobs:
            await asyncio.to_thread(verify_image, blob, bound)
            kept.append(await asyncio.to_thread(self.frames.keep, blob))
        return kept

    async def _pace(self) -> None:
        gate = self.checker.gate
        if gate is not None:
            await gate.pace("poll", self.poll_rate)

    def _settle(self, task: TaskRecord) -> None:
        self._settled.add(task.local_id)
        self._due.pop(task.local_id, None)

    def _halt(self, error: AsyncImgError) -> None:
        self.halted = str(error)
        self._warn(_("not keeping other machines' frames: {reason}").format(reason=error))

    def _warn(self, text: str) -> None:
        self.checker.tell(Event("warning", text))

    # -- beside a monitor -----------------------------------------------------------------

    async def watch(self, finished: asyncio.Event) -> None:
        """Sweep every few seconds; return once `finished` is set and nothing is watched
        (or at a setup problem)."""
        pause = max(1.0, min(self.every, 5.0))
        said = False
        while True:
            await self.sweep()
            if self.halted is not None or (finished.is_set() and not self.watching):
                return
            if not finished.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), pause)
                continue
            if not said:
                said = True
                text = _(
                    "waiting for {n} frames of other machines to finish, to keep them in "
                    "storage (Ctrl+C stops; nothing is lost)"
                )
                self.checker.tell(Event("kept", text.format(n=self.watching)))
            await asyncio.sleep(pause)

    async def beside(
        self, run: Coroutine[Any, Any, MonitorOutcome], *, until_done: bool
    ) -> MonitorOutcome:
        """Run a monitor (`run`) with this keeper beside it. With `until_done` the monitor
        ends once its own frames are done *and* no other machine's frame is left to keep
        (Ctrl+C stops that wait like any other)."""
        finished = asyncio.Event()
        watching = asyncio.create_task(self.watch(finished))
        try:
            outcome = await run
            last = outcome.last
            if outcome.interrupted or not until_done or (last is not None and last.halted):
                return self._counted(outcome)
            finished.set()
            with StopOnSignals() as stop:
                await watching
            outcome.interrupted = stop.interrupted
            return self._counted(outcome)
        finally:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching

    def _counted(self, outcome: MonitorOutcome) -> MonitorOutcome:
        if outcome.last is not None:
            outcome.last.kept += self.kept
        return outcome


__all__ = ["FrameKeeper"]
