"""Turning a request into a durable record and a task the API accepted.

Order matters for "nothing lost": the record is written (pending) before the API is
asked, and rewritten with the task id as soon as the API answers.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncimg import constants
from asyncimg.i18n import _
from asyncimg.lifecycle import sizes
from asyncimg.lifecycle.config import Config
from asyncimg.lifecycle.decide import (
    after_submit_error,
    is_setup_problem,
    may_resubmit_unconfirmed,
    stop_submitting,
)
from asyncimg.lifecycle.ref_upload import PLAIN, ReferenceSender
from asyncimg.lifecycle.references import prepare_references
from asyncimg.lifecycle.refmode import with_url_advice
from asyncimg.lifecycle.styles import compose_full_prompt, resolve_style
from asyncimg.protocol import models
from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.errors import AsyncImgError, InvalidInput, NetworkError
from asyncimg.store.base import Store
from asyncimg.store.open import describe
from asyncimg.store.record import ErrorInfo, TaskRecord
from asyncimg.store.states import TaskState, accept, resubmit_unconfirmed, transition

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


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
    frame_id: str | None = None
    batch_file: str | None = None
    batch_line: int | None = None
    base_dir: str | None = None
    """The folder relative paths are read from (a batch file's folder); None: the current one."""


def build_record(request: TaskRequest, config: Config, *, now: float) -> TaskRecord:
    """A pending record for `request`: style applied, parameters resolved, nothing sent yet.

    Raises InvalidInput for what can be judged without the API (style, size, fields).
    """
    if not str(request.output_path).strip():
        raise InvalidInput("output_path", request.output_path, _("an output file path is required"))
    style = request.style if request.style is not None else config.defaults.style
    full_prompt = compose_full_prompt(request.prompt, style, config.presets)
    req_key = request.req_key or config.defaults.req_key
    params: dict[str, Any] = dict(config.defaults.params)
    size = request.size
    if not size and config.defaults.size and sizes.applies(config.defaults.size, req_key):
        size = config.defaults.size
    if size:
        params = sizes.with_size(params, size, req_key)
    params.update(request.params)
    for key in ("prompt", "req_key", "image_urls", "binary_data_base64"):
        params.pop(key, None)
    for key in ("logo_info", "aigc_meta"):  # callback mode takes these as JSON strings
        if isinstance(params.get(key), dict):
            params[key] = json.dumps(params[key], ensure_ascii=False)
    if "force_single" in models.get_profile(req_key).fields:
        params.setdefault("force_single", True)  # one frame, one billed image
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
        working_dir=request.base_dir or str(Path.cwd()),
        frame_id=request.frame_id,
        batch_file=request.batch_file,
        batch_line=request.batch_line,
    )


def max_billed_images(record: TaskRecord) -> int:
    """The most images this frame can return (and bill): 1 unless force_single is false on a
    model that may return several (then its maximum, less the reference images)."""
    profile = models.get_profile(record.req_key)
    if profile.max_outputs > 1 and record.params.get("force_single") is False:
        return max(1, profile.max_outputs - len(record.character_images))
    return 1


def billing_warnings(record: TaskRecord) -> list[str]:
    """One line per way this frame may cost more than one image."""
    most = max_billed_images(record)
    if most > 1:
        return [
            _(
                "{name}: force_single is false, so {model} may return and "
                "bill up to {n} images for this one frame"
            ).format(name=record.filename, model=record.req_key, n=most)
        ]
    return []


def check_fixes(
    config: Config, *, style: str | None = None, size: str | None = None, req_key: str | None = None
) -> None:
    """Raise InvalidInput now for a fix `amend_record` would refuse (before anything is saved)."""
    if style is not None:
        resolve_style(style, config.presets)
    if size is not None:
        sizes.normalise(size)
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
    character_images: Sequence[str] | None = None,
) -> TaskRecord:
    """A pending record with the user's fixes applied (for `asyncimg retry --size ...`).

    `character_images` replaces the references (read from disk only when it is submitted:
    `request_fields` says whether they are usable).
    """
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
        changes["params"] = sizes.with_size(record.params, size, req_key or record.req_key)
    if req_key is not None:
        models.get_profile(req_key)
        changes["req_key"] = req_key
    if character_images is not None:
        changes["character_images"] = [str(p) for p in character_images]
    if not changes:
        return record
    return transition(record, record.status, now=now, **changes)


def request_fields(record: TaskRecord, references: ReferenceSender | None = None) -> dict[str, Any]:
    """The submit body for a record (references read from disk now, never stored): local
    files inline as base64 or uploaded and sent as URLs, as `references` decides."""
    profile = models.get_profile(record.req_key)
    fields: dict[str, Any] = {"prompt": record.full_prompt, **record.params}
    if record.character_images:
        fields.update((references or PLAIN).image_fields(record, profile))
    elif profile.references.min_count:
        prepare_references([], profile)  # raises the "needs N images" message
    models.validate_fields(record.req_key, fields)
    return fields


