"""`make demo`: the main job end to end against the embedded emulator.

A 12-frame storyboard (two recurring characters, two styles) is submitted in one batch to
an in-process emulator whose account concurrency is below 12, so the local queue does
real work; a monitor then runs to completion with a progress display.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from asyncimg.api import Workspace
from asyncimg.cli.gallery_cmd import write_gallery
from asyncimg.cli.output import MonitorDisplay, print_summary
from asyncimg.emulator import Emulator, EmulatorConfig
from asyncimg.gallery.source import Chapter
from asyncimg.i18n import _, set_language
from asyncimg.lifecycle.config import load_config
from asyncimg.lifecycle.submit import TaskRequest
from asyncimg.protocol.client import VisualClient
from asyncimg.protocol.signing import Credentials
from asyncimg.samples import storyboard
from asyncimg.store.states import TaskState
from asyncimg.store.store import TaskStore


async def run_demo(
    requests: Sequence[TaskRequest],
    tasks_dir: Path,
    *,
    concurrency: int = 4,
    gen_seconds: tuple[float, float] = (1.0, 3.0),
    interval: float = 1.0,
    seed: int = 7,
    console: Console | None = None,
) -> int:
    """Submit `requests` to a fresh in-process emulator and monitor them to the end."""
    console = console or Console(highlight=False)
    config = EmulatorConfig(
        access_key="AKLTdemo",
        secret_key="demo-secret-not-for-real-use",
        gen_seconds=gen_seconds,
        concurrency=concurrency,
        seed=seed,
    )
    async with Emulator(config) as emulator:
        console.print(
            _(
                "emulator on {url} (account concurrency {concurrency}, {low:g}-{high:g} s a frame)"
            ).format(
                url=emulator.url, concurrency=concurrency, low=gen_seconds[0], high=gen_seconds[1]
            ),
            markup=False,
        )

        def client() -> VisualClient:
            return VisualClient(
                Credentials(config.access_key, config.secret_key),
                endpoint=emulator.url,
                retry_base_delay=0.05,
            )

        workspace = Workspace(TaskStore(tasks_dir), load_config(None), client)
        started = time.monotonic()
        report = await workspace.submit(requests)
        console.print(
            _(
                "batch of {n}: {submitted} submitted, {queued} queued locally "
                "(emulator said 50430), {rejected} rejected"
            ).format(
                n=len(requests),
                submitted=report.submitted,
                queued=report.queued,
                rejected=report.rejected,
            ),
            markup=False,
        )
        display = MonitorDisplay(console)
        with display:
            outcome = await workspace.monitor(
                interval=interval, on_pass=display.update, on_event=display.event
            )
        elapsed = time.monotonic() - started
        if outcome.last is not None:
            print_summary(console, outcome.last, workspace)
        stats = emulator.stats()
    records = workspace.store.load_all().records
    done = [r for r in records if r.status is TaskState.COMPLETED]
    console.print(
        _(
            "{done}/{total} frames on disk in {seconds:.1f} s; "
            "emulator saw peak {peak} unfinished tasks"
        ).format(
            done=len(done),
            total=len(records),
            seconds=elapsed,
            peak=stats.get("peak_unfinished", "?"),
        ),
        markup=False,
    )
    for record in sorted(done, key=lambda r: r.output_path):
        console.print(f"  {record.output_path}", markup=False)
    console.print(_("task records: {folder}/").format(folder=tasks_dir), markup=False)
    gallery = tasks_dir.parent / "gallery.html"
    write_gallery(Chapter.of(workspace.store), gallery)
    console.print(
        _("every frame on one page: {page} (live: asyncimg serve --tasks-dir {folder})").format(
            page=gallery, folder=tasks_dir
        ),
        markup=False,
    )
    return 0 if len(done) == len(records) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asyncimg.demo", description=__doc__)
    parser.add_argument("--out", default="demo_output", help="folder for frames and records")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep an earlier demo's output")
    parser.add_argument("--lang", default=None, help="language of messages: zh or en")
    args = parser.parse_args(argv)
    set_language(args.lang)
    out = Path(args.out)
    if out.exists() and not args.keep:
        shutil.rmtree(out)
    requests = storyboard(out, frames=args.frames)
    try:
        return asyncio.run(run_demo(requests, out / "async_tasks", concurrency=args.concurrency))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
