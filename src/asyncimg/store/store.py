"""One JSON file per task in a private directory, written so that nothing is ever lost.

- Every write is atomic (temp file, fsync, rename, fsync the directory), mode 0600.
- A pending record lives in ``pending-<local_id>.json``; once the API accepts it, the new
  ``<task_id>.json`` is written *before* the pending file is removed, so a crash in between
  leaves two files (reconciled by :meth:`TaskStore.load_all`), never zero.
- The folder may be the user's: only our own file names are records (task ids, ``pending-*``,
  the guide's ``<task_id>.txt``); everything else is left alone. The folder is created 0700
  when first written to, and its mode is changed only if we created it.
- A record file that cannot be read is read again, left alone while it changed in the last
  ``RECENT_S`` seconds (another program may be writing it), and otherwise moved to
  ``.quarantine/`` with a reason beside it, reported in one line; it never stops the other
  records from loading. A read-only store (``list``, ``show``) only reports it.
- Records from the guide's ``<task_id>.txt`` files keep being written to that same file.
- Idle commands call :meth:`TaskStore.scan`, which serves finished records from a cache
  (``.index``, see :mod:`asyncimg.store.index`) instead of parsing every file.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from asyncimg.fileio import atomic_write, finish_in_thread, fsync_dir, remove_orphan_temps
from asyncimg.i18n import _
from asyncimg.protocol.errors import AsyncImgError, ConfigError
from asyncimg.store.index import (
    INDEX_NAME,
    Entry,
    FileKey,
    RecordSummary,
    dump_index,
    file_key,
    load_index,
    settled,
)
from asyncimg.store.locks import (
    all_slots,
    ensure_private_dir,
    output_slots,
    remove_lock_file,
    try_lock,
    unlock,
)
from asyncimg.store.record import (
    TaskRecord,
    anchor_working_dir,
    legacy_local_id,
    project_relative,
    record_to_json,
    reject_json_constant,
)
from asyncimg.store.states import FINISHED, UNFINISHED

log = logging.getLogger(__name__)

QUARANTINE_DIR = ".quarantine"
LOCKS_DIR = ".locks"
PENDING_PREFIX = "pending-"
RECORD_SUFFIXES = (".json", ".txt")
#: A record file changed this recently that cannot be read is left alone (not quarantined):
#: the guide's scripts or an editor may be writing it in place.
RECENT_S = 5.0
# Errors writing a record that are about the folder itself (permissions, read-only mount).
_FOLDER_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR})
# A file under another name is read (to see if it is a guide record) only up to this size.
_MAX_FOREIGN_BYTES = 1024 * 1024
_MAX_REASON = 300
_SAFE_STEM = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,149}")
# File names only we write: pending-<local_id>.json, <digits>.json (the API's task ids),
# id-<quoted>-<hash>.json (any other id), each optionally .<local_id12> before .json when
# the API repeated an id, and the guide's <task_id>.txt. Any other *.json / *.txt is a
# record only if it reads as one (the guide's scripts named files freely); if it does not,
# it is the user's and is left alone.
_OWN_NAME = re.compile(
    r"pending-[A-Za-z0-9_-]{1,64}\.json"
    r"|(?:\d{1,150}|id-[^/]{1,300}-[0-9a-f]{12})(?:\.[A-Za-z0-9_-]{1,12})?\.json"
    r"|\d{1,150}\.txt"
)

Clock = Callable[[], float]


class TaskNotFound(AsyncImgError, LookupError):
    """No record matches the key the user gave."""


class AmbiguousTaskKey(AsyncImgError, LookupError):
    """A prefix matches more than one record; the message lists them."""


def held_twice(key: str, holders: list[tuple[str | None, str, str]]) -> AmbiguousTaskKey:
    """One line for a task id that several records hold: each record's file (None in a
    store without files), output and local id, and what to give instead."""
    shown = "; ".join(
        _("{file} (output {output}, local id {local_id})").format(
            file=name, output=output, local_id=local_id[:12]
        )
        if name
        else _("output {output}, local id {local_id}").format(output=output, local_id=local_id[:12])
        for name, output, local_id in holders
    )
    return AmbiguousTaskKey(
        _(
            "task id {key} is held by {n} records (the API gave it twice): {shown}; "
            "give the local id of the one you mean instead"
        ).format(key=key, n=len(holders), shown=shown)
    )


class TasksFolderError(ConfigError, OSError):
    """The tasks folder itself cannot be used (a file in its place, no permission, ...).

    An OSError too, so code that keeps a task id safe across a failed record write
    (``RecordNotSaved``) still sees it as one."""


def ambiguous(key: str, matches: list[tuple[str | None, str]]) -> str:
    """The message for a key that matches several tasks ((task_id, local_id) of each)."""
    shown = ", ".join(task_id or _("local {id}").format(id=local) for task_id, local in matches[:5])
    if len(matches) > 5:
        shown += _(" and {n} more").format(n=len(matches) - 5)
    return _("{key!r} matches {n} tasks: {shown}").format(key=key, n=len(matches), shown=shown)


def folder_error(root: Path, exc: OSError) -> TasksFolderError:
    """One line naming the tasks folder, what is wrong and what to do."""
    if isinstance(exc, TasksFolderError):
        return exc
    if isinstance(exc, FileExistsError | NotADirectoryError) or (
        root.exists() and not root.is_dir()
    ):
        what = _("is a file, not a folder")
        if not root.exists() or root.is_dir():
            what = _("cannot be created ({why}: {path})").format(
                why=exc.strerror or exc, path=exc.filename
            )
        todo = _("move that file away, or give another folder with --tasks-dir")
    elif isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
        what = exc.strerror.lower() if exc.strerror else _("permission denied")
        todo = _("make it readable and writable for you (chmod u+rwx), or use --tasks-dir")
    else:
        what = exc.strerror or str(exc)
        todo = _("fix the folder, or give another one with --tasks-dir")
    return TasksFolderError(
        _("tasks folder {root}: {what}; {todo}").format(root=root, what=what, todo=todo)
    )


@dataclass(frozen=True)
class Problem:
    """A record file that could not be loaded. ``str()`` is the one line to show the user."""

    path: Path
    reason: str
    moved_to: Path | None = None

    def __str__(self) -> str:
        if self.moved_to is None:
            return f"{self.path}: {self.reason}"
        return _("{path}: {reason}; moved to {folder}/").format(
            path=self.path, reason=self.reason, folder=self.moved_to.parent
        )


@dataclass
class LoadReport:
    """Everything ``load_all`` found: good records, unreadable files, duplicates cleaned up."""

    records: list[TaskRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    removed_duplicates: list[Path] = field(default_factory=list)


@dataclass
class ScanReport:
    """What ``scan`` found: every task in brief, and the unfinished ones in full.

    ``tasks`` has one summary per task (every state), ``records`` the full record of each
    unfinished one; problems and duplicates are handled exactly as by ``load_all``.
    """

    tasks: list[RecordSummary] = field(default_factory=list)
    records: list[TaskRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    removed_duplicates: list[Path] = field(default_factory=list)
    files_read: int = 0
    """Record files opened and parsed by this scan; the others came from the index."""


@dataclass(frozen=True)
class _Loaded:
    path: Path
    record: TaskRecord


# One readable record file met by a scan; the record is None when it was not read in full.
_Found = tuple[RecordSummary, TaskRecord | None]


class TaskStore:
    """The task directory. Cheap to create; remembers which file each record came from."""

    def __init__(
        self, root: Path | str, *, clock: Clock = time.time, read_only: bool = False
    ) -> None:
        """Nothing is created here: the folder is made when a record is first written.

        ``read_only``: scans never move, remove or write anything (for ``list``, ``show``).
        Raises :class:`TasksFolderError` if ``root`` exists but is not a usable folder.
        """
        self.root = Path(root)
        self.read_only = read_only
        self._clock = clock
        self._names: dict[str, str] = {}  # local_id -> file it was loaded from / saved to
        self._held: dict[str, int] = {}  # local_id -> fd of a lock this store holds
        self._outputs_held: set[int] = set()  # output slots this store holds
        # The index as last read or written by this store, and that file's identity then.
        self._index: dict[str, Entry] = {}
        self._index_key: FileKey | None = None
        self._left_alone: set[tuple[str, int, int]] = set()  # recent unreadable files met
        try:
            if self.root.exists() and not self.root.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(self.root))
        except OSError as exc:
            raise folder_error(self.root, exc) from None

    def ensure_root(self) -> None:
        """Create the folder (0700) if it is missing; a folder the user made is left as is."""
        try:
            ensure_private_dir(self.root)
        except OSError as exc:
            raise folder_error(self.root, exc) from None

    # -- paths ----------------------------------------------------------------------------

    def path_for(self, record: TaskRecord) -> Path:
        """The file ``save`` writes this record to."""
        tracked = self._tracked(record.local_id)
        if tracked is not None and tracked.suffix == ".txt":
            return tracked
        if record.task_id is not None:
            stem = file_stem(record.task_id)
            legacy = self.root / f"{stem}.txt"
            if tracked is None and self._belongs(legacy, record.local_id):
                return legacy
            plain = self.root / f"{stem}.json"
            apart = self.root / f"{stem}.{record.local_id[:12]}.json"
            if tracked == apart or (
                tracked != plain and plain.exists() and not self._belongs(plain, record.local_id)
            ):
                return apart  # the API gave this id to another task of ours too
            return plain
        return self._pending_path(record.local_id)

    def task_id_owner(self, task_id: str, local_id: str) -> Path | None:
        """The file of *another* task that already holds `task_id`, if any (the API repeated
        an id: both records are kept, the second under a name of its own)."""
        stem = file_stem(task_id)
        for path in (self.root / f"{stem}.json", self.root / f"{stem}.txt"):
            if path.is_file() and not self._belongs(path, local_id):
                return path
        return None

    def _tracked(self, local_id: str) -> Path | None:
        """The file this store last loaded or saved the task from or to."""
        name = self._names.get(local_id)
        return None if name is None else self.root / name

    def _pending_path(self, local_id: str) -> Path:
        return self.root / f"{PENDING_PREFIX}{local_id}.json"

    def _lock_path(self, local_id: str) -> Path:
        return self.root / LOCKS_DIR / f"{local_id}.lock"

    # -- writing --------------------------------------------------------------------------

    def save(self, record: TaskRecord) -> Path:
        """Write ``record`` atomically to its file, then remove its older file if it moved."""
        target = self.path_for(record)
        self.ensure_root()
        try:
            atomic_write(target, record_to_json(record, self.root).encode("utf-8"))
        except OSError as exc:
            if exc.errno in _FOLDER_ERRNOS:  # the folder, not this record (a full disk is not)
                raise folder_error(self.root, exc) from None
            raise
        removed = False
        for old in self._other_copies(record, target):
            old.unlink(missing_ok=True)
            removed = True
        if removed:
            fsync_dir(self.root)
        self._names[record.local_id] = target.name
        return target

    async def save_async(self, record: TaskRecord) -> Path:
        """`save` in a worker thread. Safe: one record is saved by the one coroutine that
        holds its lock, and saves of different records touch different files."""
        return await finish_in_thread(self.save, record)

    def _other_copies(self, record: TaskRecord, keep: Path) -> list[Path]:
        """Files holding an earlier version of this record (other than ``keep``)."""
        candidates: list[Path] = []
        tracked = self._tracked(record.local_id)
        if tracked is not None:
            candidates.append(tracked)
        candidates.append(self._pending_path(record.local_id))
        task_ids = [a.task_id for a in record.history if a.task_id]
        if record.task_id:
            task_ids.append(record.task_id)
        for task_id in task_ids:
            candidates.extend(self.root / f"{file_stem(task_id)}{s}" for s in RECORD_SUFFIXES)
        out: list[Path] = []
        for path in dict.fromkeys(candidates):
            if path == keep or not path.exists():
                continue
            # The tracked and pending files are ours by construction; others are checked.
            if path in (tracked, self._pending_path(record.local_id)) or self._belongs(
                path, record.local_id
            ):
                out.append(path)
        return out

    def delete(self, record: TaskRecord) -> None:
        """Remove every file of this record (and its lock file, if nobody holds it)."""
        paths = [self.path_for(record), *self._other_copies(record, keep=Path())]
        for path in dict.fromkeys(paths):
            if path.exists() and self._belongs(path, record.local_id):
                path.unlink(missing_ok=True)
        fsync_dir(self.root)
        self._names.pop(record.local_id, None)
        remove_lock_file(self._lock_path(record.local_id), self._held.get(record.local_id))

    def archive(self, record: TaskRecord, dest_dir: Path | str) -> Path:
        """Move the record's file into ``dest_dir`` (created 0700); returns the new path.

        The copy is written and synced before the original is removed, so it also works
        across file systems and a crash leaves two copies, never none. An existing file of
        the same name in ``dest_dir`` is never overwritten.
        """
        dest_dir = Path(dest_dir)
        ensure_private_dir(dest_dir)
        source = self.path_for(record)
        try:
            data = _moved_record(source.read_bytes(), source.parent, dest_dir)
        except FileNotFoundError:
            data = record_to_json(record, dest_dir).encode("utf-8")
        dest = _free_name(dest_dir, source.name)
        atomic_write(dest, data)
        self.delete(record)
        return dest

    # -- reading --------------------------------------------------------------------------

    def load_all(self) -> LoadReport:
        """Load every record file; quarantine the unreadable ones; reconcile duplicates."""
        report = LoadReport()
        found, _ = self._survey(report.problems, report.removed_duplicates, full=True)
        for _summary, record in found:
            assert record is not None  # every file is read in full
            report.records.append(record)
        return report

    def load_everything(self) -> LoadReport:
        """Every machine's records: a folder holds only this one's (see PgStore)."""
        return self.load_all()

    def scan(self) -> ScanReport:
        """Every task, reading only what may have changed: what idle commands need.

        Like :meth:`load_all` (unreadable files quarantined, duplicates reconciled), but a
        finished record whose file is unchanged since it was last read comes from the
        index as a summary instead of being parsed. Unfinished records are always read.
        """
        report = ScanReport()
        found, report.files_read = self._survey(
            report.problems, report.removed_duplicates, full=False
        )
        for summary, record in found:
            report.tasks.append(summary)
            if summary.status in UNFINISHED:
                assert record is not None  # unfinished records are never cached
                report.records.append(record)
        return report

    def _survey(
        self, problems: list[Problem], removed: list[Path], *, full: bool
    ) -> tuple[list[_Found], int]:
        """One walk of the folder for load_all (``full``) and scan; also refreshes the index.

        Returns the one best copy of each task, in file name order, and the files read.
        """
        with _gc_paused():
            return self._survey_folder(problems, removed, full=full)

    def _survey_folder(
        self, problems: list[Problem], removed: list[Path], *, full: bool
    ) -> tuple[list[_Found], int]:
        started_ns = time.time_ns()
        try:
            # Through a descriptor, each stat (most of a scan's cost) is relative to it.
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return [], 0  # no folder yet: no tasks (and nothing is created)
        except OSError as exc:
            raise folder_error(self.root, exc) from None
        index = self._current_index()
        fresh: dict[str, Entry] = {}
        changed = False
        reads = 0
        found: list[_Found] = []
        try:
            for name, own in self._record_names(fd):
                try:
                    st = os.stat(name, dir_fd=fd)  # not DirEntry.stat: that keeps every result
                except OSError:  # gone meanwhile, or a dangling link
                    continue
                if not own and st.st_size > _MAX_FOREIGN_BYTES:
                    continue  # the user's data file: too big to be a record, not read
                cached = index.get(name)
                if cached is not None and not full and cached[0] == file_key(st):
                    fresh[name] = cached
                    found.append((cached[1], None))
                    continue
                path = self.root / name
                try:
                    outcome, key = _read_record_keyed(path)
                except (FileNotFoundError, IsADirectoryError):
                    continue  # renamed by another process while we listed
                except OSError as exc:
                    if own:
                        why = exc.strerror or exc
                        problems.append(Problem(path, _("cannot read it ({why})").format(why=why)))
                    continue
                reads += 1
                if not own and isinstance(outcome, str):
                    continue  # the user's file, not a record
                if isinstance(outcome, str):
                    outcome, key = self._read_again(path, outcome, key)
                if isinstance(outcome, str):
                    problem = self._unreadable(path, outcome, st)
                    if problem is not None:
                        problems.append(problem)
                    continue
                summary = RecordSummary.of(outcome, path)
                finished = summary.status in FINISHED
                if finished and settled(key, started_ns):
                    fresh[name] = (key, summary)
                    changed = changed or cached is None or cached[0] != key
                found.append((summary, outcome if full or not finished else None))
        finally:
            os.close(fd)
        if not self.read_only:
            if changed or len(fresh) != len(index):
                self._write_index(fresh)
            remove_orphan_temps(self.root)
        return self._reconcile(found, problems, removed), reads

    def _record_names(self, fd: int) -> list[tuple[str, bool]]:
        """The files of the folder open as ``fd`` that may be records, sorted, each with
        whether its name is one only we write (else its content decides)."""
        out: list[tuple[str, bool]] = []
        with os.scandir(fd) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not name.endswith(RECORD_SUFFIXES):
                    continue
                own = _OWN_NAME.fullmatch(name) is not None
                try:
                    if entry.is_file():
                        out.append((name, own))
                except OSError:  # gone meanwhile, a dangling link
                    continue
        out.sort()
        return out

    def _read_again(
        self, path: Path, reason: str, key: FileKey
    ) -> tuple[TaskRecord | str, FileKey]:
        """A second read of a file that could not be parsed (it may have been caught mid
        write by a program that writes in place); the reason stays if it still fails."""
        try:
            outcome, again = _read_record_keyed(path)
        except OSError:
            return reason, key
        return outcome, again

    def _unreadable(self, path: Path, reason: str, st: os.stat_result) -> Problem | None:
        """What to do with a record file that cannot be read: quarantine it, unless this
        store is read-only or the file changed in the last RECENT_S seconds (reported the
        first time this store meets that version of it, then None)."""
        if self.read_only:
            return Problem(path, reason)
        with contextlib.suppress(OSError):
            st = path.stat()
        if self._clock() - st.st_mtime < RECENT_S:
            seen = (path.name, st.st_mtime_ns, st.st_size)
            if seen in self._left_alone:
                return None
            self._left_alone.add(seen)
            return Problem(
                path,
                _("{reason}; changed in the last {seconds:g} s, left alone").format(
                    reason=reason, seconds=RECENT_S
                ),
            )
        return self._quarantine(path, reason)

    def _reconcile(
        self, found: list[_Found], problems: list[Problem], removed: list[Path]
    ) -> list[_Found]:
        """One copy per task: the most advanced; the others removed or set aside."""
        first: dict[str, _Found] = {}
        copies: dict[str, list[_Found]] = {}  # only tasks found in more than one file
        for item in found:
            local_id = item[0].local_id
            seen = first.setdefault(local_id, item)
            if seen is not item:
                copies.setdefault(local_id, [seen]).append(item)
        for local_id, group in copies.items():
            best = max(group, key=lambda c: c[0].progress)
            first[local_id] = best
            for other in group:
                if other is best or self.read_only:
                    continue
                problem = self._drop_duplicate(other[0], best[0])
                if problem is None:
                    removed.append(other[0].path)
                else:
                    problems.append(problem)
        for local_id, (summary, _record) in first.items():
            self._names[local_id] = summary.name
        return list(first.values())

    def _current_index(self) -> dict[str, Entry]:
        """The index's entries: kept in memory while the file is the one this store last
        read or wrote, read again when another process (or the user) changed it."""
        path = self.root / INDEX_NAME
        try:
            with path.open("rb") as fh:
                key = file_key(os.fstat(fh.fileno()))
                if key == self._index_key:
                    return self._index
                data = fh.read()
        except OSError:  # missing (first run, deleted) or unreadable: rebuilt
            self._index, self._index_key = {}, None
            return self._index
        self._index, self._index_key = load_index(data, self.root), key
        return self._index

    def _write_index(self, entries: dict[str, Entry]) -> None:
        """Replace the index; a failure only costs speed (the records are the truth)."""
        path = self.root / INDEX_NAME
        try:
            atomic_write(path, dump_index(entries))
            key = file_key(path.stat())
        except OSError as exc:
            log.debug("could not write %s: %s", path, exc)
            self._index, self._index_key = entries, None
            return
        self._index, self._index_key = entries, key

    def reload(self, record: TaskRecord) -> TaskRecord | None:
        """The latest saved version of ``record`` (another process may have moved it on).

        None if no readable file of it remains. Never quarantines: load_all does that.
        """
        candidates = [self.path_for(record), *self._other_copies(record, keep=Path())]
        found = self._read_matching(candidates, record.local_id)
        if not found:  # e.g. submitted elsewhere under a task_id we do not know yet
            names = self._listed()
            found = self._read_matching(names, record.local_id)
        if not found:
            return None
        best = max(found, key=lambda c: record_progress(c.record))
        self._names[record.local_id] = best.path.name
        return best.record

    def read(self, path: Path) -> TaskRecord | None:
        """The record in one file, or None if it is gone or unreadable (never quarantines:
        load_all does that)."""
        try:
            outcome = _read_record(path)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            return None
        return None if isinstance(outcome, str) else outcome

    def get(self, key: str) -> TaskRecord:
        """The record whose task_id or local_id is ``key`` or starts with it.

        An earlier task_id (from ``history``) also finds the record. Raises
        :class:`TaskNotFound` or :class:`AmbiguousTaskKey`: also for a task id that two
        records hold (the API gave it twice; both are kept), naming both files, since
        either may be the one meant and only the user knows which (its local id picks it).
        Matches on the scan's summaries, then reads the one record found.
        """
        key = key.strip()
        if not key:
            raise TaskNotFound(_("no task key given"))
        tasks = self.scan().tasks
        exact = [t for t in tasks if key in (t.task_id, t.local_id)]
        if len(exact) > 1:  # the API gave this id to more than one of our tasks
            raise held_twice(key, [(t.name, t.output_path, t.local_id) for t in exact])
        matches = exact or [
            t for t in tasks if (t.task_id or "").startswith(key) or t.local_id.startswith(key)
        ]
        if not matches:
            matches = [t for t in tasks if key in t.history_task_ids]
        if len(matches) == 1:
            return self._read_task(matches[0])
        if not matches:
            raise TaskNotFound(
                _("no task matches {key!r} in {root}").format(key=key, root=self.root)
            )
        raise AmbiguousTaskKey(ambiguous(key, [(t.task_id, t.local_id) for t in matches]))

    def _read_task(self, task: RecordSummary) -> TaskRecord:
        """The full record of a task a scan just found (another process may have moved it
        on since: then it is looked for in every file, as ``reload`` does)."""
        found = self._read_matching([task.path], task.local_id)
        if not found:
            found = self._read_matching(self._listed(), task.local_id)
        if not found:
            raise TaskNotFound(
                _("task {task} is gone from {root}").format(
                    task=task.task_id or task.local_id, root=self.root
                )
            )
        best = max(found, key=lambda c: record_progress(c.record))
        self._names[task.local_id] = best.path.name
        return best.record

    # -- locking --------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, record: TaskRecord) -> Iterator[bool]:
        """Try to take the task's lock; yields True if held, False if someone else has it.

        Never blocks and never raises for a busy task: the caller skips it this pass.
        Also False if this same store already holds it (no re-entry), so two coroutines
        of one process exclude each other too.
        """
        local_id = record.local_id
        if local_id in self._held:
            yield False
            return
        self.ensure_root()
        ensure_private_dir(self.root / LOCKS_DIR)
        fd = try_lock(self._lock_path(local_id))
        if fd is None:
            yield False
            return
        self._held[local_id] = fd
        try:
            yield True
        finally:
            self._held.pop(local_id, None)
            unlock(fd)

    @contextlib.contextmanager
    def outputs_lock(self, keys: Collection[str]) -> Iterator[bool]:
        """Try to take the lock on these output files (``.locks/outputs-NN.lock``, one per
        slot of ``locks.output_slots``): all of them or none. Never blocks; False if another
        process, or another caller of this store, holds one of them."""
        self.ensure_root()
        ensure_private_dir(self.root / LOCKS_DIR)

        def take(slot: int) -> int | None:
            return try_lock(self.root / LOCKS_DIR / f"outputs-{slot:02d}.lock")

        with all_slots(output_slots(keys), self._outputs_held, take, unlock) as held:
            yield held

    # -- internals ------------------------------------------------------------------------

    def _listed(self) -> list[Path]:
        """Every file whose name may be a record, sorted (none if there is no folder)."""
        try:
            names = sorted(self.root.iterdir())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise folder_error(self.root, exc) from None
        return [p for p in names if _is_record_name(p.name)]

    def _belongs(self, path: Path, local_id: str) -> bool:
        """Whether ``path`` is a readable record file of the task ``local_id``."""
        try:
            obj = json.loads(path.read_bytes().decode("utf-8-sig"))
        except (OSError, ValueError, RecursionError):
            return False
        return isinstance(obj, dict) and _local_id_of(obj) == local_id

    def _read_matching(self, paths: list[Path], local_id: str) -> list[_Loaded]:
        found: list[_Loaded] = []
        for path in dict.fromkeys(paths):
            try:
                outcome = _read_record(path)
            except (FileNotFoundError, IsADirectoryError):
                continue
            if not isinstance(outcome, str) and outcome.local_id == local_id:
                found.append(_Loaded(path, outcome))
        return found

    def _drop_duplicate(self, stale: RecordSummary, best: RecordSummary) -> Problem | None:
        """Remove an older copy left by a crash; set aside a copy that is not obviously one.

        Obvious: the pending file of the same local_id (crash after submit), or the file of
        an earlier task_id kept in the winner's history (crash after retry).
        """
        expected = {self._pending_path(best.local_id)} | {
            self.root / f"{file_stem(t)}{s}"
            for t in set(best.history_task_ids)
            for s in RECORD_SUFFIXES
        }
        if stale.path in expected:
            stale.path.unlink(missing_ok=True)
            fsync_dir(self.root)
            log.info("removed %s: superseded by %s", stale.path, best.path.name)
            return None
        return self._quarantine(
            stale.path, _("another copy of the task in {name}").format(name=best.path.name)
        )

    def _quarantine(self, path: Path, reason: str) -> Problem:
        """Move an unusable file to ``.quarantine/`` with ``<name>.reason.txt`` beside it."""
        qdir = self.root / QUARANTINE_DIR
        try:
            ensure_private_dir(qdir)
            dest = _free_name(qdir, path.name)
            path.rename(dest)
            fsync_dir(self.root)
        except FileNotFoundError:
            return Problem(path, reason, qdir / path.name)  # another process moved it
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            return Problem(
                path, _("{reason}; could not move it aside ({why})").format(reason=reason, why=why)
            )
        stamp = datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="seconds")
        note = f"{path}: {reason} (set aside {stamp})\n"
        try:
            atomic_write(dest.with_name(dest.name + ".reason.txt"), note.encode("utf-8"))
        except OSError as exc:  # the file is safe already; the note is a courtesy
            log.warning("could not write the reason for %s: %s", dest, exc)
        return Problem(path, reason, dest)


# -- helpers ------------------------------------------------------------------------------


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile. A scan allocates tens of thousands of small
    acyclic objects (stat results, summaries, index rows); with the collector on, a third of
    a scan went to collections that could find nothing to free."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def file_stem(task_id: str) -> str:
    """A safe file name stem for a task_id (the id itself when it is a plain token)."""
    if _SAFE_STEM.fullmatch(task_id):
        return task_id
    digest = hashlib.sha256(task_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"id-{quote(task_id, safe='')[:100]}-{digest}"


def _is_record_name(name: str) -> bool:
    return not name.startswith(".") and name.endswith(RECORD_SUFFIXES)


def _local_id_of(obj: dict[str, Any]) -> str | None:
    local_id = obj.get("local_id")
    if isinstance(local_id, str):
        return local_id
    task_id = obj.get("task_id")
    return legacy_local_id(task_id) if isinstance(task_id, str) and task_id else None


def record_progress(record: TaskRecord) -> tuple[int, bool, int, float]:
    """Orders copies of one task: retries, then acceptance, then submissions, then time."""
    return (len(record.history), record.task_id is not None, record.attempts, record.updated_at)


def _moved_record(data: bytes, source: Path, dest: Path) -> bytes:
    """A record file's bytes for another folder: as they are, unless its `working_dir` is
    relative to `source` (then it is made relative to `dest`, or absolute)."""
    try:
        obj = json.loads(data.decode("utf-8-sig"), parse_constant=reject_json_constant)
    except (ValueError, RecursionError):
        return data
    if not isinstance(obj, dict):
        return data
    anchored = anchor_working_dir(obj, source)
    if anchored is obj:
        return data
    anchored["working_dir"] = project_relative(anchored["working_dir"], dest)
    return (json.dumps(anchored, ensure_ascii=False, indent=2) + "\n").encode("utf-8", "replace")


def _read_record(path: Path) -> TaskRecord | str:
    """The record in ``path``, or a one-line reason it is unusable."""
    return _parse_record(path.read_bytes(), path.parent)


def _read_record_keyed(path: Path) -> tuple[TaskRecord | str, FileKey]:
    """``_read_record``, with the identity of the very file read (fstat of the open file,
    so an index entry never pairs one version's content with another's identity)."""
    with path.open("rb") as fh:
        key = file_key(os.fstat(fh.fileno()))
        data = fh.read()
    return _parse_record(data, path.parent), key


def _parse_record(data: bytes, folder: Path) -> TaskRecord | str:
    """The record in a file's bytes, or a one-line reason it is unusable."""
    if not data.strip():
        return _("empty file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return _("not UTF-8 text (bad byte at offset {offset})").format(offset=exc.start)
    try:
        obj = json.loads(text, parse_constant=reject_json_constant)
    except json.JSONDecodeError as exc:
        return _("not valid JSON (line {line}, column {column})").format(
            line=exc.lineno, column=exc.colno
        )
    except (ValueError, RecursionError) as exc:
        return _one_line(_("not valid JSON ({why})").format(why=exc))
    if not isinstance(obj, dict):
        return _("not a JSON object (found {found})").format(found=_json_type(obj))
    try:
        return TaskRecord.model_validate(anchor_working_dir(obj, folder))
    except ValidationError as exc:
        return _one_line(_("invalid task record: {problems}").format(problems=_summarise(exc)))


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:3]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    if exc.error_count() > 3:
        parts.append(_("{n} more").format(n=exc.error_count() - 3))
    return "; ".join(parts)


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _json_type(obj: object) -> str:
    if isinstance(obj, list):
        return "an array"
    if isinstance(obj, str):
        return "a string"
    if isinstance(obj, bool):
        return "true/false"
    if obj is None:
        return "null"
    return "a number"


def _free_name(directory: Path, name: str) -> Path:
    """``directory/name``, or ``stem.N.suffix`` if that is taken: never overwrite."""
    candidate = directory / name
    n = 1
    while candidate.exists():
        base = Path(name)
        candidate = directory / f"{base.stem}.{n}{base.suffix}"
        n += 1
    return candidate
