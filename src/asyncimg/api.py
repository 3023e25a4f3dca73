"""The library API: what `gen_image.py`, the CLI and user code call.

Each call opens one client (one HTTP session) for its duration. Credentials and the
endpoint come from the environment (VOLC_ACCESSKEY, VOLC_SECRETKEY, ASYNCIMG_ENDPOINT).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from asyncimg import constants
from asyncimg.gallery.manifest import write_manifest
from asyncimg.gallery.source import Chapter
from asyncimg.i18n import _
from asyncimg.lifecycle.check import Checker, PassSummary
from asyncimg.lifecycle.config import Config, load_config
from asyncimg.lifecycle.decide import is_poll_setup_problem
from asyncimg.lifecycle.explain import message_of, plain
from asyncimg.lifecycle.kept import FrameBucket, open_bucket
from asyncimg.lifecycle.monitor import MonitorOutcome, monitor
from asyncimg.lifecycle.ref_upload import ReferenceSender
from asyncimg.lifecycle.refmode import looks_like_url
from asyncimg.lifecycle.scheduler import Scheduler
from asyncimg.lifecycle.shared import submit_through
from asyncimg.lifecycle.submit import (
    BatchOutcome,
    SubmitOutcome,
    TaskRequest,
    amend_record,
    billing_warnings,
    build_record,
    check_fixes,
    request_fields,
    submit_records,
)
from asyncimg.lifecycle.validate import output_key, path_key
from asyncimg.protocol import models
from asyncimg.protocol.client import TaskStatus, VisualClient
from asyncimg.protocol.errors import AsyncImgError, InvalidInput
from asyncimg.store.base import Store
from asyncimg.store.machine import machine_id
from asyncimg.store.move import MoveReport, move_records, records_to_move
from asyncimg.store.open import describe, open_store, shared_gate, store_location
from asyncimg.store.record import TaskRecord, record_from_json
from asyncimg.store.states import (
    IN_FLIGHT,
    TaskState,
    accept,
    refetch_record,
    retry_record,
    transition,
)

if TYPE_CHECKING:
    from asyncimg.lifecycle.keeper import FrameKeeper

T = TypeVar("T")
ClientFactory = Callable[[], VisualClient]
#: How often a submit waiting for another one's lock on its output files tries again.
OUTPUTS_WAIT_S = 0.2


@dataclass
class Rejected:
    """A request refused before any record could be written (bad style, size, path)."""

    request: TaskRequest
    error: AsyncImgError


class Rerun(StrEnum):
    """What a request does when its output file already has a record."""

    NEW = "new"
    """Submit it as a new record (no record yet, a completed frame whose image is gone, or
    `force`)."""
    SKIP = "skip"
    """Leave it: the frame is queued, in flight, of unknown outcome, or done."""
    REPLACE = "replace"
    """Its record failed: resubmit that record with the new request, keeping the failed
    attempt in its history."""


@dataclass(frozen=True)
class RerunCheck:
    action: Rerun
    previous: TaskRecord | None = None
    reason: str = ""


def rerun_rule(previous: TaskRecord | None, *, image_exists: bool, force: bool) -> RerunCheck:
    """What a request does, given the latest record for its output file (pure).

    Running a batch again must not bill its frames again: only a frame with no record,
    a failed one, or a completed one whose image is missing is submitted. `force` submits
    the others anyway, as a separate record.
    """
    if previous is None:
        return RerunCheck(Rerun.NEW)
    status = previous.status
    if status is TaskState.FAILED:
        return RerunCheck(
            Rerun.REPLACE, previous, _("replaces failed {name}").format(name=_name(previous))
        )
    if status is TaskState.COMPLETED and not image_exists:
        return RerunCheck(
            Rerun.NEW,
            previous,
            _("{name} completed but its image is gone").format(name=_name(previous)),
        )
    if force:
        return RerunCheck(
            Rerun.NEW,
            previous,
            _("--force: {name} is {status}").format(name=_name(previous), status=_(status.value)),
        )
    if status is TaskState.PENDING:
        reason = _("already queued locally (pending; `asyncimg check` submits it)")
    elif status is TaskState.UNCONFIRMED:
        reason = _(
            "already sent, outcome unknown (unconfirmed; the service may have created it, "
            "`asyncimg check` settles it)"
        )
    elif status in IN_FLIGHT:
        reason = _("already submitted as {name}").format(name=_name(previous))
    else:
        reason = _("already done ({name})").format(name=_name(previous))
    return RerunCheck(Rerun.SKIP, previous, reason)


def _name(record: TaskRecord) -> str:
    if record.task_id:
        return _("task {id}").format(id=record.task_id)
    return _("local task {id}").format(id=record.local_id[:8])


class OutputIndex:
    """The records of each output file, as reruns need them: the latest (by created_at)
    decides what a new request does; any live one (see `live`) stops a second payment."""

    def __init__(self, records: Iterable[TaskRecord] = ()) -> None:
        self._latest: dict[str, TaskRecord] = {}
        self._of: dict[str, dict[str, TaskRecord]] = {}  # output key -> local_id -> record
        self._key: dict[str, str] = {}  # local_id -> its output key
        for record in sorted(records, key=lambda r: (r.created_at, r.updated_at)):
            self.add(record)

    def add(self, record: TaskRecord) -> None:
        """`record` as it is now saved (a new one, or a known one moved on or elsewhere)."""
        key = output_key(record)
        before = self._key.get(record.local_id)
        if before is not None:
            self._of[before].pop(record.local_id, None)
        self._key[record.local_id] = key
        self._of.setdefault(key, {})[record.local_id] = record
        self._latest[key] = record

    def check(self, record: TaskRecord, *, force: bool = False) -> RerunCheck:
        """What `record` (a new one, not yet saved) does, given the records already there:
        :func:`rerun_rule` on the latest, but never a second payment while another record
        of the file is live (without `force`)."""
        previous = self._latest.get(output_key(record))
        check = rerun_rule(previous, image_exists=_image_exists(previous), force=force)
        if check.action is Rerun.SKIP or force:
            return check
        live = self.live(record)
        return check if live is None else _doing(live)

    def live(self, record: TaskRecord) -> TaskRecord | None:
        """Another record (not `record` itself) of the same output file whose frame is paid
        for or about to be: queued, in flight, of unknown outcome, or done with its image
        on disk. The check every path that records or revives a frame makes, under the
        store's `outputs_lock`, before it writes (so the frame is paid for at most once)."""
        for other in sorted(
            self._of.get(output_key(record), {}).values(),
            key=lambda r: (r.created_at, r.updated_at),
            reverse=True,
        ):
            if other.local_id == record.local_id:
                continue
            skip = rerun_rule(other, image_exists=_image_exists(other), force=False)
            if skip.action is Rerun.SKIP:
                return other
        return None


