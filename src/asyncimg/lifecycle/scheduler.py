"""`monitor` as one long-lived scheduler: slots refilled the moment they free, each task
polled on its own schedule, the in-flight cap and the call rates adapted to the account.

A thin loop around the pure decisions of :mod:`asyncimg.lifecycle.schedule` and the
per-task work of :class:`~asyncimg.lifecycle.check.Checker` (submit, poll, download, all
under the record's lock). Three coroutines share one view of the folder:

- the submitter sends the oldest queued frame whenever a slot is free, through a token
  bucket, and learns the account's concurrency limit from 50430;
- the poller polls each in-flight task when its own next-poll time comes, through another
  token bucket, and refills a slot as soon as a task finishes;
- the watcher picks up records other processes add or change (by name and mtime).

Ctrl+C / SIGTERM stop it as they stop a pass (see `interrupt.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiolimiter import AsyncLimiter

from asyncimg.fileio import atomic_write
from asyncimg.i18n import _
from asyncimg.lifecycle import decide
from asyncimg.lifecycle.check import Checker, PassSummary
from asyncimg.lifecycle.download import remove_output_leftovers
from asyncimg.lifecycle.events import Event
from asyncimg.lifecycle.finishes import Finishes, Interval
from asyncimg.lifecycle.interrupt import StopOnSignals
from asyncimg.lifecycle.monitor import MonitorOutcome
from asyncimg.lifecycle.schedule import (
    DEFAULT_POLL_FLOOR_S,
    DEFAULT_POLL_RATE,
    DEFAULT_SUBMIT_RATE,
    ODDS_AFTER,
    POLL_PATIENCE,
    STALE_GAP_FLOORS,
    Bucket,
    Cap,
    EtaModel,
    Rate,
    Span,
    bucket_of,
    budget_points,
    limit_backoff,
    next_poll_delay,
    plan_size,
    poll_plan,
    running_at,
    running_odds,
)
from asyncimg.lifecycle.shared import Gate
from asyncimg.protocol.errors import ConcurrencyLimited, RateLimited
from asyncimg.store.record import TaskRecord
from asyncimg.store.states import IN_FLIGHT, TaskState
from asyncimg.store.store import record_progress

#: What the scheduler learned about the account, kept for the next run.
STATE_FILE = ".scheduler-state"  # JSON; no .json suffix: only records end in .json
#: How often the folder is looked at for records other processes added or changed.
WATCH_EVERY_S = 2.0
#: How often progress is reported at most.
PROGRESS_EVERY_S = 0.5

Clock = Callable[[], float]
Progress = Callable[["SchedulerView"], None]


@dataclass
class SchedulerView:
    """What the progress display shows: counts, elapsed time and the estimated rest."""

    counts: dict[str, int]
    elapsed: float
    eta: float | None
    in_flight: int
    cap: int
    summary: PassSummary

    def line(self) -> str:
        rest = _(", about {eta} left").format(eta=_duration(self.eta)) if self.eta else ""
        return _("{summary} — {elapsed} elapsed{rest}").format(
            summary=self.summary.line(), elapsed=_duration(self.elapsed), rest=rest
        )


@dataclass
class Scheduler:
    """Runs until nothing is left (or for ever with `until_done=False`)."""

    checker: Checker
    interval: float
    """The longest wait between two polls of a task (the guide's `--interval`)."""
    until_done: bool = True
    floor: float = DEFAULT_POLL_FLOOR_S
    max_in_flight: int | None = None
    submit_rate: float | None = None
    poll_rate: float | None = None
    on_progress: Progress | None = None
    watch_every: float = WATCH_EVERY_S
    backoff_base: float = 1.0
    """The first wait after a 50429 or an outage (doubling to `backoff_cap`)."""
    backoff_cap: float = 15.0
    progress_every: float = PROGRESS_EVERY_S
    gate: Gate | None = None
    """A shared store's queue, cap and pace (several monitors, one account); None: this
    monitor alone decides from its own records."""

    records: dict[str, TaskRecord] = field(default_factory=dict)
    _due: dict[str, float] = field(default_factory=dict)
    _polling: set[str] = field(default_factory=set)
    _done_seen: dict[str, float] = field(default_factory=dict)
    """Tasks the service said are done whose download is not over, and when it said so: no
    longer on the account's concurrency, so their slots are refilled at once."""
    _last_look: dict[str, float] = field(default_factory=dict)
    _spans: dict[str, tuple[Bucket, Span]] = field(default_factory=dict)
    """Finished tasks: their bucket, and submitted / last seen running / seen done."""
    _refused: list[tuple[float, frozenset[str]]] = field(default_factory=list)
    """50430s not yet measured: when, and which of ours were in flight then."""
    _accepted: list[tuple[float, frozenset[str]]] = field(default_factory=list)
    """Accepted submits not yet settled: when, and which of ours were in flight then."""
    _seen: dict[str, tuple[int, int]] = field(default_factory=dict)
    _summary: PassSummary = field(default_factory=PassSummary)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _polls_made: int = 0
    _finished: int = 0
    """Polls this run made, and tasks it saw finish: the poll budget's account."""
    _unfinished: int = 0
    _counted_at: float = float("-inf")
    _backoff_until: float = 0.0
    _refusals: int = 0
    _started: float = 0.0
    _last_progress: float = 0.0

    def __post_init__(self) -> None:
        learned_raw = self.gate.learned() if self.gate is not None else self._load_state()
        learned = _numbers(learned_raw)
        start = self.max_in_flight or learned.get("limit") or 1
        self.cap = Cap(
            limit=int(start),
            learned=learned.get("learned"),
            ceiling=self.max_in_flight,
            probe_after=int(learned.get("probe_after") or Cap().probe_after),
            measured=learned.get("learned") is not None,
        )
        if self.submit_rate is not None:
            self.submits = Rate(self.submit_rate, ceiling=self.submit_rate)
        else:
            self.submits = Rate(float(learned.get("submit_rate") or DEFAULT_SUBMIT_RATE))
        # Polls start at a rate public clients use (research §4) and learn the account's
        # poll quota from there, patiently (schedule.POLL_PATIENCE): each task's poll plan
        # is sized to fit the rate (schedule.plan_size). A configured rate is a ceiling.
        if self.poll_rate is not None:
            self.polls = Rate(self.poll_rate, ceiling=self.poll_rate, limited=True)
        else:
            start = float(learned.get("poll_rate") or DEFAULT_POLL_RATE)
            self.polls = Rate(start, limited=True, patience=POLL_PATIENCE)
        self._submit_bucket = _bucket(self.submits)
        self._poll_bucket = _bucket(self.polls)
        self.eta = EtaModel()
        self._learned_durations = _durations_from_state(learned_raw)

    @property
    def clock(self) -> Clock:
        return self.checker.clock

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> MonitorOutcome:
        outcome = MonitorOutcome()
        with StopOnSignals() as stop:
            await self._run()
        outcome.interrupted = stop.interrupted
        outcome.passes = 1
        final = self._final_summary()
        outcome.last = final
        outcome.summaries.append(final)
        self._save_state()
        return outcome

    async def _run(self) -> None:
        self._started = self.clock()
        self._load_folder()
        now = self.clock()
        for record in self.records.values():
            if _flying(record):
                self._due[record.local_id] = now  # a first look at once, then its own pace
        async with asyncio.TaskGroup() as group:
            workers = [
                group.create_task(self._submitter()),
                group.create_task(self._poller(group)),
                group.create_task(self._watcher()),
            ]
            await self._until_finished()
            for worker in workers:
                worker.cancel()

    async def _until_finished(self) -> None:
        while True:
            self._report_progress(force=False)
            if self._summary.halted is not None:
                return
            if self.until_done and not self._work_left():
                return
            await self._wait(1.0)

    def _work_left(self) -> bool:
        if self._polling:
            return True
        budget = self.checker.unconfirmed_budget
        return any(
            r.status is TaskState.PENDING
            or _flying(r)
            or decide.may_resubmit_unconfirmed(r, budget)
            for r in self.records.values()
        )

    async def _wait(self, seconds: float) -> None:
        """Until something changes or `seconds` pass."""
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, seconds)):
                await self._changed.wait()

    def _poke(self) -> None:
        self._changed.set()

    # -- submitting -----------------------------------------------------------------------

    async def _submitter(self) -> None:
        while True:
            now = self.clock()
            queue = decide.submit_queue(self.records.values(), self.checker.unconfirmed_budget)
            if not queue or now < self._backoff_until:
                wait = self._backoff_until - now if now < self._backoff_until else self.interval
                await self._wait(wait)
                continue
            if not self.cap.free(self._odds(now)):
                # The odds change as ours age, with no event to say so: look again soon.
                await self._wait(self.floor / 4 if self.cap.learned else self.interval)
                continue
            before = self.clock()
            await self._submit_bucket.acquire()
            waited = self.clock() - before > 1e-3
            if self.gate is None:
                await self._submit_one(queue[0], rate_bound=waited)
                continue
            claimed = self.gate.claim(self.cap.limit, self.checker.unconfirmed_budget)
            if claimed is None:  # the account's slots are taken, by this machine or others
                await self._wait(self.floor)
                continue
            await self.gate.pace("submit", self.submits.per_second)
            await self._submit_one(claimed, rate_bound=waited)

    async def _submit_one(self, record: TaskRecord, *, rate_bound: bool = False) -> None:
        sent = self.clock()
        odds, cap = self._odds(sent), self.cap  # what this submit went on
        flying = frozenset(self._holding())
        batch = await self.checker.submit([record], self._summary)
        if batch is None:  # accepted, but its record could not be written: halted
            self._poke()
            return
        [outcome] = batch.outcomes
        self._remember(outcome.record)
        now = self.clock()
        error = outcome.error
        if outcome.accepted:
            if self.gate is None and flying:
                self._accepted = [*self._accepted[-15:], (now, flying)]
            if self.gate is not None:
                self.gate.may_poll(outcome.record)  # its submitter polls it
            self._refusals = 0
            self._retune(submits=self.submits.after_success(binding=rate_bound))
            self._cap_after(lambda cap: cap.after_accept(self._odds(now)))
            self._schedule(outcome.record, now)
        elif _flying(outcome.record):  # another process sent it meanwhile: just poll it
            self._due.setdefault(outcome.record.local_id, now)
        elif error is None and outcome.record.status is TaskState.PENDING:
            self._backoff_until = now + self.floor  # busy in another process
        elif isinstance(error, ConcurrencyLimited):
            self._cap_after(lambda _mine: cap.after_limit_reply(odds))
            # The account counted when the request arrived: just before the reply was read
            # (the error's time), not when this began (the submit marker is written first).
            answered = outcome.record.last_error.time if outcome.record.last_error else now
            if cap.learned is None or len(odds) < cap.limit:
                # Counted, not guessed: worth measuring. A refused guess is measured with
                # the very odds that were wrong, so it only makes the guessing careful.
                self._refused = [*self._refused[-3:], (answered, flying)]
            if not odds:  # the account is busy with tasks that are not ours: wait
                self._refusals += 1
                self._backoff_until = now + self._limit_backoff()
            # else the lowered cap holds the queue until one of ours finishes
        elif isinstance(error, RateLimited):
            self._refusals += 1
            self._retune(submits=self.submits.after_limit_reply())
            self._backoff_until = now + self._limit_backoff()
        elif error is not None and decide.stop_submitting(error):
            self._refusals += 1  # an outage or a lost answer: wait before the next one
            self._backoff_until = now + self._limit_backoff()
        self._poke()

    # -- polling --------------------------------------------------------------------------

    async def _poller(self, group: asyncio.TaskGroup) -> None:
        while True:
            now = self.clock()
            ready = sorted(
                (due, local_id)
                for local_id, due in self._due.items()
                if due <= now and local_id not in self._polling
            )
            for _due, local_id in ready:
                self._polling.add(local_id)
                group.create_task(self._poll_one(local_id))
            upcoming = [d for i, d in self._due.items() if i not in self._polling]
            await self._wait(min(upcoming, default=now + self.interval) - now)

    async def _poll_one(self, local_id: str) -> None:
        try:
            record = self.records.get(local_id)
            if record is None or not _flying(record):
                self._due.pop(local_id, None)
                return
            if self.gate is not None and not self.gate.may_poll(record):
                self._due[local_id] = self.clock() + self.interval  # another monitor polls it
                return
            before = self.clock()
            await self._poll_bucket.acquire()
            if self.gate is not None:
                await self.gate.pace("poll", self.polls.per_second)
            asked = self.clock()
            waited = asked - before > 1e-3
            in_flight = self._in_flight()
            self._polls_made += 1
            after = await self.checker.check_task(
                record, self._summary, on_done=lambda: self._slot_freed(local_id)
            )
            now = self.clock()
            if after is None:  # another process holds it: look again a little later
                self._due[local_id] = now + self.floor
                return
            self._remember(after)
            if _flying(after):
                if after.last_error is not None and after.last_error.kind == "RateLimited":
                    self._retune(polls=self.polls.after_limit_reply())
                    self._due[local_id] = now + 1.0 / self.polls.per_second
                    return
                if local_id not in self._done_seen:
                    # Running when the service answered, so at least until this was asked.
                    self._last_look[local_id] = asked
                self._schedule(after, now)
                self._retune(polls=self.polls.after_success(binding=waited))
                return
            self._due.pop(local_id, None)
            self._finished += 1
            last_look = self._last_look.pop(local_id, None)
            submitted = after.submit_time if after.submit_time is not None else now
            # It finished between the last poll that saw it running and this one.
            since = max(submitted, last_look or submitted)
            seen = self._done_seen.pop(local_id, now)
            bucket = bucket_of(after.req_key, after.params)
            if after.status is TaskState.COMPLETED and after.submit_time is not None:
                self.eta = self.eta.observe_between(bucket, since - submitted, seen - submitted)
            self._spans[local_id] = (bucket, (submitted, since, seen))
            self._measure_refusals()
            self._settle_accepts()
            saturated = in_flight >= self.cap.limit
            self._cap_after(lambda cap: cap.after_completion(saturated=saturated))
        finally:
            self._polling.discard(local_id)
            self._poke()

    def _measure_refusals(self) -> None:
        """Once every task in flight at a 50430 has finished, how many were still running
        then is known (to within the poll gaps): the account's limit."""
        open_ = []
        for moment, ids in self._refused:
            finished = [self._spans[i] for i in ids if i in self._spans]
            finishes = self.eta.finishes(finished[0][0]) if finished else None
            learned = finishes is not None and finishes.n >= ODDS_AFTER
            # Measured once all have finished and enough is learned to place each finish.
            if len(finished) == len(ids) and (not ids or learned):
                measured = running_at(moment, [span for _, span in finished], finishes)

                def measure(cap: Cap, running: float = measured) -> Cap:
                    return cap.after_measured(running)

                self._cap_after(measure)
            else:
                open_.append((moment, ids))
        self._refused = open_
        # Keep what an open refusal may still need, and a minute of the rest (a refusal
        # is recorded after its reply; a task may finish meanwhile).
        horizon = min((m for m, _ids in open_), default=self.clock()) - 60.0
        for local_id in [i for i, (_b, span) in self._spans.items() if span[2] < horizon]:
            del self._spans[local_id]

    def _settle_accepts(self) -> None:
        """An accepted submit proves the account held one more than those of ours a later
        poll saw still running (every one in flight then has either finished or been seen
        running since)."""
        open_ = []
        for moment, ids in self._accepted:
            sure, settled = 0, True
            for local_id in ids:
                span = self._spans.get(local_id)
                seen_running = span[1][1] if span else self._last_look.get(local_id)
                if seen_running is not None and seen_running >= moment:
                    sure += 1
                elif span is None and local_id in self.records and _flying(self.records[local_id]):
                    settled = False  # still in flight, not yet seen since: wait
            if not settled:
                open_.append((moment, ids))
            elif sure:

                def prove(cap: Cap, held: int = sure + 1) -> Cap:
                    return cap.after_proven(held)

                self._cap_after(prove)
        self._accepted = open_

    @property
    def _frames(self) -> int:
        """Frames this run works on: those it saw finish and those still to finish
        (counted at most once a second: a folder may hold thousands of finished ones)."""
        now = self.clock()
        if now - self._counted_at >= 1.0:
            self._counted_at = now
            self._unfinished = sum(
                r.status is TaskState.PENDING or _flying(r) for r in self.records.values()
            )
        return self._finished + self._unfinished

    def _holders(self) -> Iterator[TaskRecord]:
        """Ours that hold a slot on the account: in flight, and not yet seen done."""
        return (
            r for r in self.records.values() if _flying(r) and r.local_id not in self._done_seen
        )

    def _holding(self) -> list[str]:
        return [r.local_id for r in self._holders()]

    def _slot_freed(self, local_id: str) -> None:
        """The service says this task is done: its slot can take the next frame while the
        image downloads."""
        self._done_seen.setdefault(local_id, self.clock())
        self._poke()

    def _schedule(self, record: TaskRecord, now: float) -> None:
        if record.local_id in self._done_seen:  # done; its download failed: fresh URLs
            self._due[record.local_id] = now + decide.refetch_delay(
                record.download_failures, self.floor
            )
            return
        finishes = self.eta.finishes(bucket_of(record.req_key, record.params))
        k = min(
            plan_size(self.polls.per_second, self.cap.limit, finishes),
            budget_points(self._polls_made, self._finished, max(1, self._frames)),
        )
        plan = poll_plan(finishes, k, max_gap=self.floor * STALE_GAP_FLOORS)
        elapsed = now - (record.submit_time if record.submit_time is not None else now)
        delay = next_poll_delay(elapsed, plan, floor=self.floor, ceiling=self.interval)
        self._due[record.local_id] = now + delay

    def _limit_backoff(self) -> float:
        return limit_backoff(self._refusals, base=self.backoff_base, cap=self.backoff_cap)

    # -- the folder -----------------------------------------------------------------------

    def _load_folder(self) -> None:
        report = self.checker.store.load_all()
        for problem in report.problems:
            self._summary.problems.append(str(problem))
            self.checker.tell(Event("warning", str(problem)))
        for record in report.records:
            self.records[record.local_id] = record
        remove_output_leftovers(report.records)
        self._seen = _listing(self.checker.store.root)
        # Intervals this scheduler saw tasks finish in (running at one poll, done at the
        # next) are kept in the state file; records only say when the client noticed, so
        # they come second (and are read only when the state file has none).
        self.eta = EtaModel.learn(
            self._learned_durations
            or [
                (bucket_of(r.req_key, r.params), (seconds, seconds))
                for r in report.records
                if (seconds := _recorded_duration(r)) is not None
            ]
        )

    async def _watcher(self) -> None:
        while True:
            await asyncio.sleep(self.watch_every)
            self._pick_up_changes()

    def _pick_up_changes(self) -> None:
        """Records other processes added or changed since the last look: by name and mtime,
        so an idle folder costs one directory listing (a shared store says what changed)."""
        if self.gate is not None:
            self._take_changes(self.gate.changes())
            return
        listing = _listing(self.checker.store.root)
        changed = [name for name, key in listing.items() if self._seen.get(name) != key]
        self._seen = listing
        found = [self.checker.store.read(self.checker.store.root / name) for name in changed]
        self._take_changes([r for r in found if r is not None])

    def _take_changes(self, changed: list[TaskRecord]) -> None:
        now = self.clock()
        for record in changed:
            known = self.records.get(record.local_id)
            if known is not None and record_progress(known) > record_progress(record):
                continue
            fresh = known is None or known.status is not record.status
            self.records[record.local_id] = record
            if self.gate is not None and fresh and known is not None:
                self._learn_from_other(record)
            if _flying(record) and record.local_id not in self._due and fresh:
                self._due[record.local_id] = now
        if changed:
            self._poke()

    def _learn_from_other(self, record: TaskRecord) -> None:
        """A task another monitor finished teaches this one's ETA too (from its recorded
        times, less sharp than a midpoint between polls, but nine in ten finishes are not
        ours with three monitors)."""
        seconds = _recorded_duration(record)
        if seconds is not None:
            self.eta = self.eta.observe(bucket_of(record.req_key, record.params), seconds)

    def _remember(self, record: TaskRecord) -> None:
        self.records[record.local_id] = record

    def _odds(self, now: float) -> list[float]:
        """For each of ours holding a slot, the odds it is still running (schedule)."""
        out = []
        known: dict[Bucket, Finishes | None] = {}
        for r in self._holders():
            if r.submit_time is None:
                out.append(1.0)
                continue
            bucket = bucket_of(r.req_key, r.params)
            if bucket not in known:
                known[bucket] = self.eta.finishes(bucket)
            finishes = known[bucket]
            seen = self._last_look.get(r.local_id, r.submit_time)
            out.append(running_odds(finishes, now - r.submit_time, seen - r.submit_time))
        return out

    def _in_flight(self) -> int:
        """Our tasks that hold a slot on the account (with a shared store: every monitor's)."""
        if self.gate is not None:
            return self.gate.in_flight()
        return sum(1 for _ in self._holders())

    def _cap_after(self, change: Callable[[Cap], Cap]) -> None:
        """One event for the cap: this monitor's own, or the account's shared one."""
        if self.gate is None:
            self.cap = change(self.cap)
        else:
            self.cap = self.gate.update_cap(change, self.cap)

    # -- rates ----------------------------------------------------------------------------

    def _retune(self, *, submits: Rate | None = None, polls: Rate | None = None) -> None:
        if submits is not None:
            if submits.per_second != self.submits.per_second:
                self._submit_bucket = _bucket(submits)
            self.submits = submits
        if polls is not None:
            if polls.per_second != self.polls.per_second:
                self._poll_bucket = _bucket(polls)
            self.polls = polls

    # -- what the user sees ---------------------------------------------------------------

    def view(self) -> SchedulerView:
        counts = {state.value: 0 for state in TaskState}
        for record in self.records.values():
            counts[record.status.value] += 1
        self._summary.counts = counts
        self._summary.waiting = sum(
            decide.waits_for_user(r, self.checker.unconfirmed_budget) for r in self.records.values()
        )
        return SchedulerView(
            counts=counts,
            elapsed=self.clock() - self._started,
            eta=self.remaining(),
            in_flight=self._in_flight(),
            cap=self.cap.limit,
            summary=self._summary,
        )

    def remaining(self) -> float | None:
        """Seconds until the last frame is done, from the ETA model: what is in flight, then
        the queue at the current cap. None when nothing is left."""
        now = self.clock()
        left: list[float] = []
        queued = 0
        for record in self.records.values():
            estimate = self.eta.estimate(bucket_of(record.req_key, record.params))
            if _flying(record) and record.submit_time is not None:
                left.append(max(0.0, estimate.mean - (now - record.submit_time)))
            elif record.status is TaskState.PENDING:
                queued += 1
                left.append(estimate.mean)
        if not left:
            return None
        return sum(left) / max(1, self.cap.limit) if queued else max(left)

    def _report_progress(self, *, force: bool) -> None:
        now = self.clock()
        if self.on_progress is None or (
            not force and now - self._last_progress < self.progress_every
        ):
            return
        self._last_progress = now
        self.on_progress(self.view())

    def _final_summary(self) -> PassSummary:
        summary = self._summary
        final = self.checker.store.scan()  # finished records come from the index
        summary.counts = {s.value: sum(t.status is s for t in final.tasks) for s in TaskState}
        summary.queued = summary.counts[TaskState.PENDING.value]
        budget = self.checker.unconfirmed_budget
        summary.waiting = sum(decide.waits_for_user(r, budget) for r in final.records)
        return summary

    # -- what is kept between runs ----------------------------------------------------------

    def _state_path(self) -> Path:
        return self.checker.store.root / STATE_FILE

    def _load_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self._state_path().read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_state(self) -> None:
        if self.gate is not None:
            return  # the shared cap is kept in the store as it changes
        data = {
            "limit": self.cap.learned or self.cap.limit,
            "learned": self.cap.learned,
            "probe_after": self.cap.probe_after,
            "submit_rate": round(self.submits.per_second, 3),
            "poll_rate": round(self.polls.per_second, 3),
            "durations": {
                f"{key}|{size}": [[round(lo, 3), round(hi, 3)] for lo, hi in intervals]
                for (key, size), intervals in self.eta.recent.items()
            },
            "saved_at": time.time(),
        }
        with contextlib.suppress(OSError):
            atomic_write(self._state_path(), json.dumps(data).encode("utf-8"))


