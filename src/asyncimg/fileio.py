"""Crash-safe file writes, shared by the task store and the image downloader.

A temp file's name is short and says who wrote it: ``.aimg-<pid>-<start>-<rand>.tmp``
(``.part`` for images), where ``<start>`` is the writer's process start time (clock ticks
since boot, from ``/proc``), so a later pass can tell a writer that still runs from one
that was killed mid-write and remove only the latter's leftovers
(:func:`remove_orphan_temps`). Short names also leave the target's name all of NAME_MAX.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

TEMP_PREFIX = ".aimg-"
TEMP_SUFFIXES = (".tmp", ".part")
_TEMP_NAME = re.compile(r"\.aimg-(\d{1,10})-(\d{1,20})-[0-9a-f]{8}\.(?:tmp|part)")
# The name format before temp names carried their writer: ".<target>.<8 hex><suffix>".
_OLD_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{8}\.(?:tmp|part)", re.DOTALL)
#: Old-format temp files (no writer in the name) are removed once this old.
OLD_TEMP_S = 3600.0


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (``/proc/PID/stat``
    field 22), or None if there is no such process (or no /proc)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


@cache
def _own_start(pid: int) -> int:
    return process_start(pid) or 0


def temp_name(suffix: str = ".tmp") -> str:
    """A fresh temp file name for this process (at most ~50 bytes)."""
    pid = os.getpid()  # per call: a forked child is another writer
    return f"{TEMP_PREFIX}{pid}-{_own_start(pid)}-{secrets.token_hex(4)}{suffix}"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is a temp file name this module makes (either format)."""
    return bool(_TEMP_NAME.fullmatch(name))


def writer_alive(name: str) -> bool:
    """Whether the process that made temp file ``name`` still runs (True if unsure)."""
    match = _TEMP_NAME.fullmatch(name)
    if match is None:
        return True
    pid, start = int(match.group(1)), int(match.group(2))
    now = process_start(pid)
    if now is None:
        return not Path("/proc/self/stat").exists() and _pid_exists(pid)
    return start == 0 or now == start


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphan_temps(folder: Path, *, old_format_for: frozenset[str] = frozenset()) -> int:
    """Remove the temp files in ``folder`` whose writer no longer runs; returns how many.

    Old-format temp files (``.<target>.<8 hex>.part``) say nothing of their writer; they
    are removed once ``OLD_TEMP_S`` old, and only for the targets in ``old_format_for``
    (names of files we own) or, with no targets given, any such ``.tmp``.
    """
    removed = 0
    cutoff = time.time() - OLD_TEMP_S
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or not name.endswith(TEMP_SUFFIXES):
            continue
        try:
            if _TEMP_NAME.fullmatch(name):
                if writer_alive(name) or not entry.is_file(follow_symlinks=False):
                    continue
            elif _OLD_TEMP_NAME.fullmatch(name):
                target = name[1:].rsplit(".", 2)[0]
                ours = target in old_format_for or (not old_format_for and name.endswith(".tmp"))
                if not ours or not entry.is_file(follow_symlinks=False):
                    continue
                if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                    continue
            else:
                continue
            Path(entry.path).unlink()
            removed += 1
        except OSError:  # gone meanwhile, or not ours to remove
            continue
    return removed


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, suffix: str = ".tmp") -> None:
    """Write `data` to `path` so a reader sees the old file or the new one, never a mix.

    A temp file beside the target (created with `mode`, never wider), fsync, rename, then
    fsync the folder so the rename survives a power cut.
    """
    tmp = path.with_name(temp_name(suffix))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def finish_in_thread(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a blocking write in a worker thread, off the event loop. A cancel (Ctrl+C) waits
    for the thread to finish first: no temp file is left behind, and no write lands after
    the caller has let go of the record's lock."""
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await job
        raise