def _doing(live: TaskRecord) -> RerunCheck:
    """What a live record (`OutputIndex.live`) is doing, as a skipped submit says it."""
    return rerun_rule(live, image_exists=True, force=False)


def _image_exists(record: TaskRecord | None) -> bool:
    """Whether a completed record's image is on disk (False for any other record)."""
    if record is None or record.status is not TaskState.COMPLETED:
        return False
    return record.resolve(record.output_path).is_file()


@contextlib.asynccontextmanager
async def outputs_held(
    store: Store, keys: Collection[str], on_wait: Callable[[str], None] | None = None
) -> AsyncIterator[None]:
    """Hold the store's lock on these output files, waiting while another process holds
    it (a second submit of the same batch, a `retry --output`, `adopt` or `migrate` to
    the same folder); `on_wait` hears it once. Every path that records or revives a frame
    makes its check (`OutputIndex`) and its first save under it."""
    told = False
    while True:
        with store.outputs_lock(keys) as held:
            if held:
                yield
                return
        if not told and on_wait is not None:
            on_wait(
                _(
                    "waiting: another asyncimg is recording frames for the same output "
                    "folder; these are checked against its records once it is done"
                )
            )
        told = True
        await asyncio.sleep(OUTPUTS_WAIT_S)


def read_records(root: Path) -> list[TaskRecord]:
    """The readable records in a tasks folder, read only: nothing is created, moved or
    removed (for `submit --dry-run`; everything else uses TaskStore.load_all)."""
    if not root.is_dir():
        return []
    records: list[TaskRecord] = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or path.suffix not in (".json", ".txt"):
            continue
        try:
            records.append(record_from_json(path.read_bytes(), root))
        except (OSError, ValueError, RecursionError):
            continue
    return records


@dataclass(frozen=True)
class Skipped:
    """A request left alone because its output already has a record (see rerun_rule)."""

    request: TaskRequest
    previous: TaskRecord
    reason: str

    def line(self, hint: str = "") -> str:
        return _("{output}: skipped — {reason}").format(
            output=self.request.output_path, reason=f"{self.reason}{hint}"
        )


@dataclass
class SubmitReport:
    batch: BatchOutcome = field(default_factory=BatchOutcome)
    invalid: list[Rejected] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    replaced: dict[str, str] = field(default_factory=dict)
    """local_id → the failed task its record replaced ("task 123")."""

    @property
    def submitted(self) -> int:
        return self.batch.submitted

    @property
    def queued(self) -> int:
        return self.batch.queued

    @property
    def unconfirmed(self) -> int:
        return self.batch.unconfirmed

    @property
    def rejected(self) -> int:
        return self.batch.rejected + len(self.invalid)

    @property
    def exit_code(self) -> int:
        """2 a setup problem stopped it; 1 frames were rejected; else 0 (accepted, queued or
        unconfirmed frames are all durably recorded and handled by `check` / `monitor`)."""
        if self.batch.halted is not None:
            return 2
        return 1 if self.rejected else 0

    def reasons(self) -> list[str]:
        lines = [f"{r.request.output_path}: {r.error}" for r in self.invalid]
        for o in self.batch.outcomes:
            if o.rejected and o.error is not None:
                lines.append(f"{o.record.output_path}: {o.error}")
        return lines


class Refused(AsyncImgError):
    """The request is understood, but the folder or the API says no (a task that is not
    failed, a task id already in the folder, a task the API no longer knows)."""


