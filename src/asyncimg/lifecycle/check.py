"""One check pass: submit what is queued, poll what is in flight, download what is done."""

from __future__ import annotations

import asyncio
import shlex
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from asyncimg import constants
from asyncimg.fileio import finish_in_thread
from asyncimg.i18n import _
from asyncimg.lifecycle import decide
from asyncimg.lifecycle.download import (
    ImageCheckFailed,
    fetch_images,
    remove_output_leftovers,
    result_path,
    saver,
)
from asyncimg.lifecycle.events import Event, frame_name, stuck_reason
from asyncimg.lifecycle.explain import reason
from asyncimg.lifecycle.kept import FrameBucket
from asyncimg.lifecycle.ref_upload import ReferenceSender
from asyncimg.lifecycle.refmode import with_url_advice
from asyncimg.lifecycle.shared import Gate
from asyncimg.lifecycle.submit import BatchOutcome, RecordNotSaved, submit_records
from asyncimg.protocol.client import Result, VisualClient
from asyncimg.protocol.errors import AsyncImgError, ConfigError, TaskGone
from asyncimg.store.base import Store
from asyncimg.store.open import describe
from asyncimg.store.record import ErrorInfo, KeptImage, ResultFile, TaskRecord
from asyncimg.store.states import IN_FLIGHT, UNFINISHED, TaskState, complete, transition
from asyncimg.store.store import ScanReport

if TYPE_CHECKING:
    from asyncimg.lifecycle.keeper import FrameKeeper

Clock = Callable[[], float]
Reporter = Callable[[str], None]
EventSink = Callable[[Event], None]


@dataclass
class PassSummary:
    """What one pass did, for the one-line report and for tests."""

    submitted: int = 0
    queued: int = 0
    polled: int = 0
    completed: int = 0
    failed: int = 0
    unconfirmed: int = 0  # submits whose answer was lost this pass
    transient_errors: int = 0
    skipped_locked: int = 0
    halted: str | None = None  # a setup problem (credentials, clock) stopped the pass
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    waiting: int = 0
    """Unconfirmed records whose automatic resubmits are spent: only the user can move them."""
    stuck: str | None = None
    """Why frames are not moving right now (the API unreachable, a limit, server errors);
    cleared when a submit or poll goes through."""
    kept: int = 0
    """Other machines' finished frames this process kept in storage for them."""

    @property
    def unfinished(self) -> int:
        """Records a later pass can still move on its own."""
        return sum(self.counts.get(s.value, 0) for s in UNFINISHED) - self.waiting

    @property
    def failed_total(self) -> int:
        return self.counts.get(TaskState.FAILED.value, 0)

    @property
    def exit_code(self) -> int:
        """2 a setup problem stopped the pass; 1 frames failed or wait for the user; else 0."""
        if self.halted:
            return 2
        return 1 if self.failed_total or self.waiting else 0

    def line(self) -> str:
        states = ", ".join(f"{n} {_(s)}" for s, n in self.counts.items() if n) or _("no tasks")
        extra = []
        if self.submitted:
            extra.append(_("{n} newly submitted").format(n=self.submitted))
        if self.waiting:
            extra.append(_("{n} unconfirmed waiting for you (see below)").format(n=self.waiting))
        if self.transient_errors:
            extra.append(
                _("{n} temporary errors (retried next pass)").format(n=self.transient_errors)
            )
        if self.problems:
            extra.append(_("{n} unreadable records set aside").format(n=len(self.problems)))
        if self.kept:
            extra.append(_("{n} kept in storage for other machines").format(n=self.kept))
        if self.stuck and not self.halted:
            extra.append(_("waiting: {reason}").format(reason=self.stuck))
        if self.halted:
            extra.append(_("pass stopped early: {reason}").format(reason=self.halted))
        return states + (f" — {'; '.join(extra)}" if extra else "")


