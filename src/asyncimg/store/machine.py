"""Who is asking: this machine's id and the account's, as a shared store records them."""

from __future__ import annotations

import hashlib
import os
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asyncimg.store.record import TaskRecord

MACHINE_ENV = "ASYNCIMG_MACHINE_ID"
ACCOUNT_ENV = "ASYNCIMG_ACCOUNT"


def machine_id() -> str:
    """`$ASYNCIMG_MACHINE_ID`, else the host name: the machine whose disk a frame is for."""
    given = os.environ.get(MACHINE_ENV, "").strip()
    return given or socket.gethostname() or "localhost"


def machine_of(record: TaskRecord) -> str | None:
    """The machine a shared store's record was made on (None for a folder's records)."""
    named = (record.model_extra or {}).get("machine")
    return named if isinstance(named, str) and named else None


def account_id() -> str:
    """The account the shared in-flight cap and rates belong to: `$ASYNCIMG_ACCOUNT`, else a
    digest of the access key id (the key itself is never written anywhere)."""
    given = os.environ.get(ACCOUNT_ENV, "").strip()
    if given:
        return given
    key = os.environ.get("VOLC_ACCESSKEY", "").strip()
    if not key:
        return "default"
    return "ak-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