class RetryInvalid(AsyncImgError):
    """`retry` found tasks it cannot send as amended; nothing was saved or sent.

    `problems` has one line per problem, each naming the task, its output and the field.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(_("nothing was retried: {problems}").format(problems="; ".join(problems)))


@dataclass
class RetryReport(SubmitReport):
    refetched: list[TaskRecord] = field(default_factory=list)
    """Failed tasks put back in flight under their own task id (no new submission, no new
    bill): the next `check` / `monitor` polls and downloads them."""
    moved_on: list[TaskRecord] = field(default_factory=list)
    """Moved on by another process between reading and locking (as found then)."""
    taken: list[Taken] = field(default_factory=list)
    """Not resubmitted: another record of the same output file is live."""


@dataclass(frozen=True)
class Taken:
    """A task `retry` left alone because another record of its output file is live (a
    second submission would pay for the frame twice)."""

    record: TaskRecord
    """The task as found (unchanged)."""
    output_path: str
    """Where it would have been saved (its new output, if one was given)."""
    other: TaskRecord
    reason: str
    """What the other record is doing, as a skipped submit says it ("already queued…")."""

    def line(self) -> str:
        return _("{name}: skipped — {output} has another record, {reason}").format(
            name=_name(self.record), output=self.output_path, reason=self.reason
        )


@dataclass
class CleanReport:
    completed: int = 0
    failed: int = 0


@dataclass
class AdoptReport:
    record: TaskRecord
    """The record that now holds the task id (saved, `submitted`)."""
    status: TaskStatus
    """What the API said about the task when it was polled."""
    took_over: TaskState | None = None
    """The state of the existing record that took the id (unconfirmed / pending), or None
    when a new record was created."""
    warnings: list[str] = field(default_factory=list)


# Failures after which the service may still hold a finished task's result: `retry`
# polls the same task id again (no new submission) while the service keeps results.
REFETCHABLE_KINDS = frozenset({"SaveFailed", "NoProgress"})

# The prompt of a record created by `adopt` for a task submitted elsewhere: asyncimg never
# saw the request. `retry` refuses to resubmit it without `--prompt`.
ADOPTED_PROMPT = "(unknown: task adopted with asyncimg adopt)"

_RETRYABLE = frozenset({TaskState.FAILED, TaskState.UNCONFIRMED})
# Records `adopt` may give a task id to: waiting for an answer that never came.
_ADOPTABLE = frozenset({TaskState.UNCONFIRMED, TaskState.PENDING})
# Bytes a numbered extra image adds to a file name ("<stem>_15<ext>"); the temp file an
# image is written through has a short name of its own (asyncimg.fileio.temp_name).
_EXTRA_NAME_BYTES = len("_15")


def can_refetch(record: TaskRecord, now: float) -> bool:
    """Whether `retry` fetches this failed task again instead of resubmitting it: it has a
    task id, failed on our side (the image could not be saved, polls made no progress),
    and was accepted less than RESULT_RETENTION_S ago."""
    return (
        record.status is TaskState.FAILED
        and record.task_id is not None
        and record.last_error is not None
        and record.last_error.kind in REFETCHABLE_KINDS
        and record.submit_time is not None
        and now - record.submit_time < constants.RESULT_RETENTION_S
    )


def output_problem(path: Path) -> str | None:
    """Why an image could not be written at `path` (resolved), or None."""
    if path.is_dir():
        return _("is a folder")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return _("{path} is a file, so the folder cannot be created").format(path=ancestor)
    try:
        name_max = os.pathconf(ancestor, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    size = len(os.fsencode(path.name))
    if size + _EXTRA_NAME_BYTES > name_max:
        fits = name_max - _EXTRA_NAME_BYTES
        return _("the file name is too long ({size} bytes; at most {fits} fit)").format(
            size=size, fits=fits
        )
    return None


def typed_here(record: TaskRecord, path: str) -> str:
    """`path`, typed now in this folder, as `record` must store it so `record.resolve` finds
    it: as typed when it is absolute or the record's folder is this one, else absolute."""
    if looks_like_url(path):
        return path  # a reference URL is no path
    given = Path(path).expanduser()
    if given.is_absolute() or record.working_dir is None:
        return path
    if _same_path(Path(record.working_dir), Path.cwd()):
        return path
    return str(Path.cwd() / given)


def _same_path(a: Path, b: Path) -> bool:
    return a.absolute().resolve() == b.absolute().resolve()


def _task_name(record: TaskRecord) -> str:
    return record.task_id or record.local_id[:8]


@dataclass(frozen=True)
class _Fixes:
    prompt: str | None = None
    style: str | None = None
    size: str | None = None
    req_key: str | None = None
    characters: tuple[str, ...] | None = None
    output: str | None = None

    @property
    def change_the_request(self) -> bool:
        """A changed request needs a new task: a fetched result would ignore the change."""
        fixes = (self.prompt, self.style, self.size, self.req_key, self.characters)
        return any(f is not None for f in fixes)


@dataclass(frozen=True)
class _Plan:
    """What `retry` will save for one task, decided (and checked) before anything is saved."""

    original: TaskRecord
    updated: TaskRecord
    refetch: bool


