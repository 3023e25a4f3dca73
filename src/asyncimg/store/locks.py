"""Per-task advisory locks so two processes never handle one task at the same time.

The lock is an ``flock`` on ``<root>/.locks/<local_id>.lock``, never on the record file:
every atomic save renames a new inode over the record, which would silently drop a lock
held on the old one. Non-blocking by design: a checker that finds a task busy skips it
this pass instead of waiting behind another process.

Output locks (``.locks/outputs-NN.lock``) are held by a submit from its rerun check through
the first save of its new records: one per output folder, hashed into ``OUTPUT_SLOTS``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TypeVar

# A lock file can be unlinked (by delete/archive) between our open() and flock(); then we
# hold a lock nobody else can see. Re-checking the inode and retrying closes that gap.
_MAX_OPEN_RACES = 5


#: How many locks the output folders are spread over (a batch's frames share one folder,
#: so one submit usually takes one; two folders that share a slot only wait for each other).
OUTPUT_SLOTS = 64


def output_slots(keys: Collection[str]) -> list[int]:
    """The output locks that cover these output files (absolute, normalised paths, as
    `lifecycle.validate.output_key` gives them): one per folder, hashed into
    OUTPUT_SLOTS, in ascending order. The same file always maps to the same slot."""
    slots = set()
    for key in keys:
        folder = os.fsencode(Path(key).parent)
        slots.add(int.from_bytes(hashlib.sha256(folder).digest()[:4], "big") % OUTPUT_SLOTS)
    return sorted(slots)


Handle = TypeVar("Handle")


@contextlib.contextmanager
def all_slots(
    slots: list[int],
    held: set[int],
    take: Callable[[int], Handle | None],
    release: Callable[[Handle], None],
) -> Iterator[bool]:
    """The output locks of `slots`, all of them or none: what both stores' `outputs_lock`
    share. `take` tries one slot without blocking (a handle, or None if it is busy),
    `release` frees a taken one; `held` is the caller's set of slots it holds now (one of
    them asked again counts as busy). Yields whether all were taken; frees them after."""
    if any(slot in held for slot in slots):
        yield False
        return
    taken: list[Handle] = []
    try:
        for slot in slots:
            handle = take(slot)
            if handle is None:
                break
            taken.append(handle)
        complete = len(taken) == len(slots)
        if complete:
            held.update(slots)
        try:
            yield complete
        finally:
            if complete:
                held.difference_update(slots)
    finally:
        for handle in taken:
            release(handle)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` 0700 if it is missing (task files hold prompts and paths).

    A folder that exists already is left as it is: it may be the user's own (``--tasks-dir
    .``), whose mode is theirs to choose; only a folder made here is set to 0700.
    """
    if path.is_dir():
        return
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        if path.is_dir():
            return  # made by another process meanwhile
        raise
    if stat.S_IMODE(path.stat().st_mode) != 0o700:  # a umask wider than 077 narrowed it
        path.chmod(0o700)


def try_lock(path: Path, *, create: bool = True) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None if another holder has it.

    With ``create=False`` a missing lock file also gives None.
    """
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    for _ in range(_MAX_OPEN_RACES):
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            if create:
                raise
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == path.stat().st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
    return None


def unlock(fd: int) -> None:
    """Release by closing: flock locks belong to the open file description."""
    with contextlib.suppress(OSError):
        os.close(fd)


def remove_lock_file(path: Path, held_fd: int | None) -> None:
    """Unlink a lock file, but only while holding it (else a live holder would be orphaned)."""
    fd = held_fd if held_fd is not None else try_lock(path, create=False)
    if fd is None:
        return
    try:
        path.unlink(missing_ok=True)
    finally:
        if held_fd is None:
            unlock(fd)
