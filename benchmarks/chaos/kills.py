"""Kill trials: SIGKILL `submit --batch`, `check` and `monitor` at random moments, then one
clean `monitor`. No frame may be lost, and every billed task that no record knows must be
explained by a kill that cut a submit in flight. Everything is counted, nothing asserted:
the figures go to the table (`benchmarks.chaos`) and the tests assert on them.

How it is set up, and why:

- Two lanes run side by side, each a project folder with its own emulator, running its
  children one at a time; so within a lane the child that sent a submit is the last one
  started before the emulator received it. Two lanes halve the wall time on a 2-core machine
  (a child spends most of its life importing).
- Every `submit --batch` gets a fresh batch file of `FRAMES_PER_BATCH` new frames (output
  paths never used before), so no frame is sent by two `submit` runs. The only rows that go
  into a later batch again are those of a killed `submit` that never got a record: it died
  before writing their pending records, so nothing was sent for them (what a user does after
  a killed submit: submit what `asyncimg list` does not show).
- Kill points are drawn from `random.Random(SEED)` (printed; ASYNCIMG_KILL_SEED replays a
  run's draws): a quarter of the children are killed a random share of the measured
  start-up time after they start, the rest a random share of the command's measured work
  time after the emulator got their first request. Measured, because start-up (imports)
  takes 1 s on an idle machine and 5 s on a busy one: one unkilled run of each command
  calibrates a lane and every child that ends before its kill updates it. Replies take
  `LATENCY` s, tasks `GEN` s, and the account takes at most `CONCURRENCY` unfinished tasks,
  so kills land mid-submit, mid-poll, mid-download and mid-write, and check/monitor also
  submit frames queued on 50430. Only children that died of the SIGKILL count as kills.
- Budget: the lanes' asyncimg.toml sets `[defaults] max_unconfirmed_resubmits = 10`, the
  most the config allows. With the default (1), a frame whose submit is cut twice waits for
  the user, and `asyncimg retry` only takes failed tasks, so the clean monitor could not end
  it; the figures count the frames that needed more than the default budget.
- A submit cut by a kill is read from disk right after the child died: a pending record
  with `submit_started_at` set that was not there before the child started (the mark is
  written before the request leaves and cleared when its answer is written). A kill of a
  `submit --batch` can cut one submit per frame in flight at once (it sends a few in
  parallel), so the billing bound is per cut submit, not per kill.
- An orphan (a task the emulator created that is in no record's `task_id` or `history`)
  is matched by its prompt to its frame and by the emulator's `received_at` (when its
  request reached the handler, before the latency) to the last child started before that
  in its lane; the emulator's loop gets some turns after every child, before the next
  starts, so a dead child's last request is taken in first. That child must have been
  killed, with that frame's submit among the ones it cut.
- Frames alternate `.png`, `.jpg` and `.webp` outputs: each image must decode and be in the
  format its extension names.
- Leftovers (`common.leftovers`): any file in the tasks folder that is not a record or the
  folder's own cache, any file among the images that is not a frame's image, counted after
  the clean monitor.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.conftest import E2E, RESULT, SK, EmulatorThread

from .common import Report, billed, image_problem, leftovers, secret_hits

SEED = int(os.environ.get("ASYNCIMG_KILL_SEED", "20240606"))
LANES = ("a", "b")
EXTENSIONS = (".png", ".jpg", ".webp")
FRAMES_PER_BATCH = 3
LATENCY = 0.1
GEN = (0.3, 1.2)
CONCURRENCY = 4
BUDGET = 10
DEFAULT_BUDGET = 1
CONFIG = f'[defaults]\nsize = "1024x1024"\nmax_unconfirmed_resubmits = {BUDGET}\n'
MONITOR = ("monitor", "--interval", "1")
COMMANDS = ("submit", "check", "monitor")
STARTUP_SHARE = 0.25  # of kill delays drawn within the start-up time
FINAL_TIMEOUT = 240.0


@dataclass(frozen=True)
class Plan:
    """When to SIGKILL a child: `delay` s after it starts, or after the emulator has got
    its first request (the child has started up and is at work)."""

    delay: float
    after_first_request: bool


@dataclass
class Child:
    """One `asyncimg` process, times on the emulator's clock."""

    command: str
    started: float
    plan: Plan | None  # None: never killed
    killed: bool = False
    first_request: float | None = None  # when the emulator was seen to get its first request
    ended: float = 0.0
    returncode: int | None = None
    requests: int = 0  # API requests the emulator received while it lived
    polls: int = 0  # of which polls
    downloads: int = 0  # images the emulator served while it lived
    cut: set[str] = field(default_factory=set)  # frames whose submit it cut (output paths)
    temps: int = 0  # temp files that appeared while it lived