@dataclass
class Workspace:
    """A tasks directory with its config, and how to make a client for it."""

    store: Store
    config: Config
    client_factory: ClientFactory
    clock: Callable[[], float] = time.time
    _references: ReferenceSender | None = field(default=None, init=False, repr=False)
    _frames: FrameBucket | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(
        cls,
        tasks_dir: str | Path | None = None,
        *,
        config_path: str | Path | None = None,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
    ) -> Workspace:
        """``read_only``: for commands that only look (``list``, ``show``): the store never
        creates, moves or writes a file (see :class:`TaskStore`)."""
        config = load_config(config_path)
        location = store_location(tasks_dir, config.defaults.tasks_dir)
        if client_factory is None:
            defaults = config.defaults

            def client_factory() -> VisualClient:
                return VisualClient.from_env(
                    submit_read_timeout=defaults.submit_timeout,
                    max_reply_bytes=_megabytes(defaults.max_reply_mb),
                    max_image_bytes=_megabytes(defaults.max_image_mb),
                )

        return cls(open_store(location, read_only=read_only), config, client_factory, clock)

    @property
    def unconfirmed_budget(self) -> int:
        return self.config.defaults.max_unconfirmed_resubmits

    @property
    def references(self) -> ReferenceSender:
        """How this folder's frames send reference images (uploads made on first use)."""
        if self._references is None:
            self._references = ReferenceSender.from_config(self.config, lock_dir=self.store.root)
        return self._references

    def _planner(self) -> ReferenceSender:
        """Like `references`, but checks without uploading (for checks before saving)."""
        return ReferenceSender.from_config(self.config, upload=False)

    @property
    def frames(self) -> FrameBucket | None:
        """The bucket finished images are kept in and pulled from (`[storage]`), or None.
        Nothing is contacted until an image is kept or fetched."""
        if self._frames is None:
            machine = getattr(self.store, "machine", None)
            self._frames = open_bucket(
                self.config.storage,
                machine=machine if isinstance(machine, str) else machine_id(),
                clock=self.clock,
            )
        return self._frames

    def checker(self, client: VisualClient, **kwargs: Any) -> Checker:
        kwargs.setdefault("poll_concurrency", self.config.defaults.poll_concurrency)
        kwargs.setdefault("unconfirmed_budget", self.unconfirmed_budget)
        kwargs.setdefault("references", self.references)
        kwargs.setdefault("gate", shared_gate(self.store))
        kwargs.setdefault("frames", self.frames)
        checker = Checker(self.store, client, clock=self.clock, **kwargs)
        if checker.keeper is None:
            checker.keeper = self._keeper(checker)
        return checker

    def _keeper(self, checker: Checker) -> FrameKeeper | None:
        """On a shared store with images kept: what keeps other machines' finished frames
        (see lifecycle/keeper.py); else None."""
        frames = checker.frames
        if frames is None or not frames.keeps:
            return None
        from asyncimg.store.pg.store import PgStore  # psycopg only when a store is shared

        if not isinstance(self.store, PgStore):
            return None
        from asyncimg.lifecycle.keeper import FrameKeeper
        from asyncimg.lifecycle.schedule import DEFAULT_POLL_RATE

        defaults = self.config.defaults
        return FrameKeeper(
            checker,
            self.store,
            frames,
            every=defaults.interval,
            poll_rate=defaults.poll_rate or DEFAULT_POLL_RATE,
        )

    async def submit(
        self,
        requests: Iterable[TaskRequest],
        *,
        force: bool = False,
        on_outcome: Callable[[SubmitOutcome], None] | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> SubmitReport:
        """Record every request (pending), then submit them; see submit_records
        (`on_outcome` hears about each frame as its answer comes).

        A request whose output file already has a record follows :func:`rerun_rule`:
        skipped (reported, not billed), its failed record replaced, or submitted anew.
        The records are read and the new ones saved under the store's lock on these
        output files, so a second submit of the same frames running at the same time
        waits (`on_wait` hears one line saying so) and then finds them recorded.
        """
        report = SubmitReport()
        client = self.client_factory()  # raises ConfigError before anything is written
        built: list[tuple[TaskRequest, TaskRecord]] = []
        for request in requests:
            try:
                built.append((request, build_record(request, self.config, now=self.clock())))
            except AsyncImgError as exc:
                report.invalid.append(Rejected(request, exc))
        keys = {output_key(record) for _, record in built}
        async with outputs_held(self.store, keys, on_wait):
            records = self._record_new(built, report, force=force)
        report.batch = await self._send(client, records, on_outcome)
        return report

    def _record_new(
        self, built: Sequence[tuple[TaskRequest, TaskRecord]], report: SubmitReport, *, force: bool
    ) -> list[TaskRecord]:
        """The rerun check of each new record against the store as it is now, and the
        first save of those to send (the caller holds the lock on their output files)."""
        loaded = self.store.load_all()
        report.warnings.extend(str(p) for p in loaded.problems)
        index = OutputIndex(loaded.records)
        records: list[TaskRecord] = []
        for request, record in built:
            check = index.check(record, force=force)
            if check.action is Rerun.REPLACE and check.previous is not None:
                replaced = self._replace_failed(check.previous, record)
                if isinstance(replaced, str):
                    report.skipped.append(Skipped(request, check.previous, replaced))
                    continue
                report.replaced[replaced.local_id] = _name(check.previous)
                record = replaced
            elif check.action is Rerun.SKIP and check.previous is not None:
                reason = check.reason
                if any(r.local_id == check.previous.local_id for r in records):
                    reason = _("same output as an earlier frame of this submit")
                report.skipped.append(Skipped(request, check.previous, reason))
                continue
            else:
                self.store.save(record)
            report.warnings.extend(billing_warnings(record))
            index.add(record)
            records.append(record)
        return records

    async def _send(
        self,
        client: VisualClient,
        records: Sequence[TaskRecord],
        on_outcome: Callable[[SubmitOutcome], None] | None = None,
    ) -> BatchOutcome:
        """Submit saved records with this folder's unconfirmed budget (see submit_records)."""
        gate = shared_gate(self.store)
        async with client:
            if gate is not None:  # one queue for the account: sent as its shared cap allows
                return await submit_through(
                    gate,
                    client,
                    self.store,
                    records,
                    clock=self.clock,
                    unconfirmed_budget=self.unconfirmed_budget,
                )
            return await submit_records(
                client,
                self.store,
                records,
                clock=self.clock,
                unconfirmed_budget=self.unconfirmed_budget,
                on_outcome=on_outcome,
                references=self.references,
            )

    def _replace_failed(self, failed: TaskRecord, fresh: TaskRecord) -> TaskRecord | str:
        """`failed` sent back to pending as `fresh` asks (its attempt kept in history), saved;
        or why not (another process holds it or has moved it on)."""
        with self.store.lock(failed) as held:
            current = self.store.reload(failed) if held else None
            if current is None:
                return _("its failed {name} is busy in another process; run again").format(
                    name=_name(failed)
                )
            if current.status is not TaskState.FAILED:
                return _("{name} was just moved on by another process ({status})").format(
                    name=_name(current), status=_(current.status.value)
                )
            again = retry_record(
                current,
                now=self.clock(),
                prompt=fresh.prompt,
                full_prompt=fresh.full_prompt,
                style=fresh.style,
                req_key=fresh.req_key,
                params=fresh.params,
                character_images=fresh.character_images,
                output_path=fresh.output_path,
                filename=fresh.filename,
                working_dir=fresh.working_dir,
                frame_id=fresh.frame_id,
                batch_file=fresh.batch_file,
                batch_line=fresh.batch_line,
            )
            self.store.save(again)
            return again

    async def check_once(self, **kwargs: Any) -> PassSummary:
        async with self.client_factory() as client:
            return await self.checker(client, **kwargs).run_pass()

    async def monitor(
        self,
        *,
        interval: float | None = None,
        until_done: bool = True,
        on_pass: Callable[[Any], None] | None = None,
        max_passes: int | None = None,
        **kwargs: Any,
    ) -> MonitorOutcome:
        """Watch the folder until every frame is done (or for ever without `until_done`).

        By default one long-lived scheduler (see `lifecycle/scheduler.py`); with
        `max_passes` (what `check` uses: one), fixed passes `interval` seconds apart.
        `on_pass` gets a PassSummary after each pass, or a SchedulerView as things move.
        """
        every = interval if interval is not None else self.config.defaults.interval
        async with self.client_factory() as client:
            checker = self.checker(client, **kwargs)
            if max_passes is not None:
                return await monitor(
                    checker,
                    interval=every,
                    until_done=until_done,
                    on_pass=on_pass,
                    max_passes=max_passes,
                )
            defaults = self.config.defaults
            scheduler = Scheduler(
                checker,
                interval=every,
                until_done=until_done,
                max_in_flight=defaults.max_in_flight,
                submit_rate=defaults.submit_rate,
                poll_rate=defaults.poll_rate,
                on_progress=on_pass,
                gate=shared_gate(self.store),
            )
            if checker.keeper is None:
                outcome = await scheduler.run()
            else:
                checker.keeper.every = every
                outcome = await checker.keeper.beside(scheduler.run(), until_done=until_done)
        self.refresh_manifest(checker.report)
        return outcome

    def refresh_manifest(self, report: Callable[[str], None] | None = None) -> Path | None:
        """Rewrite `manifest.jsonl` in the tasks folder from the records as they are now
        (what `monitor` does when it ends); a write that fails is reported, not raised.

        A shared store has no folder to keep it in: nothing is written (None), and
        `asyncimg manifest --store URL` writes every machine's frames on demand."""
        chapter = Chapter.of(self.store)
        if chapter.folder is None:
            return None
        path = chapter.manifest_path()
        try:
            write_manifest(chapter.frames_of(read_records(chapter.folder)), path)
        except OSError as exc:
            if report is not None:
                report(
                    _("manifest not written: {path}: {why}").format(
                        path=path, why=exc.strerror or exc
                    )
                )
            return None
        return path

    def clean(
        self,
        *,
        completed: bool = False,
        failed: bool = False,
        older_than: float | None = None,
        archive: str | Path | None = None,
    ) -> CleanReport:
        """Delete (or move to `archive`) completed and/or failed records; images are never
        touched. `older_than` (seconds) keeps records finished more recently than that."""
        states = {TaskState.COMPLETED} if completed else set()
        if failed:
            states.add(TaskState.FAILED)
        cutoff = self.clock() - older_than if older_than is not None else None
        report = CleanReport()
        for record in self.store.load_all().records:
            if record.status not in states:
                continue
            finished = record.completed_time or record.updated_at
            if cutoff is not None and finished > cutoff:
                continue
            with self.store.lock(record) as held:
                # A failed record may be being retried by another process right now.
                current = self.store.reload(record) if held else None
                if current is None or current.status is not record.status:
                    continue
                if archive is not None:
                    self.store.archive(current, Path(archive))
                else:
                    self.store.delete(current)
            if record.status is TaskState.COMPLETED:
                report.completed += 1
            else:
                report.failed += 1
        return report

    def clean_completed(
        self, *, older_than: float | None = None, archive: str | Path | None = None
    ) -> int:
        """Delete (or move to `archive`) completed records; images are never touched."""
        return self.clean(completed=True, older_than=older_than, archive=archive).completed

    def clean_failed(
        self, *, older_than: float | None = None, archive: str | Path | None = None
    ) -> int:
        """Delete (or move to `archive`) failed records; images are never touched."""
        return self.clean(failed=True, older_than=older_than, archive=archive).failed

    async def retry(
        self,
        keys: Sequence[str] = (),
        *,
        all_failed: bool = False,
        all_unconfirmed: bool = False,
        prompt: str | None = None,
        style: str | None = None,
        size: str | None = None,
        req_key: str | None = None,
        characters: Sequence[str] | None = None,
        output: str | None = None,
        on_wait: Callable[[str], None] | None = None,
    ) -> RetryReport:
        """Retry failed (and unconfirmed) tasks; earlier attempts stay in `history`.

        A task that failed only on our side (its image could not be saved, its polls made
        no progress) and was accepted less than ~12 h ago is fetched again under its own
        task id, without a new submission. Every other task is resubmitted, with the same
        parameters unless a fix is given (`size="1440x2560"`, `style`, `req_key`,
        `characters` replacing the references; `prompt` and `output` only for one task);
        any fix to the request means a new submission. Every amended record is built and
        checked first: if any is bad, :class:`RetryInvalid` lists them all and nothing is
        saved. Unconfirmed tasks (the service may already have one) are retried only when
        named or with `all_unconfirmed`: the user chooses to pay again.

        A task whose output file has another live record (queued, in flight, unconfirmed,
        or done with its image there) is not resubmitted (`taken`): checked and saved
        under the store's lock on the output files, as a submit does (`on_wait` hears
        once that another process holds it).
        """
        client = self.client_factory()  # raises ConfigError before anything is written
        targets = self._retry_targets(keys, all_failed, all_unconfirmed)
        several = all_failed or all_unconfirmed or len(targets) > 1
        if several and prompt is not None:
            raise InvalidInput(
                "prompt",
                prompt,
                _("a new prompt is for one frame: name a single task to change it"),
            )
        if several and output is not None:
            raise InvalidInput(
                "output", output, _("a new output path is for one frame: name a single task")
            )
        check_fixes(self.config, style=style, size=size, req_key=req_key)  # before any write
        fixes = _Fixes(
            prompt=prompt,
            style=style,
            size=size,
            req_key=req_key,
            characters=tuple(characters) if characters is not None else None,
            output=output,
        )
        now = self.clock()
        plans: list[_Plan] = []
        problems: list[str] = []
        for record in targets:
            try:
                plans.append(self._retry_plan(record, fixes, now))
            except AsyncImgError as exc:
                problems.append(f"{_task_name(record)} ({record.output_path}): {_plain(exc)}")
        for plan in plans:
            problems.extend(await asyncio.to_thread(_retry_problems, plan, self._planner()))
        if problems:
            raise RetryInvalid(problems)

        report = RetryReport()
        queued: list[TaskRecord] = []
        # Like a submit: the check "has this output file a live record already?" and the
        # save under the lock on the output files, so a submit, `adopt` or another retry
        # of the same file at the same time never also finds it free.
        outputs = {output_key(plan.updated) for plan in plans}
        async with outputs_held(self.store, outputs, on_wait):
            index = OutputIndex(self.store.load_all().records)
            for plan in plans:
                with self.store.lock(plan.original) as held:
                    # Another retry or checker may have moved it since it was read: re-read
                    # under the lock, or two retries would each submit (and bill) the frame.
                    current = self.store.reload(plan.original) if held else None
                    if (
                        current is None
                        or current.status is not plan.original.status
                        or current.updated_at != plan.original.updated_at
                    ):
                        report.moved_on.append(current or plan.original)
                        continue
                    # A refetch pays nothing (the same task): only a resubmission waits.
                    live = None if plan.refetch else index.live(plan.updated)
                    if live is not None:
                        reason = _doing(live).reason
                        report.taken.append(Taken(current, plan.updated.output_path, live, reason))
                        continue
                    self.store.save(plan.updated)
                index.add(plan.updated)
                if plan.refetch:
                    report.refetched.append(plan.updated)
                else:
                    queued.append(plan.updated)
        if queued:
            report.batch = await self._send(client, queued)
        return report

    def _retry_targets(
        self, keys: Sequence[str], all_failed: bool, all_unconfirmed: bool
    ) -> list[TaskRecord]:
        """The records named by `keys` (failed or unconfirmed, else refused) and every failed
        / unconfirmed one asked for, oldest first, each once."""
        wanted = {TaskState.FAILED} if all_failed else set()
        if all_unconfirmed:
            wanted.add(TaskState.UNCONFIRMED)
        targets: list[TaskRecord] = []
        if wanted:
            found = [r for r in self.store.load_all().records if r.status in wanted]
            targets = sorted(found, key=lambda r: (r.created_at, r.local_id))
        for key in keys:
            record = self.store.get(key)
            if record.status not in _RETRYABLE:
                raise Refused(
                    _(
                        "task {key} is {status}; only failed tasks can be retried, "
                        "or unconfirmed ones (to pay for them again)"
                    ).format(key=key, status=_(record.status.value))
                )
            targets.append(record)
        return list({r.local_id: r for r in targets}.values())

    def _retry_plan(self, record: TaskRecord, fixes: _Fixes, now: float) -> _Plan:
        moved: dict[str, Any] = {}
        if fixes.output is not None:
            path = typed_here(record, fixes.output)
            moved = {"output_path": path, "filename": Path(path).name}
        if not fixes.change_the_request and can_refetch(record, now):
            again = refetch_record(record, now=now, output_path=moved.get("output_path"))
            return _Plan(record, again, refetch=True)
        if record.prompt == ADOPTED_PROMPT and fixes.prompt is None:
            raise InvalidInput(
                "prompt",
                record.prompt,
                _("asyncimg never saw this adopted task's prompt; give it with --prompt"),
            )
        characters = fixes.characters
        if characters is not None:
            characters = tuple(typed_here(record, p) for p in characters)
        again = retry_record(record, now=now, **moved)
        again = amend_record(
            again,
            self.config,
            now=now,
            prompt=fixes.prompt,
            style=fixes.style,
            size=fixes.size,
            req_key=fixes.req_key,
            character_images=characters,
        )
        return _Plan(record, again, refetch=False)

    async def adopt(
        self,
        task_id: str,
        output_path: str,
        req_key: str | None = None,
        *,
        on_wait: Callable[[str], None] | None = None,
    ) -> AdoptReport:
        """Attach a task the API already has (a lost reply, a record that could not be
        written, the guide's scripts, a task submitted by hand) to this folder.

        The task is polled once first: :class:`Refused` if the folder already has it or the
        API no longer knows it. An unconfirmed or pending record for the same output file
        takes the id; otherwise a new record is created (its prompt is unknown:
        :data:`ADOPTED_PROMPT`). The next `check` polls and downloads it.

        Which record takes the id is decided again after the poll, and saved, under the
        store's lock on the output file (as a submit does; `on_wait` hears once that
        another process holds it): a submit of the same file at the same time then
        either finds the adopted task, or has recorded its frame first and that record
        takes the id, instead of both ending up with a task for one frame.
        """
        task_id = task_id.strip()
        if not task_id:
            raise InvalidInput("task_id", task_id, _("a task id is required"))
        if not str(output_path).strip():
            raise InvalidInput("output_path", output_path, _("an output file path is required"))
        client = self.client_factory()  # raises ConfigError before anything is asked
        holder, same, key = self._adoption(task_id, output_path, req_key)
        async with client:
            try:
                result = await client.get_result(key, task_id)
            except AsyncImgError as exc:
                if is_poll_setup_problem(exc) or exc.retryable:
                    raise  # could not ask: setup, network or server
                raise Refused(
                    _("task {task_id}: {error}").format(task_id=task_id, error=plain(exc))
                ) from exc
        gone = result.error()
        if gone is not None:
            raise Refused(
                _("task {task_id}: {error} (for model {model}; is --req-key right?)").format(
                    task_id=task_id, error=message_of(gone.code, gone.kind, gone.message), model=key
                )
                if result.status is TaskStatus.NOT_FOUND
                else _("task {task_id}: {error}").format(
                    task_id=task_id, error=message_of(gone.code, gone.kind, gone.message)
                )
            )
        async with outputs_held(self.store, [path_key(output_path)], on_wait):
            holder, same, _key = self._adoption(task_id, output_path, key)  # as it is now
            now = self.clock()
            if holder is not None:
                adopted = self._adopt_into(holder, task_id, key, now)
            else:
                adopted = self._adopt_new(task_id, output_path, key, now)
        warnings = [
            _("{output} is also the output of task {task} ({status})").format(
                output=output_path, task=_task_name(r), status=_(r.status.value)
            )
            for r in same
            if r.local_id != adopted.local_id and r.status not in _ADOPTABLE
        ]
        took_over = holder.status if holder is not None else None
        return AdoptReport(adopted, result.status, took_over, warnings)

    def _adoption(
        self, task_id: str, output_path: str, req_key: str | None
    ) -> tuple[TaskRecord | None, list[TaskRecord], str]:
        """Checked before the API is asked: the waiting record that will take the id (if
        any), every record for that output file, and the model to poll."""
        records = self.store.load_all().records
        owner = next((r for r in records if r.task_id == task_id), None)
        if owner is not None:
            raise Refused(
                _("task {task_id} is already in {root}: {output} ({status})").format(
                    task_id=task_id,
                    root=_where(self.store),
                    output=owner.output_path,
                    status=_(owner.status.value),
                )
            )
        target = Path(output_path).expanduser().absolute()
        problem = output_problem(target)
        if problem is not None:
            raise InvalidInput("output_path", output_path, problem)
        same = [r for r in records if _same_path(r.resolve(r.output_path), target)]
        waiting = [r for r in same if r.status in _ADOPTABLE]
        waiting.sort(key=lambda r: (r.status is not TaskState.UNCONFIRMED, r.created_at))
        holder = waiting[0] if waiting else None
        key = req_key or (holder.req_key if holder else self.config.defaults.req_key)
        models.get_profile(key)  # InvalidInput for an unknown model
        return holder, same, key

    def _adopt_into(self, holder: TaskRecord, task_id: str, req_key: str, now: float) -> TaskRecord:
        """Give `task_id` to the waiting record `holder`, under its lock."""
        with self.store.lock(holder) as held:
            if not held:
                raise Refused(
                    _(
                        "the record for {output} is busy (another asyncimg is "
                        "submitting it); run adopt again once it has finished"
                    ).format(output=holder.output_path)
                )
            current = self.store.reload(holder)
            if current is None or current.status not in _ADOPTABLE:
                state = _(current.status.value) if current is not None else _("gone")
                raise Refused(
                    _("the record for {output} is now {state}").format(
                        output=holder.output_path, state=state
                    )
                )
            self._refuse_a_held_id(task_id, current.local_id)
            adopted = accept(current, task_id, now=now, req_key=req_key)
            self.store.save(adopted)
        return adopted

    def _adopt_new(self, task_id: str, output_path: str, req_key: str, now: float) -> TaskRecord:
        record = TaskRecord(
            output_path=output_path,
            filename=Path(output_path).name,
            prompt=ADOPTED_PROMPT,
            full_prompt=ADOPTED_PROMPT,
            req_key=req_key,
            status=TaskState.PENDING,
            local_id=uuid.uuid4().hex,
            created_at=now,
            updated_at=now,
            working_dir=str(Path.cwd()),
        )
        self._refuse_a_held_id(task_id, record.local_id)
        adopted = transition(
            record, TaskState.SUBMITTED, now=now, task_id=task_id, submit_time=now, attempts=1
        )
        self.store.save(adopted)
        return adopted

    def _refuse_a_held_id(self, task_id: str, local_id: str) -> None:
        """Refused if another record got `task_id` meanwhile (say, a second adopt)."""
        owner = self.store.task_id_owner(task_id, local_id)
        if owner is not None:
            raise Refused(
                _("task {task_id} is already in the folder ({owner})").format(
                    task_id=task_id, owner=owner.name
                )
            )


#: States a store sends by itself (`check` submits a pending record and resubmits an
#: unconfirmed one within the budget): `migrate` moves them only to an output file with no
#: live record in the destination.
_SENT_BY_ITSELF = frozenset({TaskState.PENDING, TaskState.UNCONFIRMED})


async def migrate_records(
    source: Store,
    dest: Store,
    *,
    every_machine: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> MoveReport:
    """`asyncimg migrate`: move the records of `source` to `dest` (`store.move`), under
    the destination's lock on their output files, as a submit to it records frames.

    A pending or unconfirmed record (the destination would send it) whose output file
    already has a live record in the destination stays in the source (`refused`):
    moving it would pay for that frame twice. Everything else moves as it is."""
    records, problems = records_to_move(source, every_machine=every_machine)
    keys = {output_key(record) for record in records}
    async with outputs_held(dest, keys, on_wait):
        index = OutputIndex(dest.load_all().records)

        def admit(record: TaskRecord) -> str | None:
            live = index.live(record) if record.status in _SENT_BY_ITSELF else None
            if live is not None:
                return _("{output} has another record in the destination, {reason}").format(
                    output=record.output_path,
                    reason=_doing(live).reason,
                )
            index.add(record)
            return None

        report = move_records(source, dest, records, admit=admit)
    report.problems[:0] = problems
    return report


def _plain(error: AsyncImgError) -> str:
    """A local check's message without the API's code (it names the field and the rule)."""
    return error.message if isinstance(error, InvalidInput) else str(error)


def _retry_problems(plan: _Plan, references: ReferenceSender | None = None) -> list[str]:
    """Everything that would make `plan` fail once saved: the output, the request itself."""
    record = plan.updated
    where = f"{_task_name(plan.original)} ({record.output_path})"
    problems: list[str] = []
    problem = output_problem(record.resolve(record.output_path).absolute())
    if problem is not None:
        problems.append(
            _(
                "{where}: output_path={output!r}: {problem} (fix it, or save it "
                "elsewhere: asyncimg retry {task} --output NEWPATH)"
            ).format(
                where=where,
                output=record.output_path,
                problem=problem,
                task=_task_name(plan.original),
            )
        )
    if not plan.refetch:
        try:
            request_fields(record, references)
        except AsyncImgError as exc:
            problems.append(f"{where}: {_plain(exc)}")
    return problems


def _megabytes(value: float | None) -> int | None:
    return None if value is None else int(value * models.MB)  # decimal MB, as the limits


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from synchronous code, also when a loop is already running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def generate_image_with_character(
    prompt: str,
    output_path: str,
    character_images: Sequence[str] | None = None,
    style: str | None = None,
    **options: Any,
) -> bool:
    """Submit one frame. True: durably recorded and accepted (or queued locally on a limit),
    or already there: a second call for a frame that is queued, in flight or done bills
    nothing and says so in one line on stderr (a failed one is resubmitted).

    False: something waiting will not fix; the reason is printed in one line on stderr.
    Options: `tasks_dir`, `config_path`, `req_key`, `size` ("1440x2560") and any model
    field (`scale`, `force_single`, `seed`, …).
    """
    tasks_dir = options.pop("tasks_dir", None)
    config_path = options.pop("config_path", None)
    req_key = options.pop("req_key", None)
    size = options.pop("size", None)
    request = TaskRequest(
        prompt=prompt,
        output_path=str(output_path),
        character_images=tuple(str(p) for p in (character_images or ())),
        style=style,
        req_key=req_key,
        size=size,
        params=dict(options),
    )
    try:
        workspace = Workspace.open(tasks_dir, config_path=config_path)
        report = run_sync(
            workspace.submit(
                [request], on_wait=lambda line: print(f"asyncimg: {line}", file=sys.stderr)
            )
        )
    except AsyncImgError as exc:
        print(f"asyncimg: {exc}", file=sys.stderr)
        return False
    for line in report.reasons():
        print(f"asyncimg: {line}", file=sys.stderr)
    for skipped in report.skipped:
        print(f"asyncimg: {skipped.line()}", file=sys.stderr)
    if report.batch.halted is not None:
        print(f"asyncimg: {report.batch.halted}", file=sys.stderr)
        return False
    return report.rejected == 0


def outcome_line(outcome: SubmitOutcome) -> str:
    record = outcome.record
    if outcome.accepted:
        return _("{name}: submitted as {task_id}").format(
            name=record.filename, task_id=record.task_id
        )
    if outcome.queued:
        why = f" ({record.last_error.message})" if record.last_error else ""
        return _("{name}: queued locally{why}").format(name=record.filename, why=why)
    error = plain(outcome.error) if outcome.error is not None else ""
    if outcome.unconfirmed:
        return _(
            "{name}: unconfirmed — {error}; the service may have created "
            "(and billed) it; `asyncimg check` resubmits it at most once"
        ).format(name=record.filename, error=error)
    return _("{name}: rejected — {error}").format(name=record.filename, error=error)


def _where(store: Store) -> str:
    """The store as a message names it: its folder, or its URL (without a password)."""
    shown = describe(store)
    return shown.removeprefix("--tasks-dir ").removeprefix("--store ")
