"""What only the shared store does: versions, the state machine at the row, leases that
expire, machines, the shared queue and cap, migrations, and never showing a password."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from asyncimg.protocol.errors import ConfigError
from asyncimg.store import TaskRecord, TaskState, transition
from asyncimg.store.base import StaleRecord
from asyncimg.store.pg.gate import SharedGate
from asyncimg.store.pg.schema import migrate, migrations
from asyncimg.store.pg.store import PgStore, redact
from asyncimg.store.states import IllegalTransition, accept, refetch_record, retry_record


def record(n: int, *, out: str = "/frames", **extra: Any) -> TaskRecord:
    now = time.time()
    data: dict[str, Any] = {
        "output_path": f"{out}/{n:03d}.png",
        "filename": f"{n:03d}.png",
        "prompt": f"frame {n}",
        "full_prompt": f"frame {n}",
        "status": TaskState.PENDING,
        "created_at": now + n / 1000,
        "updated_at": now + n / 1000,
    }
    data.update(extra)
    return TaskRecord.model_validate(data)


@pytest.fixture
def stores(pg_url: str, tmp_path: Path) -> Any:
    opened: list[PgStore] = []

    def make(machine: str = "m1", **kw: Any) -> PgStore:
        kw.setdefault("state_dir", tmp_path / "state")
        store = PgStore(pg_url, machine=machine, account="acct", **kw)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_two_writers_of_one_version_one_wins_the_other_is_refused(stores: Any) -> None:
    a, b = stores(), stores()
    r = record(1)
    a.save(r)
    mine, theirs = a.reload(r), b.reload(r)
    assert mine is not None and theirs is not None
    a.save(accept(mine, "t-1", now=time.time()))
    with pytest.raises(StaleRecord):
        b.save(transition(theirs, TaskState.FAILED, now=time.time()))
    final = stores().reload(r)
    assert final is not None and final.status is TaskState.SUBMITTED and final.task_id == "t-1"


def test_the_row_refuses_a_move_the_state_machine_forbids(stores: Any) -> None:
    store = stores()
    r = record(1)
    store.save(r)
    done = accept(r, "t-1", now=time.time())
    store.save(done)
    store.save(transition(done, TaskState.COMPLETED, now=time.time()))
    # A record built by hand (bypassing transition) cannot move a completed task back.
    current = store.reload(r)
    assert current is not None
    back = TaskRecord.model_validate({**current.model_dump(), "status": "submitted"})
    with pytest.raises(IllegalTransition):
        store.save(back)


def test_the_row_refuses_a_revival_that_dropped_the_earlier_attempt(stores: Any) -> None:
    """failed → pending / submitted saves only with the row's attempt kept in history (what
    retry_record and refetch_record write): a record revived by hand, or by another tool,
    would hide that the frame was billed before."""
    store = stores()
    r = record(1)
    store.save(r)
    sent = accept(r, "t-1", now=time.time())
    store.save(sent)
    store.save(transition(sent, TaskState.FAILED, now=time.time()))
    failed = store.reload(r)
    assert failed is not None
    data = failed.model_dump()
    by_hand = [
        {**data, "status": "pending", "task_id": None},  # no history at all
        {**data, "status": "submitted"},  # a refetch without its attempt
        {  # an attempt, but not the row's
            **data,
            "status": "pending",
            "task_id": None,
            "history": [{"task_id": "t-other", "status": "failed", "retried_at": 1.0}],
        },
    ]
    for revived in by_hand:
        with pytest.raises(IllegalTransition):
            store.save(TaskRecord.model_validate(revived))
    kept = stores().reload(r)
    assert kept is not None and kept.status is TaskState.FAILED and kept.history == []
    store.save(refetch_record(failed, now=time.time()))  # the function's own revival saves
    again = stores().reload(r)
    assert again is not None and again.status is TaskState.SUBMITTED
    assert [a.task_id for a in again.history] == ["t-1"]


def test_a_dead_holders_lease_expires_and_another_takes_the_task(stores: Any) -> None:
    # A lease far longer than the test, then its time passes at the row: a lease of a
    # fraction of a second could lapse before the second look on a loaded machine.
    dead, alive = stores(lease_s=60.0), stores(lease_s=60.0)
    r = record(1)
    dead.save(r)
    held = contextlib.ExitStack()
    assert held.enter_context(dead.lock(r))  # never released: the process "died"
    with alive.lock(r) as got:
        assert not got
    _leases_pass(alive, 61.0)
    with alive.lock(r) as got:
        assert got


class Beats:
    """A heartbeat sleep the test releases by hand: one renewal per `beat()`, no real time."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._go = asyncio.Semaphore(0)
        self._sleeping = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        self._sleeping.set()
        await self._go.acquire()

    async def beat(self) -> None:
        """Let the heartbeat renew once, and return when it has (it asks to sleep again).
        The timeout only turns a heartbeat that never comes into a failure, not a hang."""
        async with asyncio.timeout(60):
            await self._sleeping.wait()
            self._sleeping.clear()
            self._go.release()
            await self._sleeping.wait()


