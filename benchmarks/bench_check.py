"""How long one check pass takes over a chapter-sized batch, by poll concurrency.

    make bench            # or: .venv/bin/python benchmarks/bench_check.py [--tasks 60] [--repeat 3]

Baseline: poll_concurrency=1, i.e. one task at a time, as a plain sequential checker does.
Every row runs in the same process and the same run, against the in-process emulator with
a fixed per-request latency (default 80 ms, a stand-in for the round trip to Beijing), so
the rows compare the client's scheduling, not the machine. Two scenarios:

- `polling`: every task still generating; one pass = one poll per task.
- `download`: every task done; one pass = poll + fetch image + verify + save, per task.
  The emulator's image cache is warmed first, so its rendering is not timed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from asyncimg.api import Workspace
from asyncimg.emulator import Emulator, EmulatorConfig
from asyncimg.lifecycle.check import Checker
from asyncimg.lifecycle.config import config_from_mapping
from asyncimg.lifecycle.submit import TaskRequest
from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.signing import Credentials
from asyncimg.store.states import TaskState
from asyncimg.store.store import TaskStore

AK, SK = "AKLTbench", "bench-secret"


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


async def one_pass(scenario: str, tasks: int, concurrency: int, latency: float) -> float:
    """Seconds for one check pass over `tasks` fresh tasks."""
    clock = Clock()
    config = EmulatorConfig(
        access_key=AK,
        secret_key=SK,
        gen_seconds=(60.0, 60.0),
        clock=clock,
        latency_seconds=latency,
        seed=1,
    )
    async with Emulator(config) as emu:

        def client() -> VisualClient:
            return VisualClient(
                Credentials(AK, SK),
                endpoint=emu.url,
                clock=lambda: datetime.fromtimestamp(emu.now(), UTC),
            )

        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            workspace = Workspace(
                TaskStore(root / "tasks"), config_from_mapping({}), client, clock=clock
            )
            requests = [
                TaskRequest(f"frame {i}", str(root / "out" / f"{i:03d}.png"), size="1024x1024")
                for i in range(tasks)
            ]
            report = await workspace.submit(requests)
            assert report.submitted == tasks, report.reasons()
            async with client() as c:
                if scenario == "download":
                    emu.advance(61)
                    await _warm(c, workspace)
                else:
                    emu.advance(30)
                checker = Checker(workspace.store, c, clock=clock, poll_concurrency=concurrency)
                started = time.perf_counter()
                summary = await checker.run_pass()
                elapsed = time.perf_counter() - started
            expected = TaskState.COMPLETED if scenario == "download" else TaskState.PROCESSING
            assert summary.counts[expected.value] == tasks, summary.counts
    return elapsed


async def _warm(client: VisualClient, workspace: Workspace) -> None:
    for record in workspace.store.load_all().records:
        assert record.task_id
        result = await client.get_result(record.req_key, record.task_id)
        for url in result.image_urls:
            await client.download(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=80.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8, 16])
    args = parser.parse_args(argv)
    latency = args.latency_ms / 1000
    table = Table(title=f"one check pass, {args.tasks} tasks, {args.latency_ms:g} ms latency")
    for col in ("scenario", "poll_concurrency", "median s", "min s", "tasks/s", "vs baseline"):
        table.add_column(col, justify="right")
    for scenario in ("polling", "download"):
        baseline: float | None = None
        for conc in args.concurrency:
            runs = [
                asyncio.run(one_pass(scenario, args.tasks, conc, latency))
                for _ in range(args.repeat)
            ]
            median = statistics.median(runs)
            if baseline is None:
                baseline = median
            table.add_row(
                scenario,
                f"{conc}{' (baseline)' if conc == args.concurrency[0] else ''}",
                f"{median:.2f}",
                f"{min(runs):.2f}",
                f"{args.tasks / median:.1f}",
                f"{baseline / median:.1f}x",
            )
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
