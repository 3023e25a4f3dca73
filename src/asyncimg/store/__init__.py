"""Task records, their state machine and the on-disk store (one JSON file per task)."""

from __future__ import annotations

from asyncimg.store.index import ErrorSummary, RecordSummary
from asyncimg.store.record import (
    SCHEMA_VERSION,
    Attempt,
    ErrorInfo,
    ResultFile,
    TaskRecord,
    legacy_local_id,
    record_from_json,
    record_to_json,
)
from asyncimg.store.states import (
    REVIVALS,
    TRANSITIONS,
    IllegalTransition,
    TaskState,
    can_transition,
    is_revival,
    refetch_record,
    resubmit_unconfirmed,
    retry_record,
    transition,
)
from asyncimg.store.store import (
    AmbiguousTaskKey,
    LoadReport,
    Problem,
    ScanReport,
    TaskNotFound,
    TaskStore,
)

__all__ = [
    "REVIVALS",
    "SCHEMA_VERSION",
    "TRANSITIONS",
    "AmbiguousTaskKey",
    "Attempt",
    "ErrorInfo",
    "ErrorSummary",
    "IllegalTransition",
    "LoadReport",
    "Problem",
    "RecordSummary",
    "ResultFile",
    "ScanReport",
    "TaskNotFound",
    "TaskRecord",
    "TaskState",
    "TaskStore",
    "can_transition",
    "is_revival",
    "legacy_local_id",
    "record_from_json",
    "record_to_json",
    "refetch_record",
    "resubmit_unconfirmed",
    "retry_record",
    "transition",
]