class Checker:
    """Runs check passes over one tasks directory with one client (one HTTP session)."""

    def __init__(
        self,
        store: Store,
        client: VisualClient,
        *,
        clock: Clock = time.time,
        poll_concurrency: int = constants.DEFAULT_POLL_CONCURRENCY,
        max_in_flight: int | None = None,
        unconfirmed_budget: int = constants.DEFAULT_MAX_UNCONFIRMED_RESUBMITS,
        report: Reporter | None = None,
        on_event: EventSink | None = None,
        references: ReferenceSender | None = None,
        gate: Gate | None = None,
        frames: FrameBucket | None = None,
        keeper: FrameKeeper | None = None,
    ) -> None:
        self.store = store
        self.references = references
        self.gate = gate
        """A shared store's queue and cap: a pass then submits through its claims."""
        self.frames = frames
        """Where finished images are kept (`[storage]`), and written back from when the
        service no longer has them; None: nothing is kept."""
        self.keeper = keeper
        """On a shared store: keeps other machines' finished frames nobody polls."""
        self._keep_refused = False  # the bucket refused a keep for every frame: said once
        self.client = client
        self.clock = clock
        self.poll_concurrency = max(1, poll_concurrency)
        self.max_in_flight = max_in_flight
        self.unconfirmed_budget = unconfirmed_budget
        self.report: Reporter = report or (lambda _line: None)
        self.on_event: EventSink = on_event or (lambda _event: None)
        self._said_stuck: str | None = None

    def tell(self, event: Event) -> None:
        """Say `event`: its line to `report`, the event itself to `on_event`."""
        self.report(event.text)
        self.on_event(event)

    def _stuck(self, summary: PassSummary, error: AsyncImgError | None) -> None:
        """Note why frames wait (said once, when the reason first shows), or that they move."""
        reason = stuck_reason(error) if error is not None else None
        if error is None or reason is None:
            if error is None:
                summary.stuck = None
            return
        summary.stuck = reason
        if reason != self._said_stuck:  # a flapping connection is not said again and again
            self._said_stuck = reason
            self.tell(Event("stuck", reason, error=error))

    async def run_pass(self) -> PassSummary:
        summary = PassSummary()
        records = self._load(summary).records  # the unfinished ones: all a pass acts on
        remove_output_leftovers(records)

        flying = decide.in_flight(records)
        budget = decide.submit_budget(len(flying), self.max_in_flight)
        queue = decide.submit_queue(records, self.unconfirmed_budget)
        if budget is not None:
            queue = queue[:budget]
        if queue and self.gate is not None:
            await self._submit_shared(len(queue), summary)
        elif queue:
            await self.submit(queue, summary)

        semaphore = asyncio.Semaphore(self.poll_concurrency)

        async def guarded(record: TaskRecord) -> None:
            async with semaphore:
                if summary.halted is None:
                    await self._check_one(record, summary)

        await asyncio.gather(*(guarded(r) for r in flying))
        if self.keeper is not None and summary.halted is None:
            await self.keeper.sweep(summary)

        final = self._load(summary)  # the folder as the pass leaves it, other processes included
        counts = Counter(t.status for t in final.tasks)
        for state in TaskState:
            summary.counts[state.value] = counts[state]
        summary.queued = summary.counts.get(TaskState.PENDING.value, 0)
        summary.waiting = sum(
            decide.waits_for_user(r, self.unconfirmed_budget) for r in final.records
        )
        return summary

    async def submit(self, queue: list[TaskRecord], summary: PassSummary) -> BatchOutcome | None:
        """Send the queue one at a time: it drains strictly oldest-first as capacity frees.

        None: a record could not be written after the API accepted its task (the pass is
        halted with the task id and the command that adopts it).
        """
        try:
            batch = await submit_records(
                self.client,
                self.store,
                queue,
                clock=self.clock,
                parallel=1,
                unconfirmed_budget=self.unconfirmed_budget,
                references=self.references,
            )
        except RecordNotSaved as exc:
            self._halt(summary, exc)
            return None
        if batch.halted is not None:
            self._halt(summary, batch.halted)
        for outcome in batch.outcomes:
            record = outcome.record
            name = frame_name(record)
            if outcome.warning:
                self.tell(Event("warning", f"{name}: {outcome.warning}", record))
            if outcome.accepted:
                summary.submitted += 1
                self._stuck(summary, None)
                text = _("{name}: submitted as {task_id}").format(name=name, task_id=record.task_id)
                self.tell(Event("submitted", text, record))
            elif outcome.unconfirmed and outcome.error is not None:
                summary.unconfirmed += 1
                self.tell(
                    Event(
                        "unconfirmed",
                        _("{name}: unconfirmed — {error}; it may exist and be billed").format(
                            name=name, error=outcome.error
                        ),
                        record,
                        outcome.error,
                    )
                )
            elif outcome.rejected and outcome.error is not None:
                summary.failed += 1
                text = _("{name}: failed — {reason}").format(
                    name=name, reason=reason(outcome.error)
                )
                self.tell(Event("failed", text, record, outcome.error))
            elif outcome.queued and outcome.error is not None:
                self._stuck(summary, outcome.error)
        return batch

    async def _submit_shared(self, most: int, summary: PassSummary) -> None:
        """On a shared store: frames in the account's queue order while its shared cap has
        room (another monitor's or this machine's frames alike)."""
        assert self.gate is not None
        limit = int(self.gate.learned().get("limit") or 1)
        for _i in range(most):
            claimed = self.gate.claim(limit, self.unconfirmed_budget)
            if claimed is None:
                return
            batch = await self.submit([claimed], summary)
            if batch is None or batch.halted is not None:
                return
            error = batch.outcomes[0].error
            if error is not None and decide.stop_submitting(error):
                return

    def _load(self, summary: PassSummary) -> ScanReport:
        """Every task (unfinished ones in full, finished ones from the store's index); each
        record set aside is reported once, in one line."""
        scanned = self.store.scan()
        for problem in scanned.problems:
            summary.problems.append(str(problem))
            self.tell(Event("warning", str(problem)))
        return scanned

    async def _check_one(self, record: TaskRecord, summary: PassSummary) -> None:
        await self.check_task(record, summary)

    async def check_task(
        self,
        record: TaskRecord,
        summary: PassSummary,
        on_done: Callable[[], None] | None = None,
    ) -> TaskRecord | None:
        """Poll one in-flight task and act on the answer; the record as this left it.

        None: busy in another process (or gone); the caller tries again later. `on_done` is
        called as soon as the service says the task is done, before the download: its slot
        on the account is free from then on.
        """
        with self.store.lock(record) as held:
            if not held:
                summary.skipped_locked += 1
                return None
            current = self.store.reload(record)
            if current is None or current.status not in IN_FLIGHT or not current.task_id:
                return current
            summary.polled += 1
            try:
                result = await self.client.get_result(current.req_key, current.task_id)
            except AsyncImgError as exc:
                exc = with_url_advice(exc, current.req_key, current.references_sent)
                self._stuck(summary, exc)
                return await self._apply(current, decide.after_error(exc), summary)
            self._stuck(summary, None)
            decision = decide.after_poll(result)
            if isinstance(decision.error, TaskGone) and current.kept:
                return await self._from_storage(current, summary, decision.error)
            if decision.download:
                if on_done is not None:
                    on_done()
                return await self._download(current, result, summary)
            return await self._apply(current, decision, summary)

    def _halt(self, summary: PassSummary, error: AsyncImgError) -> None:
        """Every other task would hit the same wall: stop polling, say it once."""
        if summary.halted is None:
            summary.halted = decide.failure_reason(error)
            text = _("stopping this pass: {reason}").format(reason=reason(error))
            self.tell(Event("halted", text, error=error))

    async def _download(
        self, record: TaskRecord, result: Result, summary: PassSummary
    ) -> TaskRecord:
        try:
            blobs, files = await self._fetch_and_save(record, result)
        except AsyncImgError as exc:
            if isinstance(exc, TaskGone) and record.kept:
                return await self._from_storage(record, summary, exc)
            now = self.clock()
            failures, since = record.download_failures, record.corrupt_since
            if isinstance(exc, ImageCheckFailed):
                failures += 1
                since = now if since is None else since
            decision = decide.after_download_error(
                exc, failures, since, now, retry=self._retry_command(record)
            )
            return await self._apply(
                record, decision, summary, download_failures=failures, corrupt_since=since
            )
        kept = record.kept or await self._keep(record, blobs)
        return await self._completed(record, files, kept, summary)

    async def _completed(
        self,
        record: TaskRecord,
        files: list[ResultFile],
        kept: list[KeptImage],
        summary: PassSummary,
        source: str = "",
    ) -> TaskRecord:
        now = self.clock()
        done = complete(record, now=now, results=files, kept=kept)
        await self.store.save_async(done)
        summary.completed += 1
        text = _("{name}: completed → {output}").format(
            name=frame_name(done), output=done.output_path
        )
        self.tell(Event("completed", text + source, done))
        return done

    async def _keep(self, record: TaskRecord, blobs: list[bytes]) -> list[KeptImage]:
        """Keep a downloaded task's images in storage too (when configured). A bucket that
        refuses is said, and the frame completes without: its image is on disk already."""
        frames = self.frames
        if frames is None or not frames.keeps or self._keep_refused:
            return []
        try:
            return [await asyncio.to_thread(frames.keep, blob) for blob in blobs]
        except AsyncImgError as exc:
            if isinstance(exc, ConfigError):  # keys or bucket: the same for every frame
                if self._keep_refused:
                    return []  # a concurrent download said it already
                self._keep_refused = True
                text = _("not keeping finished images in storage: {reason}").format(reason=exc)
            else:
                text = _("{name}: not kept in storage — {reason}").format(
                    name=frame_name(record), reason=exc
                )
            self.tell(Event("warning", text, record, exc))
            return []

    async def _from_storage(
        self, record: TaskRecord, summary: PassSummary, gone: AsyncImgError
    ) -> TaskRecord:
        """The service no longer has the result (`gone`), but its images were kept: write
        them from the bucket. A bucket that cannot be read leaves the task for the next
        pass (a setup problem stops it); a kept copy that is gone fails the task, and so
        does a machine without `[storage]` (saying `asyncimg pull` writes it)."""
        frames = self.frames
        if frames is None:  # kept by a machine that has [storage]; this one has not
            lost = TaskGone(
                f"{gone.message}; its image is kept in storage ({record.kept[0].key}): set "
                "[storage] here and run asyncimg pull",
                code=gone.code,
                request_id=gone.request_id,
            )
            lost.hint = ""
            return await self._apply(record, decide.Decision(TaskState.FAILED, error=lost), summary)
        try:
            blobs = [await asyncio.to_thread(frames.fetch, kept) for kept in record.kept]
            files = await self._save_all(record, blobs)
        except AsyncImgError as exc:
            return await self._apply(record, decide.after_error(exc), summary)
        return await self._completed(record, files, record.kept, summary, _(" (from storage)"))

    def _retry_command(self, record: TaskRecord) -> str:
        """The command that resubmits `record` (a new, billed task)."""
        key = shlex.quote(record.task_id or record.local_id)
        option, _sep, where = describe(self.store).partition(" ")
        return f"asyncimg retry {key} {option} {shlex.quote(where)}"

    async def _fetch_and_save(
        self, record: TaskRecord, result: Result
    ) -> tuple[list[bytes], list[ResultFile]]:
        blobs = await fetch_images(self.client, result)
        return blobs, await self._save_all(record, blobs)

    async def _save_all(self, record: TaskRecord, blobs: list[bytes]) -> list[ResultFile]:
        """Write a task's images to its output path(s), checked, one at a time."""
        files: list[ResultFile] = []
        save = await asyncio.to_thread(saver, record)  # hashes the references
        for i, blob in enumerate(blobs):
            target = result_path(record.resolve(record.output_path), i)
            files.append(await finish_in_thread(save, blob, target))
        return files

    async def _apply(
        self,
        record: TaskRecord,
        decision: decide.Decision,
        summary: PassSummary,
        **changes: object,
    ) -> TaskRecord:
        """Write what a decision means for `record`: its state, error and stall count."""
        now = self.clock()
        if decision.halt and decision.error is not None:
            self._halt(summary, decision.error)
            return record  # a setup problem is nobody's fault: the record is left as it was
        if decision.stalled:
            passes = record.stalled_passes + 1
            since = record.stalled_since if record.stalled_since is not None else now
            decision = decide.after_stall(decision, passes, since, now)
            changes.update(stalled_passes=passes, stalled_since=since)
        elif record.stalled_passes and decision.error is None:
            changes.update(stalled_passes=0, stalled_since=None)  # progress
        target = decision.state or record.status
        if decision.error is not None:
            changes["last_error"] = ErrorInfo.from_exception(decision.error, now)
            if not decision.fails:
                summary.transient_errors += 1
        elif target is not record.status and record.last_error is not None:
            changes["last_error"] = None
        if target is record.status and all(getattr(record, k) == v for k, v in changes.items()):
            return record
        updated = transition(record, target, now=now, **changes)
        await self.store.save_async(updated)
        if decision.fails and decision.error is not None:
            summary.failed += 1
            text = _("{name}: failed — {reason}").format(
                name=frame_name(updated), reason=reason(decision.error)
            )
            self.tell(Event("failed", text, updated, decision.error))
        return updated
