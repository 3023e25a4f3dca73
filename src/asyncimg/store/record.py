"""The task record: one JSON object per task, compatible with the guide's task files.

The guide's fields come first and keep their meaning (a compatibility promise); ours
follow. Unknown fields are kept (``extra="allow"``) so a newer or older writer's data
survives our rewrite. Records are frozen (assignment fails at runtime and under mypy):
change them only with :func:`asyncimg.store.states.transition`, which validates the whole
result. Do not use ``model_copy(update=...)`` on records: it skips validation. Pure: no I/O.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from asyncimg import constants
from asyncimg.protocol.errors import AsyncImgError
from asyncimg.store.states import (
    NEEDS_TASK_ID,
    NO_TASK_ID,
    IllegalTransition,
    TaskState,
    can_transition,
    retry_record,
    transition,
)

__all__ = [
    "SCHEMA_VERSION",
    "Attempt",
    "ErrorInfo",
    "IllegalTransition",
    "KeptImage",
    "ResultFile",
    "TaskRecord",
    "can_transition",
    "legacy_local_id",
    "record_from_json",
    "record_to_json",
    "retry_record",
    "transition",
]

SCHEMA_VERSION = 1

# Legacy records have no local_id; deriving it from task_id keeps it stable across loads.
_LEGACY_NAMESPACE = uuid.UUID("6f1d7c1e-3a0b-5c8e-9a57-0d2b4c1e8f00")

# Request fields that never belong in `params`: the prompt and images have their own
# fields, and image bytes must never be written to a task file.
_NOT_PARAMS = frozenset({"prompt", "req_key", "binary_data_base64", "image_urls"})

NonEmpty = Annotated[str, Field(min_length=1)]


class ErrorInfo(BaseModel):
    """The last error seen for a task, kept so the user can read why without logs."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    code: int | str | None = None
    kind: str
    message: str
    request_id: str | None = None
    time: float
    retryable: bool = False
    resubmittable: bool = False

    @classmethod
    def from_exception(cls, exc: AsyncImgError, now: float) -> ErrorInfo:
        return cls(
            code=exc.code,
            kind=exc.kind,
            message=exc.message,
            request_id=exc.request_id,
            time=now,
            retryable=exc.retryable,
            resubmittable=exc.resubmittable,
        )


class Attempt(BaseModel):
    """An earlier submission of the same task, kept in ``history`` when it is retried."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    task_id: str | None = None
    submit_time: float | None = None
    status: TaskState
    last_error: ErrorInfo | None = None
    retried_at: float


class CancelInfo(BaseModel):
    """What `asyncimg cancel` asked and got: `outcome` is "cancelled" (the service dropped
    the queued task, or a local frame was withdrawn before it was sent) or "refused"."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    time: float
    outcome: str
    message: str
    code: int | str | None = None
    request_id: str | None = None


class ResultFile(BaseModel):
    """One downloaded and verified image."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    path: str
    sha256: str
    bytes: int
    width: int
    height: int


class KeptImage(BaseModel):
    """One finished image kept in the user's object storage (`[storage]`): the service's
    bytes as they came, under a content-addressed key, so the machine the frame is for can
    write it even after the service has forgotten the task (`asyncimg pull`)."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    key: str
    sha256: str
    bytes: int
    time: float
    machine: str | None = None
    """The machine that kept it."""


