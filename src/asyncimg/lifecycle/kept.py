"""Finished images kept in the user's object storage, and written back from it.

With `[storage]` configured (and `keep_frames`, on by default), every finished image is
also put in the bucket: the service's bytes as they came, under
`<frames_prefix><sha256>.<ext>` (content-addressed, so two machines keeping one image
store it once), and listed in the record's `kept` (key, sha256, size). Then:

- the machine a frame is for keeps it as it downloads it (`check.Checker`);
- on a shared store, a monitor or check on another machine keeps the finished frames that
  no monitor polls (its owner is off), without writing the owner's files (`keeper.py`);
- the owner writes a kept image from the bucket when the service no longer has the result
  (the task `not_found`/`expired`, its URL 403/404/410), or with `asyncimg pull`
  (`pull.py`), so a machine off for longer than the service's retention still gets it.

Decisions here are pure (`pull_plan`); `FrameBucket` is the I/O (boto3 through
`ref_upload.ObjectStorage`, synchronous: call it in a thread from async code).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from asyncimg.lifecycle.download import result_path
from asyncimg.lifecycle.ref_upload import ObjectStorage
from asyncimg.lifecycle.refmode import StorageConfig, StorageSettings, storage_settings
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.record import KeptImage, TaskRecord
from asyncimg.store.states import IN_FLIGHT, TaskState

Clock = Callable[[], float]
StorageFactory = Callable[[StorageSettings], ObjectStorage]


class NotInStorage(AsyncImgError):
    """A kept image is not in the bucket (deleted, a lifecycle rule, another bucket), or
    its bytes are not the ones recorded."""

    resubmittable = True
    hint = "the kept copy is gone too; resubmit with asyncimg retry"


def waits_for_pull(record: TaskRecord) -> bool:
    """Kept in storage and not written on its machine: done at the service but still in
    flight here (its machine's monitor writes it from the service's URL, or from the
    bucket), or failed because the service forgot it on a machine without `[storage]`."""
    if not record.kept:
        return False
    if record.status in IN_FLIGHT:
        return True
    error = record.last_error
    return record.status is TaskState.FAILED and error is not None and error.kind == "TaskGone"


@dataclass(frozen=True)
class PullPlan:
    """What `asyncimg pull` does for one record: write `indexes` (of `record.kept`) to
    `targets`, or nothing (`indexes` empty), or say why it cannot (`problem`)."""

    record: TaskRecord
    indexes: tuple[int, ...] = ()
    targets: tuple[Path, ...] = ()
    problem: str | None = None

    @property
    def wanted(self) -> bool:
        return bool(self.indexes) or self.problem is not None


def pull_plan(record: TaskRecord, exists: Callable[[Path], bool]) -> PullPlan:
    """Which images of `record` `pull` writes: every kept one of a task waiting for it
    (done at the service, kept, not written here); for a completed task, the kept ones
    whose file is missing. A completed task missing a file that was never kept cannot be
    pulled (`problem`); anything else has nothing to pull."""
    output = record.resolve(record.output_path)
    if waits_for_pull(record):
        indexes = tuple(range(len(record.kept)))
        return PullPlan(record, indexes, tuple(result_path(output, i) for i in indexes))
    if record.status is not TaskState.COMPLETED:
        return PullPlan(record)
    count = max(len(record.kept), len(record.results), 1)
    missing = [i for i in range(count) if not exists(result_path(output, i))]
    if not missing:
        return PullPlan(record)
    if any(i >= len(record.kept) for i in missing):
        return PullPlan(
            record,
            problem="its image is missing and was never kept in storage (finished before "
            "keeping was on, or [storage] keep_frames is false)",
        )
    return PullPlan(record, tuple(missing), tuple(result_path(output, i) for i in missing))


def image_format(data: bytes) -> str:
    """Pillow's name for the image format of `data` ("PNG", "JPEG", ...), or "" if unknown."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            return probe.format or ""
    except Exception:  # any undecodable header: kept under a .bin key
        return ""


class FrameBucket:
    """Keeps images in, and fetches them from, the `[storage]` bucket (thread-safe)."""

    def __init__(
        self,
        settings: StorageSettings,
        env: Mapping[str, str] | None = None,
        *,
        machine: str | None = None,
        clock: Clock = time.time,
        storage_factory: StorageFactory | None = None,
    ) -> None:
        self.settings = settings
        self.machine = machine
        self._env = env
        self._clock = clock
        self._factory = storage_factory
        self._storage: ObjectStorage | None = None
        self._guard = threading.Lock()

    @property
    def keeps(self) -> bool:
        """Whether finished images are kept (`[storage] keep_frames`)."""
        return self.settings.keep_frames

    def describe(self) -> str:
        return f"{self.settings.endpoint} bucket {self.settings.bucket}"

    def keep(self, data: bytes) -> KeptImage:
        """Put `data` (one image, as the service sent it) in the bucket unless it is there
        already; what the record lists for it. ConfigError (keys, bucket) or ConnectFailed."""
        key = self._bucket().ensure(data, image_format(data))
        return KeptImage(
            key=key,
            sha256=hashlib.sha256(data).hexdigest(),
            bytes=len(data),
            time=self._clock(),
            machine=self.machine,
        )

    def fetch(self, kept: KeptImage) -> bytes:
        """The kept image's bytes, checked against the record; NotInStorage if the object
        is gone or differs, ConfigError / ConnectFailed if the bucket cannot be read."""
        data = self._bucket().get(kept.key, kept.bytes + 1)
        where = f"{self.describe()}: {kept.key}"
        if data is None:
            raise NotInStorage(f"{where} is not in storage")
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != kept.bytes or digest != kept.sha256:
            raise NotInStorage(
                f"{where} is not the image kept for this task (sha256 {digest[:12]}…, "
                f"expected {kept.sha256[:12]}…)"
            )
        return data

    def _bucket(self) -> ObjectStorage:
        with self._guard:
            if self._storage is None:
                frames = replace(self.settings, prefix=self.settings.frames_prefix)
                if self._factory is not None:
                    self._storage = self._factory(frames)
                else:
                    self._storage = ObjectStorage(frames, self._env)
            return self._storage


def open_bucket(
    config: StorageConfig,
    *,
    machine: str | None = None,
    env: Mapping[str, str] | None = None,
    clock: Clock = time.time,
    keeping: bool = False,
) -> FrameBucket | None:
    """The bucket images are kept in (`[storage]`, with the environment's overrides), or
    None: no endpoint and bucket, or (`keeping`) `keep_frames` off. Nothing is contacted
    until it is used."""
    settings = storage_settings(config, os.environ if env is None else env)
    if settings is None or (keeping and not settings.keep_frames):
        return None
    return FrameBucket(settings, env, machine=machine, clock=clock)