@dataclass
class Figures:
    kills: Counter[str] = field(default_factory=Counter)
    natural_ends: int = 0
    kills_at_startup: int = 0
    kills_mid_submit: int = 0
    submits_cut: int = 0
    kills_mid_write: int = 0
    kills_after_polling: int = 0
    kills_after_downloading: int = 0
    orphans: int = 0
    unconfirmed_resubmits: int = 0
    frames_over_default_budget: int = 0
    frames: int = 0
    unrecorded_resent: int = 0
    billed: int = 0
    temp_files: int = 0
    lost: int = 0
    doubled: int = 0
    bad_images: int = 0
    stray_images: int = 0
    quarantined: int = 0
    unexplained: int = 0
    misattributed: int = 0
    tracebacks: int = 0
    bad_exits: int = 0
    unkilled_marks: int = 0
    unkilled_unrecorded: int = 0
    secret_leaks: int = 0
    problems: list[str] = field(default_factory=list)

    def add(self, other: Figures) -> None:
        for name, value in vars(other).items():
            if isinstance(value, Counter):
                getattr(self, name).update(value)
            elif isinstance(value, list):
                getattr(self, name).extend(value)
            else:
                setattr(self, name, getattr(self, name) + value)


def latest_records(tasks: Path) -> dict[str, dict[str, Any]]:
    """The newest copy of each record by local_id, read only (as TaskStore.load_all picks)."""
    best: dict[str, tuple[tuple[int, bool, int, float], dict[str, Any]]] = {}
    if not tasks.is_dir():
        return {}
    for path in tasks.iterdir():
        if path.name.startswith(".") or path.suffix != ".json" or not path.is_file():
            continue
        data = json.loads(path.read_bytes())
        rank = (
            len(data.get("history") or []),
            data.get("task_id") is not None,
            data.get("attempts", 0),
            data.get("updated_at", 0.0),
        )
        if data["local_id"] not in best or rank > best[data["local_id"]][0]:
            best[data["local_id"]] = (rank, data)
    return {local_id: data for local_id, (_, data) in best.items()}


def temp_files(root: Path, images: set[str] | None = None) -> set[Path]:
    """Leftovers of interrupted writes (see `common.leftovers`); while children still run,
    only hidden files among the images count (the images themselves come and go)."""
    found = leftovers(root / "async_tasks", root / "out", images or set())
    if images is None:
        found = [p for p in found if p.parent != root / "out" or p.name.startswith(".")]
    return set(found)


def total_requests(emu: EmulatorThread) -> int:
    return sum(emu.stats()["requests"].values())


def traffic(emu: EmulatorThread) -> tuple[int, int, int]:
    """API requests, polls and image downloads the emulator has served so far."""
    stats = emu.stats()
    requests = stats["requests"]
    return sum(requests.values()), requests.get(RESULT, 0), stats["image_downloads"]


