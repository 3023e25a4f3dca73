"""20 % injected faults: every API request and every image download has a one-in-five chance
of a fault (a 5xx, a dropped connection, a slow reply, 50429/50430, and for images a body cut
in half), and every frame must still complete.

`submit --batch`, then `monitor` (run again, at most `MONITOR_RUNS` times, if it ends with
frames waiting for the user). A dropped or 5xx'd submit has an unknown outcome and may bill a
second task (README "Paying once"); the folder's `max_unconfirmed_resubmits` is the most the
config allows, so no frame waits for the user, and the table counts the duplicates and checks
each against a resubmit of an `unconfirmed` frame.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.conftest import E2E, EmulatorThread

from asyncimg.emulator import FaultKind

from .common import Report, billed, frames_census, leftovers, secret_hits

RATE = 0.2
KINDS = frozenset({FaultKind.SERVER_ERROR, FaultKind.DROP, FaultKind.SLOW, FaultKind.LIMIT})
IMAGE_KINDS = frozenset({FaultKind.TRUNCATED_BODY})  # plus 5xx, drop, slow (KINDS)
BUDGET = 10
DEFAULT_BUDGET = 1
MONITOR_RUNS = 3
CONFIG = f'[defaults]\nsize = "1024x1024"\nmax_unconfirmed_resubmits = {BUDGET}\n'


def run_faults(
    root: Path, start_emulator: Callable[..., EmulatorThread], frames: int, seed: int
) -> Report:
    emu = start_emulator(
        concurrency=4,
        gen_seconds=(0.3, 1.0),
        seed=seed,
        fault_rate=RATE,
        image_fault_rate=RATE,
        fault_kinds=KINDS | IMAGE_KINDS,
        slow_seconds=1.5,
    )
    root.mkdir()
    (root / "asyncimg.toml").write_text(CONFIG, encoding="utf-8")
    e2e = E2E(root, emu)
    rows = [
        {
            "prompt": f"fault frame {i:03d}: a kite over the dunes",
            "output_path": f"out/f{i:03d}.jpg",
        }
        for i in range(1, frames + 1)
    ]
    e2e.write_batch("chapter.jsonl", rows)
    runs = [e2e.asyncimg("submit", "--batch", "chapter.jsonl", timeout=300)]
    for _ in range(MONITOR_RUNS):
        runs.append(e2e.asyncimg("monitor", "--interval", "1", timeout=600))
        if runs[-1].returncode == 0:
            break

    stats = billed(emu)
    records = e2e.records()
    outputs = {row["output_path"] for row in rows}
    lost, doubled, problems = frames_census(records, root, outputs)
    history: list[dict[str, Any]] = [h for r in records for h in r.get("history") or []]
    resubmits = sum(h.get("status") == "unconfirmed" for h in history)
    duplicates = stats["tasks_submitted"] - len(records)
    fired = stats["faults_fired"]
    errors = stats["errors"]
    requests = sum(stats["requests"].values())
    downloads = stats["image_downloads"]
    faults = sum(fired.values())

    part = "faults"
    into = Report()
    into.add(
        part,
        "requests + image downloads / faults",
        f"{requests + downloads} / {faults}",
        note=f"{100 * faults / max(1, requests + downloads):.0f} %: "
        + ", ".join(f"{k} {v}" for k, v in sorted(fired.items()))
        + f"; 50429 {errors.get('50429', 0)}, 50430 {errors.get('50430', 0)}",
    )
    into.add(part, "frames completed", f"{frames - lost} / {frames}", f"{frames} / {frames}")
    into.add(part, "lost frames", lost, 0)
    into.add(part, "frames with more than one record", doubled, 0)
    into.add(part, "images undecodable or format != extension", len(problems), 0)
    into.add(
        part,
        "duplicate billed tasks",
        duplicates,
        note=f"{resubmits} unconfirmed resubmits; "
        f"{sum(r.get('unconfirmed_resubmits', 0) > DEFAULT_BUDGET for r in records)} frames over "
        f"the default budget",
    )
    into.add(part, "duplicates beyond unconfirmed resubmits", max(0, duplicates - resubmits), 0)
    into.add(
        part,
        "tracebacks",
        sum("Traceback" in r.output for r in runs),
        0,
        note=f"{len(runs)} runs, exits " + ", ".join(str(r.returncode) for r in runs),
    )
    images = {Path(p).name for p in outputs}
    into.add(part, "temp files left", len(leftovers(root / "async_tasks", root / "out", images)), 0)
    into.add(part, "secret key in outputs or files", len(secret_hits(root)), 0)
    return into
