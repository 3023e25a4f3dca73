"""How fast each way of watching a batch finishes it, against the account's own limit.

    make bench   # or: .venv/bin/python benchmarks/bench_monitor.py [--quick] [--scale 100]

One table, every row in the same run. The emulator runs in this process; each row's client
runs in a subprocess of this script (a fresh tasks folder, fresh emulator), so the client's
CPU and peak RSS are that subprocess's own `getrusage` (CPU from just before the client
starts to its end; RSS includes the interpreter). Scenarios (issue 7):

(a) a chapter on a realistic account: 30 frames, `EmulatorConfig.realistic(time_scale=S)`.
    The client sees real seconds, so every time constant handed to it is divided by S (the
    scheduler's floor and interval, its submit and poll rates multiplied by S; the pass loop's
    and the sequential loop's intervals). Times in the table are emulator-clock seconds.
(b) 200 frames, concurrency 8, 5 QPS, 1-4 s generation, time scale 1.

LB = max(sum(g_i) / C, N / Q), g_i from the emulator's own task log (done_at - submitted_at).
Staleness: the task's done_at on the emulator clock -> the image file's mtime mapped onto it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from asyncimg import constants
from asyncimg.emulator import Emulator, EmulatorConfig

AK, SK = "AKLTbench", "bench-secret"
SEED_INTERVAL_S = 30.0


@dataclass
class Scenario:
    key: str
    title: str
    frames: int
    config: dict[str, Any]
    scale: float
    limit: int
    qps: float


@dataclass
class Row:
    client: str
    frames: int
    note: str = ""
    warm: bool = False
    """Run a previous chapter in the same tasks folder first (not measured)."""


# -- the client side (runs in a subprocess) --------------------------------------------------


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _child(spec: dict[str, Any]) -> dict[str, Any]:
    from asyncimg.api import Workspace
    from asyncimg.lifecycle.config import config_from_mapping
    from asyncimg.lifecycle.monitor import monitor
    from asyncimg.lifecycle.submit import TaskRequest, build_record, request_fields
    from asyncimg.protocol.client import VisualClient
    from asyncimg.protocol.errors import ConcurrencyLimited, RateLimited
    from asyncimg.protocol.signing import Credentials
    from asyncimg.store.store import TaskStore

    root = Path(spec["root"])
    scale = float(spec["scale"])
    config = config_from_mapping({})

    def client_factory(url: str = spec["url"]) -> VisualClient:
        return VisualClient(Credentials(AK, SK), endpoint=url)

    def chapter(name: str) -> list[Any]:
        records = []
        for i in range(int(spec["frames"])):
            out = root / name / f"{i:03d}.png"
            request = TaskRequest(f"{name} frame {i}", str(out), size="1024x1024")
            records.append(build_record(request, config, now=time.time()))
        return records

    workspace = Workspace(TaskStore(root / "tasks"), config, client_factory)
    if spec.get("warm_url"):
        # A previous chapter in the same tasks folder, on another emulator (so that the
        # measured one sees only this chapter): what it learned is in .scheduler-state.
        for record in chapter("previous"):
            workspace.store.save(record)
        warm = Workspace(
            TaskStore(root / "tasks"), config, lambda: client_factory(spec["warm_url"])
        )
        async with client_factory(spec["warm_url"]) as client:
            await _scheduler(warm.checker(client), config, scale).run()
    records = chapter("out")
    kind = spec["client"]
    cpu0, t0 = _cpu(), time.time()
    if kind == "seed":
        await _seed_loop(
            client_factory, records, request_fields, scale, RateLimited, ConcurrencyLimited
        )
    else:
        for record in records:
            workspace.store.save(record)
        async with client_factory() as client:
            checker = workspace.checker(client)
            if kind == "monitor":
                scheduler = _scheduler(checker, config, scale)
                await scheduler.run()
                print(
                    f"    scheduler: cap {scheduler.cap}, submits {scheduler.submits}, "
                    f"polls {scheduler.polls}",
                    file=sys.stderr,
                )
            else:
                await monitor(checker, interval=float(spec["interval"]) / scale)
    t1, cpu1 = time.time(), _cpu()
    files = dict(_SEED_DONE) if kind == "seed" else _mtimes(workspace.store.load_all().records)
    return {
        "start": t0,
        "end": t1,
        "cpu": cpu1 - cpu0,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "files": files,
        "statuses": (
            {}
            if kind == "seed"
            else _count(r.status.value for r in workspace.store.load_all().records)
        ),
    }


def _scheduler(checker: Any, config: Any, scale: float) -> Any:
    """The monitor at its defaults, every time constant divided by the time scale."""
    from asyncimg.lifecycle.schedule import (
        DEFAULT_POLL_FLOOR_S,
        DEFAULT_POLL_RATE,
        DEFAULT_SUBMIT_RATE,
    )
    from asyncimg.lifecycle.scheduler import WATCH_EVERY_S, Scheduler

    d = config.defaults
    return Scheduler(
        checker,
        interval=d.interval / scale,
        floor=DEFAULT_POLL_FLOOR_S / scale,
        max_in_flight=d.max_in_flight,
        submit_rate=(d.submit_rate or DEFAULT_SUBMIT_RATE) * scale if scale != 1 else d.submit_rate,
        poll_rate=(d.poll_rate or DEFAULT_POLL_RATE) * scale if scale != 1 else d.poll_rate,
        backoff_base=1.0 / scale,
        backoff_cap=15.0 / scale,
        watch_every=WATCH_EVERY_S / scale,
    )


_SEED_DONE: dict[str, float | None] = {}


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


async def _seed_loop(
    client_factory: Any,
    records: list[Any],
    request_fields: Any,
    scale: float,
    rate_limited: type[Exception],
    concurrency_limited: type[Exception],
) -> None:
    """The guide's loop: submit one frame, poll it every 30 s until done, download, next."""
    every = SEED_INTERVAL_S / scale
    async with client_factory() as client:
        for record in records:
            fields = request_fields(record)
            while True:
                try:
                    task_id = await client.submit(record.req_key, fields)
                    break
                except (rate_limited, concurrency_limited):
                    await asyncio.sleep(every)
            while True:
                await asyncio.sleep(every)
                try:
                    result = await client.get_result(record.req_key, task_id)
                except rate_limited:
                    continue
                if result.status.value == "done":
                    break
            data = await client.download(result.image_urls[0])
            _SEED_DONE[task_id] = _save(Path(record.output_path), data)


