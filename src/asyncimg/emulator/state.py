"""The task table: queue timing, retention, QPS and account concurrency limits."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from asyncimg.emulator.faults import FaultKind
from asyncimg.protocol.models import ModelProfile

# The first part of a task's duration is spent `in_queue`, the rest `generating`.
QUEUE_SHARE = 0.3


class Status(StrEnum):
    IN_QUEUE = "in_queue"
    GENERATING = "generating"
    DONE = "done"
    NOT_FOUND = "not_found"
    EXPIRED = "expired"


@dataclass
class Task:
    task_id: str
    req_key: str
    profile: ModelProfile
    fields: Mapping[str, object]
    submitted_at: float
    duration: float
    fault: FaultKind | None
    images: dict[int, bytes] = field(default_factory=dict, repr=False)
    output_size: tuple[int, int] | None = None
    """What the service draws (emulator/shapes.py); None: the old rule below."""
    cancelled: bool = False
    url_references: list[str] = field(default_factory=list, repr=False)
    """`image_urls` references as fetched at submit (base64), drawn like inline ones."""

    @property
    def done_at(self) -> float:
        return self.submitted_at + self.duration

    @property
    def size(self) -> tuple[int, int]:
        """Output pixels: as decided at submit, else width/height, else the side of a square
        `size` area, else the default."""
        if self.output_size is not None:
            return self.output_size
        w, h = self.fields.get("width"), self.fields.get("height")
        if isinstance(w, int) and isinstance(h, int):
            return w, h
        area = self.fields.get("size")
        if isinstance(area, int) and self.profile.has_size_field:
            side = math.isqrt(area)
            return side, side
        return self.profile.size.default

    @property
    def extension(self) -> str:
        return "jpg" if self.profile.output_format == "JPEG" else "png"

    @property
    def content_type(self) -> str:
        return "image/jpeg" if self.profile.output_format == "JPEG" else "image/png"

    @property
    def references(self) -> list[str]:
        refs = self.fields.get("binary_data_base64")
        if not isinstance(refs, list):
            return list(self.url_references)
        return [r for r in refs if isinstance(r, str)]

    def image_count(self, images_per_task: int) -> int:
        if self.fault is FaultKind.NO_IMAGE:
            return 0
        if self.profile.max_outputs <= 1 or self.fields.get("force_single") is True:
            return 1
        n_refs = len(self.fields.get("image_urls") or self.references or [])  # type: ignore[arg-type]
        return max(1, min(images_per_task, self.profile.max_outputs - n_refs))


@dataclass(frozen=True)
class Submission:
    """One created task as the log keeps it (after retention too): when its request reached
    the emulator, when the task was created (after any latency), when it left `in_queue`
    and when it became `done`, and its prompt."""

    task_id: str
    received_at: float
    submitted_at: float
    prompt: str
    started_at: float
    done_at: float


class TaskTable:
    """Every submitted task, with the timing rules that turn elapsed time into a status."""

    def __init__(
        self,
        *,
        gen_seconds: tuple[float, float],
        retention_seconds: float,
        expire_seconds: float | None,
        seed: int | None,
    ) -> None:
        self.gen_seconds = gen_seconds
        self.retention_seconds = retention_seconds
        self.expire_seconds = expire_seconds
        self._ids = random.Random(None if seed is None else f"{seed}:ids")
        self._durations = random.Random(None if seed is None else f"{seed}:durations")
        self._tasks: dict[str, Task] = {}
        self._unfinished: list[Task] = []
        self.log: list[Submission] = []
        self.submitted = 0
        self.done = 0
        self.peak_unfinished = 0

    def new_id(self) -> str:
        while True:
            task_id = str(self._ids.randrange(10**18, 10**19))
            if task_id not in self._tasks:
                return task_id

    def unfinished(self, now: float) -> int:
        self._sweep(now)
        return len(self._unfinished)

    def submit(
        self,
        req_key: str,
        profile: ModelProfile,
        fields: Mapping[str, object],
        fault: FaultKind | None,
        now: float,
        received_at: float | None = None,
        output_size: tuple[int, int] | None = None,
    ) -> Task:
        task = Task(
            task_id=self.new_id(),
            req_key=req_key,
            profile=profile,
            fields=dict(fields),
            submitted_at=now,
            duration=self._durations.uniform(*self.gen_seconds),
            fault=fault,
            output_size=output_size,
        )
        self._tasks[task.task_id] = task
        self._unfinished.append(task)
        prompt = fields.get("prompt")
        self.log.append(
            Submission(
                task.task_id,
                now if received_at is None else received_at,
                now,
                prompt if isinstance(prompt, str) else "",
                started_at=now + task.duration * QUEUE_SHARE,
                done_at=task.done_at,
            )
        )
        self.submitted += 1
        self._sweep(now)
        self.peak_unfinished = max(self.peak_unfinished, len(self._unfinished))
        return task

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def cancel(self, task: Task, now: float) -> Status | None:
        """`CVCancelTask`: a task still `in_queue` is dropped (it frees its slot and polls
        answer `not_found`); otherwise its status is returned and nothing changes."""
        status = self.status(task, now)
        if status is not Status.IN_QUEUE:
            return status
        task.cancelled = True
        self._unfinished = [t for t in self._unfinished if t is not task]
        return None

    def status(self, task: Task, now: float) -> Status:
        self._sweep(now)
        elapsed = now - task.submitted_at
        if task.cancelled or elapsed > self.retention_seconds:
            return Status.NOT_FOUND
        if self.expire_seconds is not None and elapsed > self.expire_seconds:
            return Status.EXPIRED
        if elapsed >= task.duration:
            return Status.DONE
        if elapsed >= task.duration * QUEUE_SHARE:
            return Status.GENERATING
        return Status.IN_QUEUE

    def _sweep(self, now: float) -> None:
        """Count tasks that have finished since the last look; forget those past retention."""
        still = [t for t in self._unfinished if t.done_at > now]
        self.done += len(self._unfinished) - len(still)
        self._unfinished = still
        horizon = now - self.retention_seconds
        if self._tasks and next(iter(self._tasks.values())).submitted_at < horizon:
            self._tasks = {
                k: t for k, t in self._tasks.items() if t.submitted_at >= horizon or t.done_at > now
            }


class RateLimiter:
    """Per-action requests in a sliding one-second window; only admitted requests count."""

    def __init__(self, qps: float | None) -> None:
        self.qps = qps
        self._windows: dict[str, deque[float]] = {}

    def admit(self, action: str, now: float) -> bool:
        if self.qps is None:
            return True
        window = self._windows.setdefault(action, deque())
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= self.qps:
            return False
        window.append(now)
        return True