def _numbers(data: dict[str, Any]) -> dict[str, Any]:
    """The state file's positive numbers (anything else in it is ignored)."""
    return {
        k: v
        for k, v in data.items()
        if k in ("limit", "learned", "probe_after", "submit_rate", "poll_rate")
        and isinstance(v, int | float)
        and not isinstance(v, bool)
        and v > 0
    }


def _durations_from_state(data: dict[str, Any]) -> list[tuple[Bucket, Interval]]:
    """The state file's finish intervals per bucket ([running, done] pairs; a plain number
    from an older state file is an exact duration). Anything else in it is ignored."""
    raw = data.get("durations")
    if not isinstance(raw, dict):
        return []
    out: list[tuple[Bucket, Interval]] = []
    for name, values in raw.items():
        key, _, size = str(name).partition("|")
        if not size or not isinstance(values, list):
            continue
        for value in values:
            pair = value if isinstance(value, list) and len(value) == 2 else [value, value]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in pair):
                out.append(((key, size), (float(pair[0]), float(pair[1]))))
    return out


def _recorded_duration(record: TaskRecord) -> float | None:
    """How long a completed task took as its record says (submit to noticed done)."""
    if (
        record.status is TaskState.COMPLETED
        and record.completed_time is not None
        and record.submit_time is not None
    ):
        return record.completed_time - record.submit_time
    return None


def _bucket(rate: Rate) -> AsyncLimiter:
    """A token bucket of one token refilled at `rate` per second (no bursts)."""
    return AsyncLimiter(1, 1.0 / rate.per_second)


def _flying(record: TaskRecord) -> bool:
    return record.status in IN_FLIGHT and record.task_id is not None


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    with contextlib.suppress(FileNotFoundError), os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith((".json", ".txt")):
                continue
            with contextlib.suppress(OSError):
                st = entry.stat()
                out[entry.name] = (st.st_mtime_ns, st.st_size)
    return out


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