async def _never(seconds: float) -> None:
    await asyncio.Event().wait()  # a heartbeat that never beats (a loop kept busy)


def _leases_pass(store: PgStore, seconds: float) -> None:
    """As if `seconds` passed for every lease, submit slot and poll claim in the store."""
    store._run(
        "UPDATE tasks SET lease_until = lease_until - make_interval(secs => %s),"
        " slot_until = slot_until - make_interval(secs => %s),"
        " poll_until = poll_until - make_interval(secs => %s)",
        (seconds, seconds, seconds),
    )


def _time_passes(store: PgStore, r: TaskRecord, seconds: float) -> None:
    """As if `seconds` passed for this row's lease (the database's clock cannot be moved)."""
    store._run(
        "UPDATE tasks SET lease_until = lease_until - make_interval(secs => %s)"
        " WHERE local_id = %s",
        (seconds, r.local_id),
    )


async def test_the_heartbeat_keeps_a_lease_held_past_its_time(stores: Any) -> None:
    """A submit or download longer than the lease lost it, and another monitor took the
    task over mid-submit: it could send it again (billed twice)."""
    beats = Beats()
    holder, other = stores(lease_s=30.0, heartbeat_sleep=beats.sleep), stores(lease_s=30.0)
    r = record(1)
    holder.save(r)
    with holder.lock(r) as held:
        assert held
        await beats.beat()  # started by lock(): waits a third of the lease each time
        assert beats.asked[0] == 10.0
        for _ in range(4):  # 40 s: past the 30 s the lease was taken for
            _time_passes(holder, r, 10.0)
            await beats.beat()
        with other.lock(r) as got:
            assert not got
        current = holder.reload(r)
        assert current is not None
        holder.save(accept(current, "t-1", now=time.time()))
    with other.lock(r) as got:
        assert got  # released


async def test_without_the_heartbeat_another_owner_takes_the_lease_and_the_late_save_is_refused(
    stores: Any,
) -> None:
    holder, other = stores(lease_s=30.0, heartbeat_sleep=_never), stores(lease_s=30.0)
    r = record(1)
    holder.save(r)
    current = holder.reload(r)
    assert current is not None
    with holder.lock(r) as held:
        assert held
        _time_passes(holder, r, 40.0)
        with other.lock(r) as got:
            assert got  # taken over: the other may be submitting it right now
            with pytest.raises(StaleRecord, match="another process took it over"):
                holder.save(accept(current, "t-1", now=time.time()))
    final = other.reload(r)
    assert final is not None and final.status is TaskState.PENDING and final.task_id is None


