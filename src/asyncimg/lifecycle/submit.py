"""Turning a request into a durable record and a task the API accepted.

Order matters for "nothing lost": the record is written (pending) before the API is
asked, and rewritten with the task id as soon as the API answers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncimg.lifecycle.config import Config, parse_size
from asyncimg.lifecycle.decide import after_submit_error, stop_submitting
from asyncimg.lifecycle.references import prepare_references
from asyncimg.lifecycle.styles import compose_full_prompt, resolve_style
from asyncimg.protocol import models
from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.errors import AsyncImgError, InvalidInput, NetworkError
from asyncimg.store.record import ErrorInfo, TaskRecord
from asyncimg.store.states import TaskState, transition
from asyncimg.store.store import TaskStore

Clock = Callable[[], float]


@dataclass(frozen=True)
class TaskRequest:
    """What a caller asks for: one frame."""

    prompt: str
    output_path: str
    character_images: Sequence[str] = ()
    style: str | None = None
    req_key: str | None = None
    size: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)


def build_record(request: TaskRequest, config: Config, *, now: float) -> TaskRecord:
    """A pending record for `request`: style applied, parameters resolved, nothing sent yet.

    Raises InvalidInput for what can be judged without the API (style, size, fields).
    """
    if not str(request.output_path).strip():
        raise InvalidInput("output_path", request.output_path, "an output file path is required")
    style = request.style if request.style is not None else config.defaults.style
    full_prompt = compose_full_prompt(request.prompt, style, config.presets)
    req_key = request.req_key or config.defaults.req_key
    params: dict[str, Any] = dict(config.defaults.params)
    size = request.size or config.defaults.size
    if size:
        width, height = parse_size(size)
        params["width"], params["height"] = width, height
    params.update(request.params)
    for key in ("prompt", "req_key", "image_urls", "binary_data_base64"):
        params.pop(key, None)
    return TaskRecord(
        task_id=None,
        local_id=uuid.uuid4().hex,
        output_path=str(request.output_path),
        filename=Path(request.output_path).name,
        prompt=request.prompt,
        full_prompt=full_prompt,
        character_images=[str(p) for p in request.character_images],
        style=style,
        req_key=req_key,
        params=params,
        submit_time=None,
        status=TaskState.PENDING,
        created_at=now,
        updated_at=now,
        working_dir=str(Path.cwd()),
    )


def check_fixes(
    config: Config, *, style: str | None = None, size: str | None = None, req_key: str | None = None
) -> None:
    """Raise InvalidInput now for a fix `amend_record` would refuse (before anything is saved)."""
    if style is not None:
        resolve_style(style, config.presets)
    if size is not None:
        parse_size(size)
    if req_key is not None:
        models.get_profile(req_key)


def amend_record(
    record: TaskRecord,
    config: Config,
    *,
    now: float,
    prompt: str | None = None,
    style: str | None = None,
    size: str | None = None,
    req_key: str | None = None,
) -> TaskRecord:
    """A pending record with the user's fixes applied (for `asyncimg retry --size ...`)."""
    changes: dict[str, Any] = {}
    if prompt is not None or style is not None:
        new_prompt = record.prompt if prompt is None else prompt
        new_style = record.style if style is None else style
        changes.update(
            prompt=new_prompt,
            style=new_style,
            full_prompt=compose_full_prompt(new_prompt, new_style, config.presets),
        )
    if size is not None:
        width, height = parse_size(size)
        changes["params"] = {**record.params, "width": width, "height": height}
    if req_key is not None:
        models.get_profile(req_key)
        changes["req_key"] = req_key
    if not changes:
        return record
    return transition(record, record.status, now=now, **changes)


def request_fields(record: TaskRecord) -> dict[str, Any]:
    """The submit body for a record (references read from disk now, never stored)."""
    profile = models.get_profile(record.req_key)
    fields: dict[str, Any] = {"prompt": record.full_prompt, **record.params}
    if record.character_images:
        refs = prepare_references([record.resolve(p) for p in record.character_images], profile)
        fields["binary_data_base64"] = [r.base64 for r in refs]
    elif profile.references.min_count:
        prepare_references([], profile)  # raises the "needs N images" message
    models.validate_fields(record.req_key, fields)
    return fields