class TaskRecord(BaseModel):
    """One task. Field order is the file's key order: the guide's fields first."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)

    # -- the guide's fields (compatibility promise) --
    task_id: NonEmpty | None = None
    output_path: str
    filename: str
    prompt: str
    full_prompt: str
    character_images: list[str] = Field(default_factory=list)
    style: str | None = None
    submit_time: float | None = None
    """Epoch seconds when the API accepted the current task_id."""
    status: TaskState

    # -- ours --
    schema_version: int = SCHEMA_VERSION
    local_id: str = Field(
        default_factory=lambda: uuid.uuid4().hex, pattern=r"^[A-Za-z0-9_-]{1,64}$"
    )
    """Stable identity from the moment the record exists, before any task_id."""
    req_key: str = constants.DEFAULT_REQ_KEY
    params: dict[str, Any] = Field(default_factory=dict)
    """Request fields other than prompt and images (width, height, scale, ...)."""
    attempts: int = Field(default=0, ge=0)
    """Submissions the API accepted."""
    history: list[Attempt] = Field(default_factory=list)
    last_error: ErrorInfo | None = None
    created_at: float
    updated_at: float
    completed_time: float | None = None
    results: list[ResultFile] = Field(default_factory=list)
    download_failures: int = Field(default=0, ge=0)
    """Consecutive passes whose download failed verification (reset on success/retry)."""
    corrupt_since: float | None = None
    """When the first of those corrupt downloads happened (see `decide.corrupt_gives_up`)."""
    stalled_passes: int = Field(default=0, ge=0)
    """Consecutive polls of an accepted task that made no progress (a reply without data,
    an unknown status, an image URL that would not download); reset by any progress."""
    stalled_since: float | None = None
    """When the current run of stalled polls began."""
    submit_started_at: float | None = None
    """Set (on a pending record) just before a submit is sent: if the record is found
    pending with this set and nobody holds its lock, the submitter died mid-request and
    the outcome is unknown (the record becomes unconfirmed)."""
    unconfirmed_resubmits: int = Field(default=0, ge=0)
    """Automatic resubmissions spent after unknown submit outcomes (capped by the config's
    ``max_unconfirmed_resubmits``; `retry` starts it again)."""
    working_dir: str | None = None
    """The folder relative `output_path` / `character_images` were given in (the
    submitter's working directory), so a check run from elsewhere finds the same files.
    None (legacy records): relative to wherever the checker runs, as the guide's tool did."""
    cancel: CancelInfo | None = None
    """The last `asyncimg cancel` of this task: when, and what the service answered."""
    frame_id: str | None = None
    """The batch line's own `id`, if it gave one (the manifest's and gallery's frame id)."""
    batch_file: str | None = None
    """The batch file this frame came from, as given to `submit --batch` (None: one frame
    from the command line or the library)."""
    batch_line: int | None = Field(default=None, ge=1)
    """The frame's line in `batch_file`: the gallery shows frames in this order."""
    references_sent: str | None = None
    """How the last submit sent the reference images: "base64", "url" or None (none sent);
    tells a refusal of base64 references apart (see lifecycle/refmode.py)."""
    kept: list[KeptImage] = Field(default_factory=list)
    """The task's images kept in object storage, in order (empty: none kept). A task still
    in flight with images kept is done at the service but not yet written on its machine
    (see lifecycle/kept.py)."""

    def resolve(self, path: str) -> Path:
        """`path` (one of this record's) as the submitter meant it."""
        given = Path(path).expanduser()
        if given.is_absolute() or self.working_dir is None:
            return given
        return Path(self.working_dir) / given

    @model_validator(mode="before")
    @classmethod
    def _fill_legacy(cls, data: Any) -> Any:
        """Give a guide-era record (task fields only) the fields we need, deterministically."""
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        task_id = filled.get("task_id")
        if filled.get("local_id") is None and isinstance(task_id, str) and task_id:
            filled["local_id"] = legacy_local_id(task_id)
        if filled.get("created_at") is None and filled.get("submit_time") is not None:
            filled["created_at"] = filled["submit_time"]
        if filled.get("updated_at") is None and filled.get("created_at") is not None:
            filled["updated_at"] = filled["created_at"]
        if "attempts" not in filled and isinstance(task_id, str) and task_id:
            filled["attempts"] = 1
        return filled

    @model_validator(mode="after")
    def _check_invariants(self) -> Self:
        if self.status in NEEDS_TASK_ID and self.task_id is None:
            raise ValueError(f"status {self.status.value} needs a task_id")
        if self.status in NO_TASK_ID and self.task_id is not None:
            raise ValueError(
                f"status {self.status.value} cannot have a task_id (the API has not accepted it)"
            )
        banned = sorted(_NOT_PARAMS.intersection(self.params))
        if banned:
            raise ValueError(f"params must not contain {', '.join(banned)}")
        if any(isinstance(v, bytes | bytearray) for v in self.params.values()):
            raise ValueError("params must not contain bytes")
        return self


def legacy_local_id(task_id: str) -> str:
    """The local_id a record without one gets: derived from task_id, so stable across loads."""
    return uuid.uuid5(_LEGACY_NAMESPACE, task_id).hex


def record_to_json(record: TaskRecord, folder: Path | None = None) -> str:
    """The file text: UTF-8 friendly (Chinese stays readable), indent 2, stable key order.

    With `folder` (the tasks folder the file goes in), a `working_dir` inside the project
    (the tasks folder's parent) is written relative to `folder`, so a project folder that
    is moved still writes its images inside itself (see :func:`project_relative`).

    A string that cannot be encoded as UTF-8 (a lone surrogate from a ``\\ud800`` escape)
    falls back to ASCII escapes, so a save never fails and the file still round-trips.
    """
    data = record.model_dump(mode="json")
    if folder is not None and record.working_dir is not None:
        data["working_dir"] = project_relative(record.working_dir, folder)
    text = json.dumps(data, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(data, ensure_ascii=True, indent=2, allow_nan=False) + "\n"
    return text


def record_from_json(text: str | bytes, folder: Path | None = None) -> TaskRecord:
    """Parse and validate one record, as the store reads files; ``ValueError`` if bad.

    Uses :mod:`json` (not pydantic's parser) so that whatever the store accepts on disk,
    e.g. an escaped lone surrogate, this accepts too; NaN/Infinity are refused. With
    `folder` (the folder the file was read from), a relative `working_dir` is made absolute.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8-sig")
    obj = json.loads(text, parse_constant=reject_json_constant)
    if folder is not None and isinstance(obj, dict):
        obj = anchor_working_dir(obj, folder)
    return TaskRecord.model_validate(obj)


def project_relative(working_dir: str, folder: Path) -> str:
    """`working_dir` as a record in `folder` stores it: relative to `folder` when it lies
    in the project (`folder`'s parent or below), else as it is (absolute).

    Absolute paths are compared as typed (not resolved), so a symlinked project stays
    relative to the link the user works through.
    """
    given = Path(working_dir)
    if not given.is_absolute():
        return working_dir
    tasks = _lexical(folder)
    project = tasks.parent
    where = _lexical(given)
    if where == project or where.is_relative_to(project):
        return os.path.relpath(where, tasks)
    return working_dir


def anchor_working_dir(obj: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A record object read from `folder`, its relative `working_dir` made absolute.
    Records written before paths were stored relative keep their absolute folder."""
    working_dir = obj.get("working_dir")
    if isinstance(working_dir, str) and working_dir and not Path(working_dir).is_absolute():
        return {**obj, "working_dir": str(_lexical(folder / working_dir))}
    return obj


def _lexical(path: Path) -> Path:
    """Absolute, with `..` and `.` taken out by name (symlinks are not followed)."""
    return Path(os.path.normpath(path.absolute()))


def reject_json_constant(name: str) -> Any:
    """`json.loads(parse_constant=...)`: NaN and Infinity are not valid record values."""
    raise ValueError(f"{name} is not allowed in a task file")