async def test_a_renewal_that_finds_the_lease_taken_makes_the_later_save_refuse(
    stores: Any,
) -> None:
    beats = Beats()
    holder, other = stores(lease_s=30.0, heartbeat_sleep=beats.sleep), stores(lease_s=30.0)
    r = record(1)
    holder.save(r)
    current = holder.reload(r)
    assert current is not None
    with holder.lock(r) as held:
        assert held
        _time_passes(holder, r, 40.0)  # the heartbeat was late
        with other.lock(r) as got:
            assert got
            await beats.beat()  # finds the lease taken
        # The other has let go (its lease is cleared) without writing: still refused.
        with pytest.raises(StaleRecord):
            holder.save(accept(current, "t-1", now=time.time()))


async def test_a_record_first_saved_under_its_lock_is_leased_and_renewed(stores: Any) -> None:
    beats = Beats()
    holder, other = stores(lease_s=30.0, heartbeat_sleep=beats.sleep), stores(lease_s=30.0)
    r = record(1)
    with holder.lock(r) as held:  # no row yet
        assert held
        holder.save(r)
        with other.lock(r) as got:
            assert not got
        _time_passes(holder, r, 40.0)
        await beats.beat()
        with other.lock(r) as got:
            assert not got  # renewed
        holder.save(accept(holder.reload(r) or r, "t-1", now=time.time()))


def test_a_machine_works_only_its_own_frames_unless_on_a_shared_folder(
    stores: Any, tmp_path: Path
) -> None:
    shared = tmp_path / "nas"
    a = stores("alpha")
    own, on_nas = record(1, out="/home/alpha/frames"), record(2, out=str(shared / "ch1"))
    a.save(own)
    a.save(on_nas)
    beta = stores("beta", shared_dirs=[shared])
    assert {r.local_id for r in beta.load_all().records} == {on_nas.local_id}
    with beta.lock(own) as got:
        assert not got
    with beta.lock(on_nas) as got:
        assert got
    assert len(beta.scan().tasks) == 2  # but every machine lists every frame
    saved = beta.reload(own)
    assert saved is not None and (saved.model_extra or {})["machine"] == "alpha"


def test_claims_never_exceed_the_accounts_cap_across_monitors(stores: Any) -> None:
    a, b, c = stores(), stores(), stores()
    for n in range(6):
        a.save(record(n))
    gates = [SharedGate(s) for s in (a, b, c)]
    claimed = [g.claim(cap=2, budget=1) for g in gates]
    got = [r for r in claimed if r is not None]
    assert len(got) == 2
    assert len({r.local_id for r in got}) == 2
    assert [r.prompt for r in got] == ["frame 0", "frame 1"]  # oldest first


def test_claims_alternate_between_batches(stores: Any) -> None:
    store = stores()
    for n in range(4):
        store.save(record(n, out="/ch1"))
    for n in range(10, 12):
        store.save(record(n, out="/ch2"))
    gate = SharedGate(store)
    batches = []
    for _ in range(4):
        r = gate.claim(cap=10, budget=1)
        assert r is not None
        batches.append(str(Path(r.output_path).parent))
    assert batches == ["/ch1", "/ch2", "/ch1", "/ch2"]


def test_a_dead_claim_frees_its_slot_when_the_lease_expires(stores: Any) -> None:
    dead, alive = stores(lease_s=60.0), stores(lease_s=60.0)
    dead.save(record(1))
    dead.save(record(2))
    assert SharedGate(dead).claim(cap=1, budget=1) is not None
    assert SharedGate(alive).claim(cap=1, budget=1) is None
    _leases_pass(alive, 61.0)
    again = SharedGate(alive).claim(cap=1, budget=1)
    assert again is not None and again.prompt == "frame 1"  # the dead claim's frame


async def test_pace_spaces_calls_of_every_monitor(stores: Any) -> None:
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    gates = [SharedGate(stores(), sleep=sleep) for _ in range(3)]
    began = time.monotonic()
    took = []
    for gate in gates:
        await gate.pace("submit", 2.0)
        took.append(time.monotonic() - began)
    await asyncio.sleep(0)
    # Three monitors at 2/s share one pace: the 2nd waits 0.5 s, the 3rd 1 s, less the time
    # that passed since the 1st asked (measured, so a loaded machine cannot fail it).
    assert len(waits) == 2
    assert 0.5 - took[1] - 0.01 <= waits[0] <= 0.5 + 0.01
    assert 1.0 - took[2] - 0.01 <= waits[1] <= 1.0 + 0.01