def _save(path: Path, data: bytes) -> float:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.stat().st_mtime


def _mtimes(records: list[Any]) -> dict[str, float | None]:
    """Each record's task id -> its image file's mtime (None: no image)."""
    out: dict[str, float | None] = {}
    for record in records:
        path = Path(record.output_path)
        out[record.task_id or ""] = path.stat().st_mtime if path.exists() else None
    return out


# -- the emulator side ------------------------------------------------------------------------


async def run_row(scenario: Scenario, row: Row, interval: float | None) -> dict[str, Any]:
    cfg = dict(scenario.config)
    cfg.update(access_key=AK, secret_key=SK, seed=7)
    emu = Emulator(EmulatorConfig(**cfg))
    earlier = Emulator(EmulatorConfig(**(cfg | {"seed": 8})))
    async with emu, earlier:
        with tempfile.TemporaryDirectory() as tmp:
            spec = {
                "url": emu.url,
                "warm_url": earlier.url if row.warm else None,
                "root": tmp,
                "frames": row.frames,
                "client": row.client,
                "interval": interval,
                "scale": scenario.scale,
            }
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--child",
                json.dumps(spec),
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"row {row.client} failed (exit {proc.returncode})")
            child = json.loads(out.decode().strip().splitlines()[-1])
        stats = emu.stats()
        log = {t["task_id"]: t for t in stats["tasks"]}
        stale = [
            emu.emulator_time(mtime) - log[task_id]["done_at"]
            for task_id, mtime in child["files"].items()
            if mtime is not None and task_id in log
        ]
        durations = [t["done_at"] - t["submitted_at"] for t in stats["tasks"]]
    n = row.frames
    lb = max(sum(durations) / scenario.limit, n / scenario.qps)
    makespan = (child["end"] - child["start"]) * scenario.scale
    errors = stats["errors"]
    limits = errors.get("50429", 0) + errors.get("50430", 0)
    by_action = stats.get("rate_limited", {})
    per_code = (
        f"{by_action.get(constants.ACTION_SUBMIT, 0)}+"
        f"{by_action.get(constants.ACTION_GET_RESULT, 0)}/{errors.get('50430', 0)}"
    )
    return {
        "makespan": makespan,
        "real": child["end"] - child["start"],
        "lb": lb,
        "x_lb": makespan / lb,
        "polls": stats["requests"].get(constants.ACTION_GET_RESULT, 0) / n,
        "limits": limits / n,
        "per_code": per_code,
        "stale_p50": statistics.median(stale) if stale else float("nan"),
        "stale_p95": _p95(stale),
        "cpu": child["cpu"],
        "rss_mb": child["maxrss_kb"] / 1024,
        "done": len(stale),
        "tasks": len(durations),
        "statuses": child["statuses"],
        "refill": _refill(stats["tasks"], scenario.limit),
    }