class Lane:
    """One project folder, its emulator, and the children run in it one at a time."""

    def __init__(self, name: str, seed: int, root: Path, emu: EmulatorThread) -> None:
        root.mkdir()
        (root / "asyncimg.toml").write_text(CONFIG, encoding="utf-8")
        self.name = name
        self.e2e = E2E(root, emu)
        self.emu = emu
        self.clock: Callable[[], float] = emu.config.clock  # time.time, as the children's
        self.rng = random.Random(f"{seed}:{name}")
        self.logs = root / "logs"
        self.logs.mkdir()
        self.children: list[Child] = []
        self.frames: dict[str, str] = {}  # output_path -> the prompt's unique key
        self.unrecorded: list[dict[str, Any]] = []
        self.unrecorded_resent = 0
        self.batches = 0
        self.marks: set[tuple[str, float]] = set()
        self.temps: set[Path] = set()
        self.startup = 1.0  # estimated s from start to the first request
        self.counts: Counter[str] = Counter()  # problems seen while the children ran
        self.problems: list[str] = []
        self.work = dict.fromkeys(COMMANDS, 1.0)  # estimated s from there to the end

    def note(self, kind: str, problem: str) -> None:
        self.counts[kind] += 1
        self.problems.append(problem)

    @property
    def root(self) -> Path:
        return self.e2e.root

    @property
    def kills(self) -> int:
        return sum(c.killed for c in self.children)

    # -- children ---------------------------------------------------------------------------

    def batch(self, new_frames: int = FRAMES_PER_BATCH) -> list[str]:
        """`submit --batch` of a fresh file: new frames, plus rows a killed submit never
        recorded."""
        rows, self.unrecorded = self.unrecorded, []
        self.unrecorded_resent += len(rows)
        for _ in range(new_frames):
            key = f"lane {self.name} frame {len(self.frames) + 1:03d}:"
            n = len(self.frames) + 1
            output = f"out/{self.name}-{n:03d}{EXTENSIONS[n % len(EXTENSIONS)]}"
            self.frames[output] = key
            rows.append({"prompt": f"{key} a lighthouse at dusk", "output_path": output})
        self.batches += 1
        path = self.e2e.write_batch(f"batch-{self.batches:03d}.jsonl", rows)
        return ["submit", "--batch", path.name]

    def run(self, args: list[str], plan: Plan | None) -> Child:
        """Run `asyncimg ARGS`; SIGKILL it as `plan` says unless it ended by then."""
        n = len(self.children)
        out_path = self.logs / f"{n:03d}-{args[0]}.out"
        err_path = self.logs / f"{n:03d}-{args[0]}.err"
        before = traffic(self.emu)
        with out_path.open("w") as out, err_path.open("w") as err:
            child = Child(args[0], self.clock(), plan)
            proc = subprocess.Popen(
                self.e2e.argv_for("asyncimg", *args),
                cwd=self.root,
                env=self.e2e.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
            try:
                self._wait(proc, child, plan, before[0])
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)  # not reaped yet: the pid is still its own
                proc.wait()
            finally:
                if proc.returncode is None:  # the test itself failed: leave no child behind
                    proc.kill()
                    proc.wait()
        child.ended = self.clock()
        child.returncode = proc.returncode
        child.killed = proc.returncode == -signal.SIGKILL
        self.children.append(child)
        self.emu.settle()  # what the dead child sent is taken in before anything else starts
        seen = [now - then for now, then in zip(traffic(self.emu), before, strict=True)]
        child.requests, child.polls, child.downloads = seen

        output = out_path.read_text(encoding="utf-8") + err_path.read_text(encoding="utf-8")
        where = f"lane {self.name} child {n} {args} ({plan}), see {out_path}"
        if SK in output:
            self.note("secret_leaks", f"{where}: the secret key is in its output")
        if "Traceback" in output:
            self.note("tracebacks", f"{where}: a traceback")
        if not child.killed and proc.returncode != 0:
            self.note("bad_exits", f"{where} exited {proc.returncode}")

        records = latest_records(self.root / "async_tasks")
        marks = {
            (r["local_id"], r["submit_started_at"]): r["output_path"]
            for r in records.values()
            if r["status"] == "pending" and r.get("submit_started_at") is not None
        }
        fresh = {k: v for k, v in marks.items() if k not in self.marks}
        if fresh and not child.killed:
            self.note("unkilled_marks", f"{where} left submits marked in flight: {fresh}")
        child.cut = set(fresh.values())
        self.marks = set(marks)
        temps = temp_files(self.root)
        child.temps = len(temps - self.temps)
        self.temps = temps
        if args[0] == "submit":
            recorded = {r["output_path"] for r in records.values()}
            rows = [json.loads(line) for line in (self.root / args[2]).read_text().splitlines()]
            missing = [row for row in rows if row["output_path"] not in recorded]
            if missing and not child.killed:
                self.note("unkilled_unrecorded", f"{where} did not record {missing}")
            self.unrecorded.extend(missing)
        return child

    def _wait(
        self, proc: subprocess.Popen[bytes], child: Child, plan: Plan | None, before: int
    ) -> None:
        """Watch for the child's first request (to anchor a kill, and to learn how long
        start-up takes), then wait out the plan; TimeoutExpired when it is time to kill."""
        began = time.monotonic()
        until = began + (plan.delay if plan and not plan.after_first_request else FINAL_TIMEOUT)
        while proc.poll() is None and time.monotonic() < until:
            if total_requests(self.emu) > before:
                child.first_request = self.clock()
                break
            time.sleep(0.01)
        if plan is not None and plan.after_first_request:
            proc.wait(timeout=plan.delay)
        else:
            proc.wait(timeout=max(0.0, until - time.monotonic()))

    def plan_for(self, command: str) -> Plan:
        """A seeded kill point: during start-up (a share of the kills), or a random time
        into the command's work, both scaled by what this lane has measured."""
        if self.rng.random() < STARTUP_SHARE:
            return Plan(self.startup * self.rng.uniform(0.02, 1.0), after_first_request=False)
        return Plan(self.work[command] * self.rng.uniform(0.0, 1.0), after_first_request=True)

    def learn(self, child: Child) -> None:
        """Keep the estimates in step with the machine's load."""
        if child.first_request is None:
            return
        self.startup = (self.startup + child.first_request - child.started) / 2
        if not child.killed:
            self.work[child.command] = (
                self.work[child.command] + child.ended - child.first_request
            ) / 2

    def args_for(self, command: str) -> list[str]:
        if command == "submit":
            return self.batch()
        return ["check"] if command == "check" else list(MONITOR)

    # -- phases -----------------------------------------------------------------------------

    def calibrate(self) -> None:
        """One unkilled run of each command measures start-up and work times here."""
        for command in COMMANDS:
            self.learn(self.run(self.args_for(command), None))

    def kill(self, target: int, stop: threading.Event) -> None:
        for command in itertools.cycle(COMMANDS):
            if self.kills >= target or stop.is_set():
                return
            self.learn(self.run(self.args_for(command), self.plan_for(command)))

    def finish(self) -> None:
        """What a user does after all that: submit what was never recorded, then one clean
        monitor to the end."""
        if self.unrecorded:
            self.run(self.batch(new_frames=0), None)
        self.run(list(MONITOR), None)

    # -- the verdict --------------------------------------------------------------------------

    def frame_of(self, prompt: str) -> str:
        (output,) = [out for out, key in self.frames.items() if key in prompt]
        return output

    def verify(self) -> Figures:
        tasks = self.root / "async_tasks"
        figures = Figures(problems=list(self.problems))
        for kind, count in self.counts.items():
            setattr(figures, kind, count)
        quarantine = tasks / ".quarantine"
        figures.quarantined = len(list(quarantine.iterdir())) if quarantine.is_dir() else 0
        files = [
            p
            for p in tasks.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix in (".json", ".txt")
        ]
        records = [json.loads(p.read_bytes()) for p in files]

        # 0 frames lost: one record per frame, completed, with one good image.
        per_frame = Counter(r["output_path"] for r in records)
        good: set[str] = set()
        for r in records:
            image = (self.root / r["output_path"]).resolve()
            wrote = [Path(f["path"]).resolve() for f in r["results"]]
            if r["status"] == "completed" and wrote == [image] and image.is_file():
                good.add(r["output_path"])
            else:
                figures.problems.append(f"lane {self.name}: record not done: {r}")
            for attempt in r["history"]:  # only automatic resubmits after unknown outcomes
                if attempt["status"] != "unconfirmed" or attempt["task_id"] is not None:
                    figures.misattributed += 1
                    figures.problems.append(f"lane {self.name}: odd history: {r}")
        figures.lost = sum(1 for f in self.frames if f not in good)
        figures.doubled = sum(1 for f in self.frames if per_frame[f] > 1)
        images = {Path(p).name for p in self.frames}
        out = self.root / "out"
        for name in sorted(images):
            if (out / name).is_file() and (problem := image_problem(out / name)):
                figures.bad_images += 1
                figures.problems.append(f"lane {self.name}: {problem}")
        stray = [p for p in out.iterdir() if not p.name.startswith(".") and p.name not in images]
        figures.stray_images = len(stray)

        # Billing: every task no record knows was sent by a child killed mid-submit of it.
        stats = billed(self.emu)
        log = stats["tasks"]
        known = [r["task_id"] for r in records]
        if len(set(known)) != len(known):
            figures.misattributed += len(known) - len(set(known))
            figures.problems.append(f"lane {self.name}: two records share a task id")
        prompts = {t["task_id"]: t["prompt"] for t in log}
        for r in records:  # each record holds a task the emulator made for that very frame
            if self.frames.get(r["output_path"], "\0") not in prompts.get(r["task_id"], ""):
                figures.misattributed += 1
                figures.problems.append(f"lane {self.name}: task of another frame: {r}")
        orphans = [t for t in log if t["task_id"] not in set(known)]
        starts = [c.started for c in self.children]
        blamed: Counter[tuple[int, str]] = Counter()
        for task in orphans:
            frame = self.frame_of(task["prompt"])
            i = bisect.bisect_right(starts, task["received_at"]) - 1
            sender = self.children[i] if i >= 0 else None
            if sender is None or not sender.killed or frame not in sender.cut:
                figures.unexplained += 1
                figures.problems.append(
                    f"lane {self.name}: billed task {task} for {frame} is in no record, and "
                    f"child {i} ({sender}) did not die with that frame's submit in flight"
                )
                continue
            blamed[i, frame] += 1
            if blamed[i, frame] > 1:  # one request per frame and kill
                figures.unexplained += 1
                figures.problems.append(f"lane {self.name}: child {i} billed {frame} twice")

        killed = [c for c in self.children if c.killed]
        figures.kills = Counter(c.command for c in killed)
        figures.natural_ends = sum(not c.killed and c.plan is not None for c in self.children)
        figures.kills_at_startup = sum(not c.requests and not c.cut and not c.temps for c in killed)
        figures.kills_mid_submit = sum(bool(c.cut) for c in killed)
        figures.submits_cut = sum(len(c.cut) for c in killed)
        figures.kills_mid_write = sum(bool(c.temps) for c in killed)
        figures.kills_after_polling = sum(bool(c.polls) for c in killed)
        figures.kills_after_downloading = sum(bool(c.downloads) for c in killed)
        figures.orphans = len(orphans)
        figures.unconfirmed_resubmits = sum(len(r["history"]) for r in records)
        figures.frames_over_default_budget = sum(
            r["unconfirmed_resubmits"] > DEFAULT_BUDGET for r in records
        )
        figures.frames = len(self.frames)
        figures.unrecorded_resent = self.unrecorded_resent
        figures.billed = stats["tasks_submitted"]
        left = temp_files(self.root, images)
        figures.temp_files = len(left)
        figures.problems.extend(f"lane {self.name}: leftover {p}" for p in sorted(left))
        figures.secret_leaks += len(secret_hits(self.root))
        return figures