def test_the_learned_cap_is_shared(stores: Any) -> None:
    SharedGate(stores()).share(3, 2, 8)
    assert SharedGate(stores()).learned() == {"limit": 3, "learned": 2, "probe_after": 8}


def test_migrations_apply_once_and_a_newer_schema_is_refused(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert migrate(conn) == [name for _, name, _ in migrations()]
        assert migrate(conn) == []
        conn.execute("INSERT INTO schema_version (version, name) VALUES (9999, 'future')")
        with pytest.raises(ConfigError, match="newer"):
            migrate(conn)


def test_a_password_is_never_shown(pg_url: str, tmp_path: Path) -> None:
    assert redact("postgresql://u:s3cret@h:5432/db") == "postgresql://u@h:5432/db"
    with pytest.raises(ConfigError) as caught:
        PgStore("postgresql://nobody:s3cret@127.0.0.1:1/db", state_dir=tmp_path)
    assert "s3cret" not in str(caught.value)


def test_a_priority_batch_is_claimed_first_and_new_frames_inherit_it(stores: Any) -> None:
    store = stores()
    for n in range(3):
        store.save(record(n, out="/ch1"))
    store.save(record(10, out="/urgent"))
    assert store.set_priority("/urgent", 5) == 1
    store.save(record(11, out="/urgent"))  # added later: same batch, same priority
    gate = SharedGate(store)
    first = [gate.claim(cap=10, budget=1) for _ in range(3)]
    assert [r.prompt if r else None for r in first] == ["frame 10", "frame 11", "frame 0"]


def test_frames_recorded_without_credentials_are_claimed_and_counted_by_the_sender(
    stores: Any, pg_url: str, tmp_path: Path
) -> None:
    migrated = PgStore(pg_url, machine="m1", account="default", state_dir=tmp_path)
    try:
        migrated.save(record(1))  # e.g. `asyncimg migrate` run without VOLC_* set
        migrated.save(record(2))
    finally:
        migrated.close()
    gate = SharedGate(stores())
    claimed = gate.claim(cap=1, budget=1)
    assert claimed is not None
    assert gate.claim(cap=1, budget=1) is None  # its slot counts for the sender's account
    assert gate.claim(cap=2, budget=1) is not None


def test_an_output_lock_whose_connection_dropped_ends_without_an_error(stores: Any) -> None:
    """The session's advisory locks went with the connection: leaving the lock must not
    raise StoreUnavailable over whatever the caller was doing."""
    a = stores()
    with a.outputs_lock(["/frames/ch1/001.png"]) as held:
        assert held
        a.conn.close()


def test_a_poll_claim_ends_when_the_task_stops_flying(stores: Any) -> None:
    """A monitor's claim to poll a task outlived the task: `retry` sent the failed task
    again and the next monitor waited for the dead monitor's claim to lapse (lease_s)."""
    first, second = stores(), stores()
    now = time.time()
    sent = accept(record(1), "t1", now=now)
    first.save(sent)
    assert SharedGate(first).may_poll(sent)
    assert not SharedGate(second).may_poll(sent)  # the first monitor polls it
    running = first.reload(sent)
    assert running is not None
    first.save(transition(running, TaskState.PROCESSING, now=now))
    assert not SharedGate(second).may_poll(sent)  # still in flight: still the first's
    processing = first.reload(sent)
    assert processing is not None
    first.save(transition(processing, TaskState.FAILED, now=now))  # its monitor ends
    failed = second.reload(sent)
    assert failed is not None
    second.save(retry_record(failed, now=now))  # `asyncimg retry`
    again = second.reload(sent)
    assert again is not None
    second.save(accept(again, "t2", now=now))
    assert SharedGate(second).may_poll(sent)  # the next monitor polls it at once
