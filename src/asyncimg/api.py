"""The library API: what `gen_image.py`, the CLI and user code call.

Each call opens one client (one HTTP session) for its duration. Credentials and the
endpoint come from the environment (VOLC_ACCESSKEY, VOLC_SECRETKEY, ASYNCIMG_ENDPOINT).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from asyncimg.lifecycle.check import Checker, PassSummary
from asyncimg.lifecycle.config import Config, load_config
from asyncimg.lifecycle.monitor import MonitorOutcome, monitor
from asyncimg.lifecycle.submit import (
    BatchOutcome,
    SubmitOutcome,
    TaskRequest,
    amend_record,
    billing_warnings,
    build_record,
    check_fixes,
    submit_records,
)
from asyncimg.lifecycle.validate import output_key
from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.record import TaskRecord, record_from_json
from asyncimg.store.states import IN_FLIGHT, TaskState, retry_record
from asyncimg.store.store import TaskStore

T = TypeVar("T")
ClientFactory = Callable[[], VisualClient]


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
        return RerunCheck(Rerun.REPLACE, previous, f"replaces failed {_name(previous)}")
    if status is TaskState.COMPLETED and not image_exists:
        return RerunCheck(Rerun.NEW, previous, f"{_name(previous)} completed but its image is gone")
    if force:
        return RerunCheck(Rerun.NEW, previous, f"--force: {_name(previous)} is {status.value}")
    if status is TaskState.PENDING:
        reason = "already queued locally (pending; `asyncimg check` submits it)"
    elif status is TaskState.UNCONFIRMED:
        reason = (
            "already sent, outcome unknown (unconfirmed; the service may have created it, "
            "`asyncimg check` settles it)"
        )
    elif status in IN_FLIGHT:
        reason = f"already submitted as {_name(previous)}"
    else:
        reason = f"already done ({_name(previous)})"
    return RerunCheck(Rerun.SKIP, previous, reason)


def _name(record: TaskRecord) -> str:
    return f"task {record.task_id}" if record.task_id else f"local task {record.local_id[:8]}"


class OutputIndex:
    """The latest record (by created_at) for each output file, as reruns need it."""

    def __init__(self, records: Iterable[TaskRecord] = ()) -> None:
        self._latest: dict[str, TaskRecord] = {}
        for record in sorted(records, key=lambda r: (r.created_at, r.updated_at)):
            self.add(record)

    def add(self, record: TaskRecord) -> None:
        self._latest[output_key(record)] = record

    def check(self, record: TaskRecord, *, force: bool = False) -> RerunCheck:
        """What `record` (a new one, not yet saved) does, given the records already there."""
        previous = self._latest.get(output_key(record))
        exists = False
        if previous is not None and previous.status is TaskState.COMPLETED:
            exists = previous.resolve(previous.output_path).is_file()
        return rerun_rule(previous, image_exists=exists, force=force)


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
            records.append(record_from_json(path.read_bytes()))
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
        return f"{self.request.output_path}: skipped — {self.reason}{hint}"


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


@dataclass
class Workspace:
    """A tasks directory with its config, and how to make a client for it."""

    store: TaskStore
    config: Config
    client_factory: ClientFactory
    clock: Callable[[], float] = time.time

    @classmethod
    def open(
        cls,
        tasks_dir: str | Path | None = None,
        *,
        config_path: str | Path | None = None,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Workspace:
        config = load_config(config_path)
        root = Path(tasks_dir) if tasks_dir is not None else Path(config.defaults.tasks_dir)
        if client_factory is None:
            timeout = config.defaults.submit_timeout

            def client_factory() -> VisualClient:
                return VisualClient.from_env(submit_read_timeout=timeout)

        return cls(TaskStore(root), config, client_factory, clock)

    @property
    def unconfirmed_budget(self) -> int:
        return self.config.defaults.max_unconfirmed_resubmits

    def checker(self, client: VisualClient, **kwargs: Any) -> Checker:
        kwargs.setdefault("poll_concurrency", self.config.defaults.poll_concurrency)
        kwargs.setdefault("unconfirmed_budget", self.unconfirmed_budget)
        return Checker(self.store, client, clock=self.clock, **kwargs)

    async def submit(self, requests: Iterable[TaskRequest], *, force: bool = False) -> SubmitReport:
        """Record every request (pending), then submit them; see submit_records.

        A request whose output file already has a record follows :func:`rerun_rule`:
        skipped (reported, not billed), its failed record replaced, or submitted anew.
        """
        report = SubmitReport()
        client = self.client_factory()  # raises ConfigError before anything is written
        loaded = self.store.load_all()
        report.warnings.extend(str(p) for p in loaded.problems)
        index = OutputIndex(loaded.records)
        records: list[TaskRecord] = []
        for request in requests:
            try:
                record = build_record(request, self.config, now=self.clock())
            except AsyncImgError as exc:
                report.invalid.append(Rejected(request, exc))
                continue
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
                    reason = "same output as an earlier frame of this submit"
                report.skipped.append(Skipped(request, check.previous, reason))
                continue
            else:
                self.store.save(record)
            report.warnings.extend(billing_warnings(record))
            index.add(record)
            records.append(record)
        async with client:
            report.batch = await submit_records(
                client,
                self.store,
                records,
                clock=self.clock,
                unconfirmed_budget=self.unconfirmed_budget,
            )
        return report

    def _replace_failed(self, failed: TaskRecord, fresh: TaskRecord) -> TaskRecord | str:
        """`failed` sent back to pending as `fresh` asks (its attempt kept in history), saved;
        or why not (another process holds it or has moved it on)."""
        with self.store.lock(failed) as held:
            current = self.store.reload(failed) if held else None
            if current is None:
                return f"its failed {_name(failed)} is busy in another process; run again"
            if current.status is not TaskState.FAILED:
                return f"{_name(current)} was just moved on by another process ({current.status})"
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
        on_pass: Callable[[PassSummary], None] | None = None,
        max_passes: int | None = None,
        **kwargs: Any,
    ) -> MonitorOutcome:
        every = interval if interval is not None else self.config.defaults.interval
        async with self.client_factory() as client:
            return await monitor(
                self.checker(client, **kwargs),
                interval=every,
                until_done=until_done,
                on_pass=on_pass,
                max_passes=max_passes,
            )

    def clean_completed(
        self, *, older_than: float | None = None, archive: str | Path | None = None
    ) -> int:
        """Delete (or move to `archive`) completed records; images are never touched."""
        cutoff = self.clock() - older_than if older_than is not None else None
        removed = 0
        for record in self.store.load_all().records:
            if record.status is not TaskState.COMPLETED:
                continue
            finished = record.completed_time or record.updated_at
            if cutoff is not None and finished > cutoff:
                continue
            if archive is not None:
                self.store.archive(record, Path(archive))
            else:
                self.store.delete(record)
            removed += 1
        return removed

    async def retry(
        self,
        keys: Sequence[str] = (),
        *,
        all_failed: bool = False,
        prompt: str | None = None,
        style: str | None = None,
        size: str | None = None,
        req_key: str | None = None,
    ) -> SubmitReport:
        """Resubmit failed tasks; earlier ids stay in `history`.

        The parameters stay the same unless a fix is given (`size="1440x2560"`, a new
        `prompt`, `style` or `req_key`), which applies to every task retried.
        """
        client = self.client_factory()
        targets: list[TaskRecord] = []
        if all_failed:
            targets = [r for r in self.store.load_all().records if r.status is TaskState.FAILED]
        for key in keys:
            record = self.store.get(key)
            if record.status is not TaskState.FAILED:
                raise AsyncImgError(
                    f"task {key} is {record.status.value}; only failed tasks can be retried"
                )
            targets.append(record)
        unique = {r.local_id: r for r in targets}
        check_fixes(self.config, style=style, size=size, req_key=req_key)  # before any write
        fixes = {"prompt": prompt, "style": style, "size": size, "req_key": req_key}
        queued: list[TaskRecord] = []
        for record in unique.values():
            with self.store.lock(record) as held:
                # Another retry or checker may have moved it since it was read: re-read
                # under the lock, or two retries would each submit (and bill) the frame.
                current = self.store.reload(record) if held else None
                if current is None or current.status is not TaskState.FAILED:
                    continue
                again = retry_record(current, now=self.clock())
                again = amend_record(again, self.config, now=self.clock(), **fixes)
                self.store.save(again)
                queued.append(again)
        async with client:
            batch = await submit_records(
                client,
                self.store,
                queued,
                clock=self.clock,
                unconfirmed_budget=self.unconfirmed_budget,
            )
        return SubmitReport(batch)


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
        report = run_sync(workspace.submit([request]))
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
        return f"{record.filename}: submitted as {record.task_id}"
    if outcome.queued:
        why = f" ({record.last_error.message})" if record.last_error else ""
        return f"{record.filename}: queued locally{why}"
    if outcome.unconfirmed:
        return (
            f"{record.filename}: unconfirmed — {outcome.error}; the service may have created "
            "(and billed) it; `asyncimg check` resubmits it at most once"
        )
    return f"{record.filename}: rejected — {outcome.error}"