@dataclass
class SubmitOutcome:
    record: TaskRecord
    error: AsyncImgError | None = None
    warning: str | None = None

    @property
    def accepted(self) -> bool:
        return self.record.status is TaskState.SUBMITTED

    @property
    def queued(self) -> bool:
        return self.record.status is TaskState.PENDING

    @property
    def unconfirmed(self) -> bool:
        return self.record.status is TaskState.UNCONFIRMED

    @property
    def rejected(self) -> bool:
        return self.record.status is TaskState.FAILED


class RecordNotSaved(AsyncImgError):
    """The API accepted a task but its record could not be written, even after retries.

    The message carries the task id and the exact command that adopts it: the caller must
    show it and exit non-zero, or the paid task is lost to the folder.
    """

    def __init__(self, record: TaskRecord, task_id: str, store: Store, cause: OSError) -> None:
        command = adopt_command(task_id, record, store)
        super().__init__(
            _(
                "the API accepted task {task_id} for {output}, but its record could "
                "not be written ({why}); once the folder is writable, keep it with: {command}"
            ).format(
                task_id=task_id,
                output=record.output_path,
                why=cause.strerror or cause,
                command=command,
            )
        )
        self.task_id = task_id
        self.record = record
        self.command = command
        self.others: list[RecordNotSaved] = []
        """Further tasks accepted in the same batch whose records could not be written
        either (parallel submits hit a full disk together); each is in the message."""

    def include(self, other: RecordNotSaved) -> None:
        self.others.append(other)
        self.message = f"{self.message}; and {other.message}"
        self.args = (self.message,)


def adopt_command(task_id: str, record: TaskRecord, store: Store) -> str:
    """The `asyncimg adopt` command that attaches `task_id` to `record`'s frame."""
    parts = [
        "asyncimg adopt",
        shlex.quote(task_id),
        "-o",
        shlex.quote(str(record.resolve(record.output_path))),
        "--req-key",
        shlex.quote(record.req_key),
    ]
    option, _, where = describe(store).partition(" ")
    parts += [option, shlex.quote(where)]
    return " ".join(parts)


# Saving a record after the API accepted its task: a few tries, a moment apart, before
# giving up with the task id on screen (a full disk or a busy network share may recover).
SAVE_ATTEMPTS = 3
SAVE_RETRY_DELAY_S = 0.2


async def submit_record(
    client: VisualClient,
    store: Store,
    record: TaskRecord,
    *,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
    references: ReferenceSender | None = None,
) -> SubmitOutcome:
    """Submit one pending record and save what happened.

    Never raises AsyncImgError, except :class:`RecordNotSaved` when the API accepted the
    task and its record could not be written. The record is marked (`submit_started_at`)
    before the request leaves, so a process killed mid-request leaves evidence that the
    outcome is unknown. Once the request is on its way it is not abandoned on Ctrl+C /
    SIGTERM: the answer is awaited and its task id written. Only a second interrupt gives
    up, and then the record is unconfirmed.
    """
    try:
        fields = await asyncio.to_thread(request_fields, record, references)
    except AsyncImgError as exc:
        return _save_submit_error(store, record, exc, clock())
    sent = "url" if "image_urls" in fields else "base64" if "binary_data_base64" in fields else None
    marked = transition(
        record, TaskState.PENDING, now=clock(), submit_started_at=clock(), references_sent=sent
    )
    store.save(marked)
    sending = asyncio.ensure_future(_send(client, store, marked, fields, clock, sleep))
    try:
        return await asyncio.shield(sending)
    except asyncio.CancelledError:
        try:
            await sending
        except asyncio.CancelledError:
            note = NetworkError(
                _("interrupted while submitting: the service may have created this task")
            )
            _save_submit_error(store, marked, note, clock())
        raise


async def _send(
    client: VisualClient,
    store: Store,
    record: TaskRecord,
    fields: dict[str, Any],
    clock: Clock,
    sleep: Sleep,
) -> SubmitOutcome:
    try:
        task_id = await client.submit(record.req_key, fields)
    except AsyncImgError as exc:
        advised = with_url_advice(exc, record.req_key, record.references_sent)
        return _save_submit_error(store, record, advised, clock())
    updated = accept(record, task_id, now=clock())
    warning = store.task_id_owner(task_id, updated.local_id)
    for attempt in range(1, SAVE_ATTEMPTS + 1):
        try:
            await store.save_async(updated)
            break
        except OSError as exc:
            if attempt == SAVE_ATTEMPTS:
                raise RecordNotSaved(record, task_id, store, exc) from exc
            await sleep(SAVE_RETRY_DELAY_S * attempt)
    outcome = SubmitOutcome(updated)
    if warning is not None:
        outcome.warning = _(
            "the API returned task id {task_id} again (already in {name}); "
            "both records are kept apart"
        ).format(task_id=task_id, name=warning.name)
    return outcome