@dataclass
class SubmitOutcome:
    record: TaskRecord
    error: AsyncImgError | None = None

    @property
    def accepted(self) -> bool:
        return self.record.status is TaskState.SUBMITTED

    @property
    def queued(self) -> bool:
        return self.record.status is TaskState.PENDING

    @property
    def rejected(self) -> bool:
        return self.record.status is TaskState.FAILED


async def submit_record(
    client: VisualClient, store: TaskStore, record: TaskRecord, *, clock: Clock = time.time
) -> SubmitOutcome:
    """Submit one pending record and save what happened. Never raises AsyncImgError.

    Once the request is on its way it is not abandoned on Ctrl+C / SIGTERM: the service may
    be creating the task, so the answer is awaited and its task id written. Only a second
    interrupt gives up, and then the record says the task may exist.
    """
    try:
        fields = await asyncio.to_thread(request_fields, record)
    except AsyncImgError as exc:
        return _save_submit_error(store, record, exc, clock())
    sending = asyncio.ensure_future(_send(client, store, record, fields, clock))
    try:
        return await asyncio.shield(sending)
    except asyncio.CancelledError:
        try:
            await sending
        except asyncio.CancelledError:
            note = NetworkError(
                "interrupted while submitting: the service may have created this task; "
                "if a second copy appears, delete one"
            )
            _save_submit_error(store, record, note, clock())
        raise


async def _send(
    client: VisualClient,
    store: TaskStore,
    record: TaskRecord,
    fields: dict[str, Any],
    clock: Clock,
) -> SubmitOutcome:
    try:
        task_id = await client.submit(record.req_key, fields)
    except AsyncImgError as exc:
        return _save_submit_error(store, record, exc, clock())
    now = clock()
    updated = transition(
        record,
        TaskState.SUBMITTED,
        now=now,
        task_id=task_id,
        submit_time=now,
        attempts=record.attempts + 1,
        last_error=None,
    )
    store.save(updated)
    return SubmitOutcome(updated)


def _save_submit_error(
    store: TaskStore, record: TaskRecord, error: AsyncImgError, now: float
) -> SubmitOutcome:
    decision = after_submit_error(error)
    target = decision.state or record.status
    updated = transition(record, target, now=now, last_error=ErrorInfo.from_exception(error, now))
    store.save(updated)
    return SubmitOutcome(updated, error)


@dataclass
class BatchOutcome:
    outcomes: list[SubmitOutcome] = field(default_factory=list)

    @property
    def submitted(self) -> int:
        return sum(o.accepted for o in self.outcomes)

    @property
    def queued(self) -> int:
        return sum(o.queued for o in self.outcomes)

    @property
    def rejected(self) -> int:
        return sum(o.rejected for o in self.outcomes)


async def submit_records(
    client: VisualClient,
    store: TaskStore,
    records: Sequence[TaskRecord],
    *,
    clock: Clock = time.time,
    parallel: int = 4,
) -> BatchOutcome:
    """Submit pending records in order, a few at a time, until the service says "limit".

    Every record is already on disk as pending; after the first refusal that waiting can
    fix (50429, 50430, outage) the rest simply stay pending for the checker.
    """
    outcomes: dict[str, SubmitOutcome] = {}
    stop = asyncio.Event()
    queue: asyncio.Queue[TaskRecord] = asyncio.Queue()
    for record in records:
        queue.put_nowait(record)

    async def worker() -> None:
        while not stop.is_set():
            try:
                record = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            with store.lock(record) as held:
                if not held:
                    outcomes[record.local_id] = SubmitOutcome(record)
                    continue
                # Another process (a monitor, a check) may have submitted it since our copy
                # was read: sending the stale copy would create and bill a second task.
                current = store.reload(record) or record
                if current.status is not TaskState.PENDING:
                    outcomes[record.local_id] = SubmitOutcome(current)
                    continue
                outcome = await submit_record(client, store, current, clock=clock)
            outcomes[record.local_id] = outcome
            if outcome.error is not None and stop_submitting(outcome.error):
                stop.set()

    await asyncio.gather(*(worker() for _ in range(max(1, parallel))))
    ordered = [outcomes.get(r.local_id, SubmitOutcome(r)) for r in records]
    return BatchOutcome(ordered)
