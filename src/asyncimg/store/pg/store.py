"""Task records as rows of a PostgreSQL table, shared by every machine of one account.

Each row holds the whole record as JSONB (the same fields as a task file) plus the
columns the queue selects on (status, batch, machine, account, model). Rules:

- every save is one transaction that locks the row, checks that the version this store
  read is still the row's (:class:`StaleRecord` otherwise) and that the state machine
  allows the move (``states.can_transition``, or a revival, ``states.REVIVALS``, that
  kept the row's attempt in ``history``), then writes version + 1;
- ``lock`` is a *lease*: the row names its holder until a time; a machine that dies
  holding one loses it when it expires, and another monitor takes the task over. While a
  lock is held inside an event loop, a heartbeat renews it every third of the lease, so a
  submit or download longer than the lease keeps it; a holder whose lease was taken over
  anyway (its heartbeat stalled) has its next save of that record refused;
- a task is worked (submitted, polled, its image written) only on the machine that asked
  for it, or on any machine when every path it names lies under a shared folder.

Credentials live only in the URL or the standard ``PG*`` variables; ``describe`` never
shows a password.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.types.json import Jsonb

from asyncimg.fileio import atomic_write
from asyncimg.i18n import _
from asyncimg.protocol.errors import ConfigError
from asyncimg.store.base import StaleRecord
from asyncimg.store.index import RecordSummary
from asyncimg.store.locks import all_slots, ensure_private_dir, output_slots
from asyncimg.store.machine import account_id, machine_id, machine_of
from asyncimg.store.pg.schema import migrate
from asyncimg.store.record import TaskRecord, record_to_json
from asyncimg.store.states import (
    IN_FLIGHT,
    UNFINISHED,
    IllegalTransition,
    TaskState,
    can_transition,
    is_revival,
)
from asyncimg.store.store import (
    AmbiguousTaskKey,
    LoadReport,
    ScanReport,
    TaskNotFound,
    ambiguous,
    held_twice,
)

#: How long a lease (a task's lock) lasts: a dead holder's passes after this. A live holder
#: renews it every third of it (the heartbeat), so one submit may take longer.
DEFAULT_LEASE_S = 300.0
LEASE_ENV = "ASYNCIMG_LEASE_S"
SHARED_ENV = "ASYNCIMG_SHARED_DIRS"
SCHEMES = ("postgresql", "postgres")

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
_COLUMNS = "record, version"
#: A row whose images are kept in object storage (lifecycle/kept.py): done at the service,
#: so it holds no slot on the account even while it waits for its machine.
KEPT_SQL = "coalesce(record->'kept', '[]'::jsonb) <> '[]'::jsonb"
# The first key of the output locks' advisory locks (two-integer keys: a space of their own,
# apart from the one-integer keys of the migrations and the claims).
_OUTPUTS_LOCK = 0x41494D47


class StoreUnavailable(OSError):
    """The database cannot be reached or refused a statement: nothing was written."""


def is_pg_url(location: str) -> bool:
    return urlsplit(location).scheme in SCHEMES


def redact(url: str) -> str:
    """The URL with any password removed (what may be printed)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[1]}"))


def shared_dirs_from_env() -> tuple[Path, ...]:
    raw = os.environ.get(SHARED_ENV, "")
    return tuple(Path(p).expanduser().absolute() for p in raw.split(os.pathsep) if p.strip())


def lease_from_env() -> float:
    raw = os.environ.get(LEASE_ENV, "").strip()
    if not raw:
        return DEFAULT_LEASE_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            _("{name}: {value!r} is not a number of seconds").format(name=LEASE_ENV, value=raw)
        ) from None
    if not 0 < value < 86400:
        raise ConfigError(
            _("{name}: {value!r} must be between 0 and 86400 seconds").format(
                name=LEASE_ENV, value=raw
            )
        )
    return value


def batch_of(record: TaskRecord) -> str:
    """The batch a frame belongs to: its ``batch`` field if it has one, else its output
    folder (a chapter's frames share one)."""
    extra = (record.model_extra or {}).get("batch")
    if isinstance(extra, str) and extra:
        return extra
    return str(record.resolve(record.output_path).parent)


