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
from pathlib import Path
from typing import Any, TypeVar

from asyncimg.lifecycle.check import Checker, PassSummary
from asyncimg.lifecycle.config import Config, load_config
from asyncimg.lifecycle.monitor import MonitorOutcome, monitor
from asyncimg.lifecycle.scheduler import Scheduler
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
from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.record import TaskRecord
from asyncimg.store.states import TaskState, retry_record
from asyncimg.store.store import TaskStore

T = TypeVar("T")
ClientFactory = Callable[[], VisualClient]


@dataclass
class Rejected:
    """A request refused before any record could be written (bad style, size, path)."""

    request: TaskRequest
    error: AsyncImgError


@dataclass
class SubmitReport:
    batch: BatchOutcome = field(default_factory=BatchOutcome)
    invalid: list[Rejected] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

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

    async def submit(self, requests: Iterable[TaskRequest]) -> SubmitReport:
        """Record every request (pending), then submit them; see submit_records."""
        report = SubmitReport()
        client = self.client_factory()  # raises ConfigError before anything is written
        records: list[TaskRecord] = []
        for request in requests:
            try:
                record = build_record(request, self.config, now=self.clock())
            except AsyncImgError as exc:
                report.invalid.append(Rejected(request, exc))
                continue
            report.warnings.extend(billing_warnings(record))
            self.store.save(record)
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
            )
            return await scheduler.run()

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
    """Submit one frame. True: durably recorded and accepted (or queued locally on a limit).

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