def _refill(log: list[dict[str, Any]], limit: int) -> float:
    """Mean seconds a slot stood free before the next submit reached the emulator: for each
    submit after the first `limit`, the time since the task whose finish freed its slot."""
    done = sorted(t["done_at"] for t in log)
    received = sorted(t["received_at"] for t in log)
    gaps = [max(0.0, r - d) for r, d in zip(received[limit:], done, strict=False)]
    return statistics.fmean(gaps) if gaps else float("nan")


def _p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="(b) with 40 frames, not 200")
    parser.add_argument("--scale", type=float, default=20.0, help="time scale of (a)")
    parser.add_argument(
        "--only", help="comma-separated scenarios and/or clients to run, e.g. b,monitor"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        profile_to = os.environ.get("ASYNCIMG_BENCH_PROFILE")
        if profile_to:  # where the client's CPU goes: `python -m pstats FILE`
            import cProfile

            with cProfile.Profile() as profile:
                result = asyncio.run(_child(json.loads(args.child)))
            profile.dump_stats(f"{profile_to}.{os.getpid()}")
        else:
            result = asyncio.run(_child(json.loads(args.child)))
        print(json.dumps(result))
        return 0

    scale = args.scale
    n_b = 40 if args.quick else 200
    a = Scenario(
        "a",
        f"(a) realistic account, 30 frames, C=1, 2 QPS, 10-60 s, time_scale {scale:g}",
        30,
        {
            "concurrency": 1,
            "qps": 2.0,
            "gen_seconds": (10.0, 60.0),
            "time_scale": scale,
        },
        scale,
        1,
        2.0,
    )
    assert EmulatorConfig.realistic(time_scale=scale).gen_seconds == a.config["gen_seconds"]
    b = Scenario(
        "b",
        f"(b) {n_b} frames, C=8, 5 QPS, 1-4 s, time_scale 1",
        n_b,
        {"concurrency": 8, "qps": 5.0, "gen_seconds": (1.0, 4.0)},
        1.0,
        8,
        5.0,
    )
    table = Table(title="monitor benchmark (times in emulator-clock seconds)")
    for col in (
        "scenario",
        "client",
        "makespan s",
        "× LB",
        "GetResult /task",
        "50429+50430 /task",
        "stale p50 / p95 s",
        "client CPU s",
        "peak RSS MB",
        "notes",
    ):
        table.add_column(col, justify="right" if col not in ("client", "notes") else "left")
    results: dict[tuple[str, str], dict[str, Any]] = {}
    for sc in (a, b):
        rows: list[tuple[str, Row, float | None]] = [
            ("new monitor (defaults)", Row("monitor", sc.frames), None),
            ("new monitor, next chapter", Row("monitor", sc.frames, warm=True), None),
            ("pass loop, 30 s", Row("pass", sc.frames), 30.0),
            ("pass loop, 1 s", Row("pass", sc.frames), 1.0),
            ("seed loop (sequential, 30 s)", Row("seed", sc.frames), None),
        ]
        if sc.key == "b":  # the 30 s rows would take 12-100 min: a subset, extrapolated
            rows = [
                (label, row, interval)
                if label not in ("pass loop, 30 s", "seed loop (sequential, 30 s)")
                else (label, replace(row, frames=4 if row.client == "seed" else 24), interval)
                for label, row, interval in rows
            ]
            if args.quick:
                rows = [
                    (la, replace(r, frames=min(r.frames, 2)) if r.client == "seed" else r, i)
                    for la, r, i in rows
                ]
        only = set(args.only.split(",")) if args.only else set()
        if only & {"a", "b"} and sc.key not in only:
            continue
        for label, row, interval in rows:
            if only & {"monitor", "pass", "seed"} and row.client not in only:
                continue
            started = time.perf_counter()
            r = run_row(sc, row, interval)
            res = asyncio.run(r)
            wall = time.perf_counter() - started
            notes = []
            makespan = res["makespan"]
            if row.frames != sc.frames:
                makespan = makespan * sc.frames / row.frames
                notes.append(f"ran {row.frames} frames; makespan ×{sc.frames}/{row.frames}")
            if sc.scale != 1:
                notes.append(f"{res['real']:.1f} s real")
            if res["done"] != row.frames:
                notes.append(f"only {res['done']}/{row.frames} on disk {res['statuses']}")
            if res["tasks"] != row.frames:
                notes.append(f"{res['tasks']} tasks billed")
            notes.append(f"50429 submit+poll/50430: {res['per_code']}")
            notes.append(f"slot refilled after {res['refill']:.2f} s")
            notes.append(f"LB {res['lb']:.0f} s; row took {wall:.0f} s")
            results[(sc.key, label)] = res | {"makespan_full": makespan}
            table.add_row(
                sc.key,
                label,
                f"{makespan:.0f}",
                f"{res['x_lb']:.2f}",
                f"{res['polls']:.2f}",
                f"{res['limits']:.2f}",
                f"{res['stale_p50']:.1f} / {res['stale_p95']:.1f}",
                f"{res['cpu']:.1f}",
                f"{res['rss_mb']:.0f}",
                "; ".join(notes),
            )
            print(f"  done: ({sc.key}) {label} in {wall:.0f} s", file=sys.stderr, flush=True)
        table.add_section()

    console = Console(width=200)
    console.print(table)
    if args.quick:
        console.print(f"--quick: scenario (b) ran {n_b} frames, not 200.")
    console.print(
        f"(a) runs at time_scale {scale:g}: the scheduler gets floor and interval ÷{scale:g} and "
        f"submit/poll rates ×{scale:g}; the pass and sequential loops' intervals ÷{scale:g}. "
        "So are its limit backoff (1-15 s) and folder watch (2 s)."
    )
    console.print("Client CPU and RSS: each row's client runs in its own subprocess (getrusage).")
    console.print("\nTargets (issue 7), checked per row:")
    seed_row = results.get(("b", "seed loop (sequential, 30 s)"))
    seed_b = seed_row["makespan_full"] if seed_row else float("nan")
    for (key, label), res in results.items():
        checks = [
            ("makespan ≤ 1.15 × LB", res["x_lb"] <= 1.15),
            ("≤ 3 GetResult/task", res["polls"] <= 3),
            ("≤ 0.1 limit replies/task", res["limits"] <= 0.1),
        ]
        if key == "b":
            checks += [
                ("≥ 2× faster than seed loop", res["makespan_full"] * 2 <= seed_b),
                ("staleness p95 ≤ 1.5 s", res["stale_p95"] <= 1.5),
                ("CPU ≤ 3 s", res["cpu"] <= 3),
                ("RSS ≤ 100 MB", res["rss_mb"] <= 100),
            ]
        met = ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in checks)
        console.print(f"  ({key}) {label}: {met}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