def run_kills(
    root: Path,
    start_emulator: Callable[..., EmulatorThread],
    kills: int,
    seed: int = SEED,
) -> Figures:
    """At least `kills` SIGKILLs over two lanes under `root`, then the verdict."""
    root.mkdir()
    lanes = [
        Lane(
            name,
            seed,
            root / name,
            start_emulator(
                latency_seconds=LATENCY,
                gen_seconds=GEN,
                concurrency=CONCURRENCY,
                seed=seed + i,
            ),
        )
        for i, name in enumerate(LANES)
    ]
    stop = threading.Event()
    per_lane = math.ceil(kills / len(lanes))

    def drive(lane: Lane) -> None:
        try:
            lane.calibrate()
            lane.kill(per_lane, stop)
            if not stop.is_set():
                lane.finish()
        except BaseException:
            stop.set()  # the other lane stops too; its children are reaped as they end
            raise

    with ThreadPoolExecutor(len(lanes)) as pool:
        try:
            for future in [pool.submit(drive, lane) for lane in lanes]:
                future.result()
        finally:
            stop.set()  # e.g. Ctrl+C in the main thread: the lanes stop after their child

    figures = Figures()
    for lane in lanes:
        figures.add(lane.verify())
    return figures


def report(into: Report, f: Figures, target: int) -> None:
    """The kill trials' rows of the table."""
    part = "kills"
    into.problems.extend(f"kills: {p}" for p in f.problems)
    total = sum(f.kills.values())
    by_command = "/".join(str(f.kills[c]) for c in COMMANDS)
    into.add(part, "SIGKILLs", total, (">=", target), f"submit/check/monitor {by_command}")
    into.add(
        part,
        "kills mid-submit / mid-write / at start-up",
        f"{f.kills_mid_submit} / {f.kills_mid_write} / {f.kills_at_startup}",
        note=f"{f.submits_cut} submits cut; {f.kills_after_polling} after polling, "
        f"{f.kills_after_downloading} after fetching an image",
    )
    into.add(part, "frames", f.frames, note=f"{f.unrecorded_resent} rows resent after a submit")
    into.add(part, "lost frames", f.lost, 0)
    into.add(part, "frames with more than one record", f.doubled, 0)
    into.add(part, "images undecodable or format != extension", f.bad_images, 0)
    into.add(part, "stray images", f.stray_images, 0)
    into.add(part, "records quarantined", f.quarantined, 0)
    into.add(part, "billed tasks", f.billed, note="GET /_emulator/stats")
    into.add(
        part,
        "duplicate billed tasks",
        f.orphans,
        note=f"{f.unconfirmed_resubmits} unconfirmed resubmits; "
        f"{f.frames_over_default_budget} frames over the default budget",
    )
    into.add(part, "duplicates not explained by a kill mid-submit", f.unexplained, 0)
    into.add(
        part,
        "records with another frame's task, a shared one or an odd history",
        f.misattributed,
        0,
    )
    into.add(part, "tracebacks / unkilled non-zero exits", f.tracebacks + f.bad_exits, 0)
    into.add(
        part, "unkilled runs leaving a frame unsent", f.unkilled_marks + f.unkilled_unrecorded, 0
    )
    into.add(part, "temp files left after the clean run", f.temp_files, 0)
    into.add(part, "secret key in outputs or files", f.secret_leaks, 0)