def _save_submit_error(
    store: Store, record: TaskRecord, error: AsyncImgError, now: float
) -> SubmitOutcome:
    decision = after_submit_error(error)
    target = decision.state or record.status
    updated = transition(
        record,
        target,
        now=now,
        last_error=ErrorInfo.from_exception(error, now),
        submit_started_at=None,
    )
    store.save(updated)
    return SubmitOutcome(updated, error)


def stale_submit(record: TaskRecord, *, now: float) -> TaskRecord:
    """A pending record found marked mid-submit with nobody holding its lock: its submitter
    died before the answer was written, so the API may have a task for it."""
    error = NetworkError(_("the process submitting it stopped before the answer was recorded"))
    return transition(
        record,
        TaskState.UNCONFIRMED,
        now=now,
        last_error=ErrorInfo.from_exception(error, now),
        submit_started_at=None,
    )


@dataclass
class BatchOutcome:
    outcomes: list[SubmitOutcome] = field(default_factory=list)
    halted: AsyncImgError | None = None
    """A setup problem (credentials, clock) that stopped the batch; nothing else was sent."""

    @property
    def submitted(self) -> int:
        return sum(o.accepted for o in self.outcomes)

    @property
    def queued(self) -> int:
        return sum(o.queued for o in self.outcomes)

    @property
    def unconfirmed(self) -> int:
        return sum(o.unconfirmed for o in self.outcomes)

    @property
    def rejected(self) -> int:
        return sum(o.rejected for o in self.outcomes)


async def submit_records(
    client: VisualClient,
    store: Store,
    records: Sequence[TaskRecord],
    *,
    clock: Clock = time.time,
    sleep: Sleep = asyncio.sleep,
    parallel: int = 4,
    unconfirmed_budget: int = constants.DEFAULT_MAX_UNCONFIRMED_RESUBMITS,
    on_outcome: Callable[[SubmitOutcome], None] | None = None,
    references: ReferenceSender | None = None,
) -> BatchOutcome:
    """Submit queued records in order, a few at a time, until the service says "limit".

    `on_outcome` hears about each frame the moment its answer is recorded (progress).

    Every record is already on disk; after the first refusal that waiting can fix (50429,
    50430, outage), an unknown outcome or a setup problem, the rest simply stay queued for
    the checker. Each record is re-read under its lock first: another process may have
    sent it meanwhile, or died while sending it (then it is unconfirmed, and resubmitted
    only within `unconfirmed_budget`).
    """
    outcomes: dict[str, SubmitOutcome] = {}
    stop = asyncio.Event()
    queue: asyncio.Queue[TaskRecord] = asyncio.Queue()
    unsaved: list[RecordNotSaved] = []
    halted: list[AsyncImgError] = []
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
                current = _sendable(store, record, clock, unconfirmed_budget)
                if current.status is not TaskState.PENDING:
                    outcomes[record.local_id] = SubmitOutcome(current)
                    continue
                try:
                    outcome = await submit_record(
                        client, store, current, clock=clock, sleep=sleep, references=references
                    )
                except RecordNotSaved as exc:
                    unsaved.append(exc)
                    stop.set()
                    return
            outcomes[record.local_id] = outcome
            if on_outcome is not None:
                on_outcome(outcome)
            if outcome.error is not None and stop_submitting(outcome.error):
                if is_setup_problem(outcome.error):
                    halted.append(outcome.error)
                stop.set()

    await asyncio.gather(*(worker() for _ in range(max(1, parallel))))
    if unsaved:
        first, *rest = unsaved
        for other in rest:  # every accepted task id reaches the user, not just the first
            first.include(other)
        raise first
    ordered = [outcomes.get(r.local_id, SubmitOutcome(r)) for r in records]
    return BatchOutcome(ordered, halted[0] if halted else None)


def _sendable(store: Store, record: TaskRecord, clock: Clock, budget: int) -> TaskRecord:
    """The record as it is on disk now (held under its lock), made ready to send if it may
    be: pending, or unconfirmed within the budget. Anything else comes back as it is."""
    current = store.reload(record) or record
    if current.status is TaskState.PENDING and current.submit_started_at is not None:
        current = stale_submit(current, now=clock())
        store.save(current)
    if current.status is TaskState.UNCONFIRMED and may_resubmit_unconfirmed(current, budget):
        current = resubmit_unconfirmed(current, now=clock())
        store.save(current)
    return current
