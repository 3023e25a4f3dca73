"""`asyncimg pull`: write this machine's kept images from the bucket.

For every record this machine works on (`Store.load_all`) that `kept.pull_plan` says
needs it: a task kept in storage while its machine was off (not yet written here), or a
completed frame whose file is missing. Each image is fetched from the bucket, checked
against the sha256 the record holds, then written exactly as a download writes it
(`download.saver`: checked, converted, provenance inside, temp file + rename). A task
that was waiting for it is then completed. Nothing is asked of the visual API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from asyncimg.lifecycle.download import saver
from asyncimg.lifecycle.kept import FrameBucket, PullPlan, pull_plan, waits_for_pull
from asyncimg.protocol.errors import AsyncImgError, ConfigError
from asyncimg.store.base import Store
from asyncimg.store.record import ResultFile, TaskRecord
from asyncimg.store.states import TaskState, complete, refetch_record

Clock = Callable[[], float]


@dataclass(frozen=True)
class Pulled:
    """One frame `pull` looked at: the files it wrote, or why it could not."""

    record: TaskRecord
    paths: tuple[Path, ...] = ()
    problem: str | None = None


@dataclass
class PullReport:
    frames: list[Pulled] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def pulled(self) -> list[Pulled]:
        return [f for f in self.frames if f.problem is None and f.paths]

    @property
    def failed(self) -> list[Pulled]:
        return [f for f in self.frames if f.problem is not None]

    @property
    def exit_code(self) -> int:
        """1 if any frame could not be pulled, else 0."""
        return 1 if self.failed else 0


def pull(
    store: Store,
    bucket: FrameBucket,
    *,
    clock: Clock = time.time,
    on_frame: Callable[[Pulled], None] | None = None,
    exists: Callable[[Path], bool] = Path.exists,
) -> PullReport:
    """Pull every frame of this machine that needs it (see the module docstring).
    ConfigError (the bucket's keys, a missing bucket) stops it: every frame would fail."""
    report = PullReport()
    loaded = store.load_all()
    report.warnings.extend(str(p) for p in loaded.problems)
    for record in loaded.records:
        if not pull_plan(record, exists).wanted:
            continue
        pulled = _pull_one(store, bucket, record, clock, exists)
        if pulled is None:
            continue
        report.frames.append(pulled)
        if on_frame is not None:
            on_frame(pulled)
    return report


def _pull_one(
    store: Store,
    bucket: FrameBucket,
    record: TaskRecord,
    clock: Clock,
    exists: Callable[[Path], bool],
) -> Pulled | None:
    with store.lock(record) as held:
        if not held:
            return Pulled(record, problem="busy in another process; run asyncimg pull again")
        current = store.reload(record)
        if current is None:
            return None  # removed meanwhile
        plan = pull_plan(current, exists)  # again, under the lock
        if plan.problem is not None:
            return Pulled(current, problem=plan.problem)
        if not plan.indexes:
            return None  # written meanwhile
        try:
            files = _write(bucket, plan)
        except ConfigError:
            raise
        except AsyncImgError as exc:
            return Pulled(current, problem=str(exc))
        if waits_for_pull(current):
            _complete(store, current, files, clock())
        return Pulled(current, tuple(Path(f.path) for f in files))


def _write(bucket: FrameBucket, plan: PullPlan) -> list[ResultFile]:
    record = plan.record
    save = saver(record)
    return [
        save(bucket.fetch(record.kept[i]), target)
        for i, target in zip(plan.indexes, plan.targets, strict=True)
    ]


def _complete(store: Store, record: TaskRecord, files: list[ResultFile], now: float) -> None:
    """A task that waited for its kept images, completed with them. One the service had
    forgotten on a machine without storage (failed) goes back in flight first, as a refetch
    of the same task does (its failed attempt stays in its history)."""
    if record.status is TaskState.FAILED:
        record = refetch_record(record, now=now)
        store.save(record)
    store.save(complete(record, now=now, results=files))