def priority_of(record: TaskRecord) -> int | None:
    """A priority the record itself carries (None: the batch's, kept in its rows)."""
    extra = (record.model_extra or {}).get("priority")
    return extra if isinstance(extra, int) and not isinstance(extra, bool) else None


def paths_of(record: TaskRecord) -> list[Path]:
    """Every local path a task reads or writes, as its submitter meant them."""
    return [record.resolve(p).absolute() for p in (record.output_path, *record.character_images)]


def workable(record: TaskRecord, machine: str, shared: Sequence[Path]) -> bool:
    """Whether `machine` may submit, poll and write this task: its own, or every path on a
    shared folder."""
    owner = machine_of(record)
    if owner is None or owner == machine:
        return True
    return bool(shared) and all(
        any(p == d or d in p.parents for d in shared) for p in paths_of(record)
    )


@dataclass
class _Row:
    record: TaskRecord
    version: int


class PgStore:
    """The shared store. One connection, used from one thread (asyncimg's event loop)."""

    def __init__(
        self,
        url: str,
        *,
        machine: str | None = None,
        shared_dirs: Sequence[Path] | None = None,
        lease_s: float | None = None,
        account: str | None = None,
        clock: Clock = time.time,
        state_dir: Path | None = None,
        heartbeat_sleep: Sleep = asyncio.sleep,
    ) -> None:
        """``heartbeat_sleep``: how the lease heartbeat waits between renewals (tests pass
        one they release by hand)."""
        self.url = url
        self.machine = machine or machine_id()
        self.shared_dirs = tuple(shared_dirs if shared_dirs is not None else shared_dirs_from_env())
        self.lease_s = lease_s if lease_s is not None else lease_from_env()
        self.account = account or account_id()
        self._clock = clock
        self.owner = f"{self.machine}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._versions: dict[str, int] = {}
        self._held: set[str] = set()
        self._lost: set[str] = set()  # held, but the lease was found taken by another owner
        self._outputs_held: set[int] = set()
        self._heartbeat_sleep = heartbeat_sleep
        self._heartbeat: asyncio.Task[None] | None = None
        digest = hashlib.sha256(redact(url).encode("utf-8")).hexdigest()[:12]
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        # Never created: records live in the database; it only names them (RecordSummary).
        self.root = state_dir or base / "asyncimg" / f"pg-{digest}"
        try:
            self.conn: psycopg.Connection[Any] = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise ConfigError(
                _("cannot open the store {url}: {why}").format(url=redact(url), why=_one_line(exc))
            ) from None
        try:
            migrate(self.conn)
        except psycopg.Error as exc:
            self.conn.close()
            raise ConfigError(
                _("cannot prepare the store {url}: {why}").format(
                    url=redact(url), why=_one_line(exc)
                )
            ) from None

    def close(self) -> None:
        self.conn.close()

    def describe(self) -> str:
        return f"--store {redact(self.url)}"

    # -- writing --------------------------------------------------------------------------

    async def save_async(self, record: TaskRecord) -> Path:
        """`save` on the event loop's thread: the one connection is used from one thread."""
        return self.save(record)

    def save(self, record: TaskRecord) -> Path:
        known = self._versions.get(record.local_id)
        try:
            with self.conn.transaction():
                row = self.conn.execute(
                    "SELECT version, status, machine, lease_owner, task_id,"
                    " jsonb_array_length(coalesce(record->'history', '[]'::jsonb))"
                    " FROM tasks WHERE local_id = %s FOR UPDATE",
                    (record.local_id,),
                ).fetchone()
                if row is not None and record.local_id in self._held:
                    self._refuse_a_lost_lease(record, None if row[3] is None else str(row[3]))
                record = self._owned(record, None if row is None else str(row[2]))
                data = json.loads(record_to_json(record))
                held = record.local_id in self._held
                if row is None:
                    version = 1
                    self.conn.execute(
                        "INSERT INTO tasks (local_id, task_id, status, machine, batch, priority,"
                        " account, req_key, created_at, updated_at, version, seq, record,"
                        " lease_owner, lease_until)"
                        " VALUES (%s, %s, %s, %s, %s, coalesce(%s, (SELECT max(priority)"
                        " FROM tasks WHERE batch = %s), 0), %s, %s, %s, %s, 1,"
                        " nextval('tasks_seq'), %s, %s,"
                        " clock_timestamp() + make_interval(secs => %s))",
                        (
                            record.local_id,
                            record.task_id,
                            record.status.value,
                            machine_of(record),
                            batch_of(record),
                            priority_of(record),
                            batch_of(record),
                            self.account,
                            record.req_key,
                            record.created_at,
                            record.updated_at,
                            Jsonb(data),
                            self.owner if held else None,
                            self.lease_s if held else None,
                        ),
                    )
                else:
                    version, status = int(row[0]), TaskState(row[1])
                    if known is None or known != version:
                        raise StaleRecord(
                            f"task {record.task_id or record.local_id} was changed by another "
                            f"process (version {version}, this one read "
                            f"{known if known is not None else 'none'})"
                        )
                    held_id = None if row[4] is None else str(row[4])
                    if status is not record.status and not _may_move(
                        status, held_id, int(row[5]), record
                    ):
                        raise IllegalTransition(
                            record.task_id or record.local_id, status, record.status
                        )
                    version += 1
                    # A monitor's claim to poll the task (gate.may_poll) lasts while it
                    # flies: a task that finishes, or is sent again (`retry`), has no poller,
                    # or the next monitor would wait out a claim of one that has ended.
                    flying = status in IN_FLIGHT and record.status in IN_FLIGHT
                    self.conn.execute(
                        "UPDATE tasks SET task_id = %s, status = %s, batch = %s,"
                        " priority = coalesce(%s, priority),"
                        " req_key = %s, updated_at = %s, version = %s,"
                        " poll_owner = CASE WHEN %s THEN poll_owner END,"
                        " poll_until = CASE WHEN %s THEN poll_until END,"
                        " seq = nextval('tasks_seq'), record = %s WHERE local_id = %s",
                        (
                            record.task_id,
                            record.status.value,
                            batch_of(record),
                            priority_of(record),
                            record.req_key,
                            record.updated_at,
                            version,
                            flying,
                            flying,
                            Jsonb(data),
                            record.local_id,
                        ),
                    )
        except psycopg.Error as exc:
            raise StoreUnavailable(
                _("the store refused the write: {why}").format(why=_one_line(exc))
            ) from None
        self._versions[record.local_id] = version
        return self._path(record.local_id)

    def _refuse_a_lost_lease(self, record: TaskRecord, lease_owner: str | None) -> None:
        """A record this store holds the lock of, whose row another owner leased meanwhile
        (our lease ran out first: a heartbeat that could not run): that owner may be
        submitting or writing it, so this save must not go through."""
        if lease_owner == self.owner and record.local_id not in self._lost:
            return
        raise StaleRecord(
            f"task {record.task_id or record.local_id}: its lease ran out and another process "
            f"took it over while this one was working on it; nothing was written"
        )

    def _owned(self, record: TaskRecord, row_machine: str | None) -> TaskRecord:
        """The record with its machine named: the row's, else (a new record) this one."""
        if machine_of(record) is not None:
            return record
        data = record.model_dump()
        data["machine"] = row_machine or self.machine
        return TaskRecord.model_validate(data)

    def delete(self, record: TaskRecord) -> None:
        self._run("DELETE FROM tasks WHERE local_id = %s", (record.local_id,))
        self._versions.pop(record.local_id, None)

    def archive(self, record: TaskRecord, dest_dir: Path | str) -> Path:
        """Write the record as a task file into `dest_dir` (0700), then delete its row."""
        dest_dir = Path(dest_dir)
        ensure_private_dir(dest_dir)
        current = self.reload(record) or record
        name = f"{current.task_id or 'pending-' + current.local_id}.json"
        dest = dest_dir / name
        n = 1
        while dest.exists():
            dest = dest_dir / f"{Path(name).stem}.{n}.json"
            n += 1
        atomic_write(dest, record_to_json(current).encode("utf-8"))
        self.delete(current)
        return dest

    # -- reading --------------------------------------------------------------------------

    def load_all(self) -> LoadReport:
        """Every task this machine works on (its own, and those on shared folders)."""
        report = LoadReport()
        if self.shared_dirs:
            rows = self._rows("SELECT record, version FROM tasks ORDER BY created_at, local_id")
        else:
            rows = self._rows(
                "SELECT record, version FROM tasks WHERE machine = %s"
                " ORDER BY created_at, local_id",
                (self.machine,),
            )
        report.records = [r.record for r in rows if self.may_work(r.record)]
        return report

    def load_everything(self) -> LoadReport:
        """Every task of every machine (for `migrate`)."""
        report = LoadReport()
        rows = self._rows("SELECT record, version FROM tasks ORDER BY created_at, local_id")
        report.records = [r.record for r in rows]
        return report

    def scan(self) -> ScanReport:
        """Every task of every machine, unfinished ones in full (what `list` shows)."""
        report = ScanReport()
        rows = self._rows("SELECT record, version FROM tasks ORDER BY created_at, local_id")
        for row in rows:
            report.tasks.append(RecordSummary.of(row.record, self._path(row.record.local_id)))
            if row.record.status in UNFINISHED:
                report.records.append(row.record)
        report.files_read = len(rows)
        return report

    def reload(self, record: TaskRecord) -> TaskRecord | None:
        rows = self._rows(
            "SELECT record, version FROM tasks WHERE local_id = %s", (record.local_id,)
        )
        return rows[0].record if rows else None

    def read(self, path: Path) -> TaskRecord | None:
        rows = self._rows("SELECT record, version FROM tasks WHERE local_id = %s", (path.stem,))
        return rows[0].record if rows else None

    def get(self, key: str) -> TaskRecord:
        key = key.strip()
        if not key:
            raise TaskNotFound(_("no task key given"))
        queries = (
            "SELECT record, version FROM tasks WHERE task_id = %s OR local_id = %s",
            "SELECT record, version FROM tasks WHERE starts_with(task_id, %s)"
            " OR starts_with(local_id, %s) ORDER BY created_at",
            "SELECT record, version FROM tasks WHERE record->'history' @> jsonb_build_array("
            "jsonb_build_object('task_id', %s::text)) AND %s::text IS NOT NULL",
        )
        for n, query in enumerate(queries):
            rows = self._rows(query, (key, key))
            if len(rows) == 1:
                return rows[0].record
            if rows and n == 0:  # the API gave this id to more than one of our tasks
                raise held_twice(
                    key, [(None, r.record.output_path, r.record.local_id) for r in rows]
                )
            if rows:
                raise AmbiguousTaskKey(
                    ambiguous(key, [(r.record.task_id, r.record.local_id) for r in rows])
                )
        raise TaskNotFound(
            _("no task matches {key!r} in {root}").format(key=key, root=redact(self.url))
        )

    def task_id_owner(self, task_id: str, local_id: str) -> Path | None:
        row = self._run(
            "SELECT local_id FROM tasks WHERE task_id = %s AND local_id <> %s LIMIT 1",
            (task_id, local_id),
        ).fetchone()
        return None if row is None else self._path(str(row[0]))

    def changed_since(
        self, seq: int, *, every_machine: bool = False
    ) -> tuple[list[TaskRecord], int]:
        """Records this machine works on (``every_machine``: every record) written after
        `seq`, and the newest seq seen: how a monitor picks up what other processes and
        machines did, and how `serve` keeps its page current."""
        cur = self._run(
            "SELECT record, version, seq FROM tasks WHERE seq > %s ORDER BY seq", (seq,)
        )
        out: list[TaskRecord] = []
        for data, version, row_seq in cur.fetchall():
            record = self._parse(data, int(version))
            seq = max(seq, int(row_seq))
            if every_machine or self.may_work(record):
                out.append(record)
        return out, seq

    def unwatched(self) -> list[TaskRecord]:
        """This account's accepted, unfinished tasks that other machines asked for (and
        this one may not work on), that no monitor polls or holds now and none of whose
        images is kept yet: what a keeper looks after (lifecycle/keeper.py)."""
        rows = self._rows(
            "SELECT record, version FROM tasks WHERE status IN ('submitted', 'processing')"
            " AND account = %s AND machine IS DISTINCT FROM %s"
            " AND (poll_owner IS NULL OR poll_until < clock_timestamp())"
            " AND (lease_owner IS NULL OR lease_until < clock_timestamp())"
            f" AND NOT ({KEPT_SQL}) ORDER BY created_at, local_id",
            (self.account, self.machine),
        )
        return [r.record for r in rows if not self.may_work(r.record)]

    def count(self) -> int:
        """How many records the store holds (every machine's): with `changed_since`, how a
        reader notices records removed (`clean`, `migrate`), which leave no seq behind."""
        row = self._run("SELECT count(*) FROM tasks").fetchone()
        return int(row[0]) if row is not None else 0

    def set_priority(self, batch: str, priority: int) -> int:
        """Give every frame of `batch` `priority` (frames added to it later inherit it); the
        number of frames. Only the column changes: a record being submitted meanwhile is
        not disturbed (its version is untouched)."""
        cur = self._run("UPDATE tasks SET priority = %s WHERE batch = %s", (priority, batch))
        return cur.rowcount

    def may_work(self, record: TaskRecord) -> bool:
        return workable(record, self.machine, self.shared_dirs)

    # -- leases ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, record: TaskRecord) -> Iterator[bool]:
        """Take the task's lease; yields False if another process or machine holds it, or if
        this machine may not work on the task. A lease outlives a dead holder by at most
        ``lease_s``."""
        local_id = record.local_id
        if local_id in self._held:
            yield False
            return
        # Whose it is comes from the row (not from the caller's copy); the version this
        # store read is left alone, so a save of a stale copy is still refused.
        row = self._run("SELECT record FROM tasks WHERE local_id = %s", (local_id,)).fetchone()
        if not self.may_work(TaskRecord.model_validate(row[0]) if row else record):
            yield False
            return
        with self.hold(record) as held:
            yield held

    @contextlib.contextmanager
    def hold(self, record: TaskRecord) -> Iterator[bool]:
        """The task's lease, whichever machine it is for: :meth:`lock` without the machine
        check. Only a keeper uses it directly, to write nothing but the record's `kept`."""
        local_id = record.local_id
        if local_id in self._held:
            yield False
            return
        row = self._run(
            "UPDATE tasks SET lease_owner = %s,"
            " lease_until = clock_timestamp() + make_interval(secs => %s)"
            " WHERE local_id = %s AND (lease_owner IS NULL OR lease_owner = %s"
            " OR lease_until < clock_timestamp()) RETURNING version",
            (self.owner, self.lease_s, local_id, self.owner),
        ).fetchone()
        if row is None:
            exists = self._run("SELECT 1 FROM tasks WHERE local_id = %s", (local_id,)).fetchone()
            if exists is not None:
                yield False
                return
        self._held.add(local_id)
        self._beat_while_held()
        try:
            yield True
        finally:
            self._held.discard(local_id)
            self._lost.discard(local_id)
            if not self._held and self._heartbeat is not None:
                self._heartbeat.cancel()
                self._heartbeat = None
            with contextlib.suppress(psycopg.Error, StoreUnavailable):
                self._run(
                    "UPDATE tasks SET lease_owner = NULL, lease_until = NULL, slot_until = NULL"
                    " WHERE local_id = %s AND lease_owner = %s",
                    (local_id, self.owner),
                )

    def renew(self) -> set[str]:
        """Extend every lease this store holds by ``lease_s`` from now (and the submit slot
        of a claimed one); the held tasks whose lease another owner has taken (then their
        next save here is refused). What the heartbeat calls every ``lease_s / 3``."""
        held = sorted(self._held - self._lost)
        if not held:
            return set()
        rows = self._run(
            "UPDATE tasks SET lease_until = clock_timestamp() + make_interval(secs => %s),"
            " slot_until = CASE WHEN slot_until IS NULL THEN NULL"
            " ELSE clock_timestamp() + make_interval(secs => %s) END"
            " WHERE local_id = ANY(%s) AND lease_owner = %s RETURNING local_id",
            (self.lease_s, self.lease_s, held, self.owner),
        ).fetchall()
        missing = set(held) - {str(r[0]) for r in rows}
        if missing:  # not renewed: taken by another owner, or no row yet (not saved)
            taken = self._run(
                "SELECT local_id FROM tasks WHERE local_id = ANY(%s)", (sorted(missing),)
            ).fetchall()
            self._lost.update(str(r[0]) for r in taken)
        return self._lost & set(held)

    def _beat_while_held(self) -> None:
        """Start the heartbeat if none runs. Only inside an event loop: the long holds (a
        submit, a download) await; synchronous callers hold a lock only briefly."""
        if self._heartbeat is not None and not self._heartbeat.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._heartbeat = loop.create_task(self._beat())

    async def _beat(self) -> None:
        while self._held:
            await self._heartbeat_sleep(self.lease_s / 3)
            try:
                lost = self.renew()
            except StoreUnavailable as exc:  # the next save says so; keep trying
                log.debug("could not renew the leases: %s", exc)
                continue
            for local_id in sorted(lost):
                log.debug("the lease of task %s was taken over by another process", local_id)

    @contextlib.contextmanager
    def outputs_lock(self, keys: Collection[str]) -> Iterator[bool]:
        """Try to take the lock on these output files: a session advisory lock per slot of
        ``locks.output_slots`` (all or none). Never blocks; False if another connection, or
        another caller of this store, holds one. A dead holder's connection frees them."""

        def take(slot: int) -> int | None:
            row = self._run("SELECT pg_try_advisory_lock(%s, %s)", (_OUTPUTS_LOCK, slot)).fetchone()
            return slot if row is not None and row[0] else None

        def release(slot: int) -> None:  # a dropped session has freed it already
            with contextlib.suppress(psycopg.Error, StoreUnavailable):
                self._run("SELECT pg_advisory_unlock(%s, %s)", (_OUTPUTS_LOCK, slot))

        with all_slots(output_slots(keys), self._outputs_held, take, release) as held:
            yield held

    # -- internals ------------------------------------------------------------------------

    def _path(self, local_id: str) -> Path:
        return self.root / f"{local_id}.json"

    def _run(self, query: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        try:
            return self.conn.execute(query.encode("utf-8"), params)
        except psycopg.Error as exc:
            raise StoreUnavailable(
                _("the store refused a query: {why}").format(why=_one_line(exc))
            ) from None

    def _rows(self, query: str, params: Sequence[Any] = ()) -> list[_Row]:
        rows = [
            _Row(self._parse(data, int(version)), int(version))
            for data, version in self._run(query, params).fetchall()
        ]
        return rows

    def _parse(self, data: Any, version: int) -> TaskRecord:
        record = TaskRecord.model_validate(data)
        self._versions[record.local_id] = version
        return record


def _may_move(old: TaskState, task_id: str | None, history_len: int, record: TaskRecord) -> bool:
    """Whether a row in `old` (holding `task_id` and `history_len` earlier attempts) may be
    saved as `record`: a move ``transition`` makes, or a revival that kept the row's attempt
    in ``history``, as ``retry_record``, ``resubmit_unconfirmed`` and ``refetch_record`` do.
    A revival without it (a record built by hand, another tool) would drop the evidence
    that the frame may have been billed before."""
    new = record.status
    if can_transition(old, new):
        return True
    return (
        is_revival(old, new)
        and len(record.history) > history_len
        and record.history[-1].task_id == task_id
    )


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300]


__all__ = ["PgStore", "StaleRecord", "StoreUnavailable", "is_pg_url", "redact"]
