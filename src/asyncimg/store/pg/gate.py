"""What several monitors share through the database: one queue, one in-flight cap and one
pace per account, so together they never exceed what the account allows.

The scheduler asks the gate (see `lifecycle.scheduler.Scheduler.gate`) instead of its own
view of one folder:

- :meth:`SharedGate.claim` picks the next frame fairly (`lifecycle.fair`) among the queued
  frames this machine may work on, with ``SELECT … FOR UPDATE SKIP LOCKED`` (two monitors
  never claim one frame), only while the account's tasks in flight plus the slots claimed
  for submits under way are below the cap. The claim is a lease on the row and a slot
  (``slot_until``): both expire, so a monitor that dies mid-claim frees them.
- :meth:`SharedGate.pace` spaces submits (and polls) of every monitor of the account:
  each call takes the next free moment from one row and sleeps until it.
- :meth:`SharedGate.learned` / :meth:`share` keep the cap learned from 50430 replies.

All times come from the database's clock, the one clock every machine shares.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from asyncimg.lifecycle import decide
from asyncimg.lifecycle.fair import Candidate, pick
from asyncimg.lifecycle.schedule import Cap
from asyncimg.store.pg.store import KEPT_SQL, PgStore
from asyncimg.store.record import TaskRecord

#: The key under which the account-wide cap is kept (the scheduler's cap covers every model).
ALL_MODELS = "*"
_ACTIONS = {"submit": "next_submit_at", "poll": "next_poll_at"}
#: How many queued frames a claim looks at (the oldest of each priority first).
CLAIM_WINDOW = 500
#: A row holding one of the account's slots: accepted and not done at the service (a task
#: whose images are kept is done, though it may wait for its machine), or being submitted.
_RUNNING = f"(status IN ('submitted', 'processing') AND NOT ({KEPT_SQL}))"
_HOLDS_SLOT = f"({_RUNNING} OR slot_until > clock_timestamp())"

Sleep = Callable[[float], Awaitable[None]]


class SharedGate:
    def __init__(self, store: PgStore, *, sleep: Sleep = asyncio.sleep) -> None:
        self.store = store
        self._sleep = sleep
        row = store._run("SELECT coalesce(max(seq), 0) FROM tasks").fetchone()
        self._seq = int(row[0]) if row else 0
        store._run(
            "INSERT INTO account_limits (account, req_key) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (store.account, ALL_MODELS),
        )

    # -- the queue ----------------------------------------------------------------------

    def in_flight(self) -> int:
        """The account's tasks accepted and unfinished, every machine's."""
        row = self.store._run(
            f"SELECT count(*) FROM tasks WHERE account = %s AND {_RUNNING}",
            (self.store.account,),
        ).fetchone()
        return int(row[0]) if row else 0

    def claim(self, cap: int, budget: int) -> TaskRecord | None:
        """The next frame to submit, leased to this store, or None (nothing queued that
        this machine may work on, or the account's slots are all taken)."""
        store = self.store
        conn = store.conn
        with conn.transaction():
            # One claimer per account at a time: the count and the claim are one step.
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", ("asyncimg-claim/" + store.account,)
            )
            row = conn.execute(
                f"SELECT count(*) FROM tasks WHERE account = %s AND {_HOLDS_SLOT}",
                (store.account,),
            ).fetchone()
            busy = int(row[0]) if row else 0
            shared = conn.execute(
                "SELECT cap FROM account_limits WHERE account = %s AND req_key = %s",
                (store.account, ALL_MODELS),
            ).fetchone()
            if shared is not None and shared[0] is not None:
                cap = int(shared[0])  # the account's cap, whoever last moved it
            if busy >= max(1, cap):
                return None
            # Any queued frame: the account that sends it is the one that pays for it.
            rows = conn.execute(
                "SELECT record, version, batch, priority FROM tasks"
                " WHERE status IN ('pending', 'unconfirmed')"
                " AND (lease_owner IS NULL OR lease_until < clock_timestamp())"
                " ORDER BY priority DESC, created_at, local_id LIMIT %s FOR UPDATE SKIP LOCKED",
                (CLAIM_WINDOW,),
            ).fetchall()
            queued: dict[str, tuple[TaskRecord, Candidate]] = {}
            for data, version, batch, priority in rows:
                record = store._parse(data, int(version))
                if not store.may_work(record):
                    continue
                if record.status.value == "unconfirmed" and not decide.may_resubmit_unconfirmed(
                    record, budget
                ):
                    continue
                queued[record.local_id] = (
                    record,
                    Candidate(record.local_id, str(batch), int(priority), record.created_at),
                )
            if not queued:
                return None
            flying = {
                str(batch): int(n)
                for batch, n in conn.execute(
                    f"SELECT batch, count(*) FROM tasks WHERE account = %s AND {_HOLDS_SLOT}"
                    " GROUP BY batch",
                    (store.account,),
                ).fetchall()
            }
            chosen = pick((c for _, c in queued.values()), flying)
            assert chosen is not None
            conn.execute(
                "UPDATE tasks SET lease_owner = %s, account = %s,"
                " lease_until = clock_timestamp() + make_interval(secs => %s),"
                " slot_until = clock_timestamp() + make_interval(secs => %s)"
                " WHERE local_id = %s",
                (store.owner, store.account, store.lease_s, store.lease_s, chosen.local_id),
            )
            return queued[chosen.local_id][0]

    def may_poll(self, record: TaskRecord) -> bool:
        """Whether this monitor polls `record` now: it is the task's poller (or becomes it,
        the task having none, or one whose claim lapsed); each poll renews the claim."""
        row = self.store._run(
            "UPDATE tasks SET poll_owner = %s, account = %s,"
            " poll_until = clock_timestamp() + make_interval(secs => %s)"
            " WHERE local_id = %s AND (poll_owner IS NULL OR poll_owner = %s"
            " OR poll_until < clock_timestamp()) RETURNING 1",
            (
                self.store.owner,
                self.store.account,
                self.store.lease_s,
                record.local_id,
                self.store.owner,
            ),
        ).fetchone()
        return row is not None

    def changes(self) -> list[TaskRecord]:
        """Records of this machine's work written since the last call (by anyone)."""
        records, self._seq = self.store.changed_since(self._seq)
        return records

    # -- pace -----------------------------------------------------------------------------

    async def pace(self, action: str, per_second: float) -> None:
        """Wait for this monitor's turn among every monitor of the account: calls of one
        action are spaced 1/`per_second` apart, whoever makes them."""
        column = _ACTIONS[action]
        gap = 1.0 / max(per_second, 0.01)
        row = self.store._run(
            f"UPDATE account_limits SET {column} = greatest({column}, clock_timestamp())"
            " + make_interval(secs => %s)"
            " WHERE account = %s AND req_key = %s"
            f" RETURNING extract(epoch FROM ({column} - clock_timestamp()))::float8 - %s",
            (gap, self.store.account, ALL_MODELS, gap),
        ).fetchone()
        wait = float(row[0]) if row else 0.0
        if wait > 0:
            await self._sleep(wait)

    # -- the learned cap ------------------------------------------------------------------

    def learned(self) -> dict[str, Any]:
        row = self.store._run(
            "SELECT cap, learned, probe_after FROM account_limits WHERE account = %s"
            " AND req_key = %s",
            (self.store.account, ALL_MODELS),
        ).fetchone()
        if row is None:
            return {}
        names = ("limit", "learned", "probe_after")
        return {k: int(v) for k, v in zip(names, row, strict=True) if v is not None and v > 0}

    def update_cap(self, change: Callable[[Cap], Cap], mine: Cap) -> Cap:
        """Apply one event (a completion, a 50430) to the account's one cap, atomically: the
        cap every monitor claims under. `mine` gives the local ceiling, and the start when
        nothing is shared yet."""
        store = self.store
        with store.conn.transaction():
            row = store.conn.execute(
                "SELECT cap, learned, probe_after, clean FROM account_limits"
                " WHERE account = %s AND req_key = %s FOR UPDATE",
                (store.account, ALL_MODELS),
            ).fetchone()
            current = mine
            if row is not None and row[0] is not None:
                current = replace(
                    mine,
                    limit=int(row[0]),
                    learned=None if row[1] is None else int(row[1]),
                    probe_after=int(row[2] or mine.probe_after),
                    clean=int(row[3] or 0),
                )
            after = change(current)
            store.conn.execute(
                "UPDATE account_limits SET cap = %s, learned = %s, probe_after = %s,"
                " clean = %s, updated_at = clock_timestamp() WHERE account = %s AND req_key = %s",
                (
                    after.limit,
                    after.learned,
                    after.probe_after,
                    after.clean,
                    store.account,
                    ALL_MODELS,
                ),
            )
        return after

    def share(self, limit: int, learned: int | None, probe_after: int) -> None:
        self.store._run(
            "UPDATE account_limits SET cap = %s, learned = coalesce(%s, learned),"
            " probe_after = %s, updated_at = clock_timestamp()"
            " WHERE account = %s AND req_key = %s",
            (limit, learned, probe_after, self.store.account, ALL_MODELS),
        )
