"""Four checkers and a submit at once on one tasks folder: each frame is submitted once and
each image downloaded once.

A first `submit --batch` leaves most frames queued locally (the account takes
`CONCURRENCY` unfinished tasks); then four checkers loop on the folder (two `asyncimg check`,
the guide's `check_async_tasks.py --check-once`, and an `asyncimg monitor`, each started again
as soon as it ends) while a second `submit --batch` adds as many frames again. When every
frame is done the emulator's stats say how often each frame's prompt was submitted and how
often each task's image was fetched.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import E2E, EmulatorThread

from .common import Report, billed, frames_census, leftovers, secret_hits

CONCURRENCY = 4
CHECKERS = (
    ("asyncimg", "check"),
    ("asyncimg", "check"),
    ("check_async_tasks.py", "--check-once"),
    ("asyncimg", "monitor", "--interval", "1"),
)
TIMEOUT = 240.0


def _rows(first: int, count: int) -> list[dict[str, str]]:
    return [
        {"prompt": f"crowd frame {i:03d}: a harbour at dawn", "output_path": f"out/c{i:03d}.png"}
        for i in range(first, first + count)
    ]


def run_crowd(
    root: Path, start_emulator: Callable[..., EmulatorThread], frames: int, seed: int
) -> Report:
    """`frames` frames in two batches of half, the second sent while four checkers run."""
    emu = start_emulator(concurrency=CONCURRENCY, gen_seconds=(0.3, 1.0), seed=seed)
    root.mkdir()
    (root / "asyncimg.toml").write_text('[defaults]\nsize = "1024x1024"\n', encoding="utf-8")
    e2e = E2E(root, emu)
    half = frames // 2
    first, second = _rows(1, half), _rows(half + 1, frames - half)
    outputs: list[str] = []
    exits: Counter[int] = Counter()
    tracebacks = 0
    lock = threading.Lock()

    def ran(proc: subprocess.CompletedProcess[str]) -> None:
        nonlocal tracebacks
        with lock:
            outputs.append(proc.stdout + proc.stderr)
            exits[proc.returncode] += 1
            tracebacks += "Traceback" in proc.stderr

    def run(*argv: str) -> None:
        ran(
            subprocess.run(
                e2e.argv_for(argv[0], *argv[1:]),
                cwd=root,
                env=e2e.env(),
                capture_output=True,
                text=True,
                encoding="utf-8",
                timeout=TIMEOUT,
                check=False,
            )
        )

    e2e.write_batch("first.jsonl", first)
    e2e.write_batch("second.jsonl", second)
    run("asyncimg", "submit", "--batch", "first.jsonl")
    submitted = threading.Event()
    deadline = time.monotonic() + TIMEOUT

    def done() -> bool:
        records = e2e.records()
        finished = sum(r.get("status") in ("completed", "failed") for r in records)
        return submitted.is_set() and len(records) >= frames and finished == len(records)

    def checker(argv: tuple[str, ...]) -> None:
        while not done() and time.monotonic() < deadline:
            run(*argv)

    def submitter() -> None:
        try:
            run("asyncimg", "submit", "--batch", "second.jsonl")
        finally:
            submitted.set()

    threads = [threading.Thread(target=checker, args=(argv,)) for argv in CHECKERS]
    threads.append(threading.Thread(target=submitter))
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - began

    stats = billed(emu)
    per_prompt = Counter(t["prompt"].split(":")[0] for t in stats["tasks"])
    wanted = {row["prompt"].split(":")[0] for row in first + second}
    records = e2e.records()
    lost, doubled, problems = frames_census(
        records, root, {row["output_path"] for row in first + second}
    )
    fetched = Counter(stats["image_downloads_by_task"])
    by_task = [fetched[r["task_id"]] for r in records if r.get("task_id")]
    images = {Path(row["output_path"]).name for row in first + second}

    part = "crowd"
    into = Report(seconds={part: seconds})
    into.add(
        part,
        "frames / checkers",
        f"{frames} / {len(CHECKERS)}",
        note=f"{sum(exits.values())} runs in {seconds:.0f} s; exits {dict(sorted(exits.items()))}",
    )
    into.add(part, "lost frames", lost, 0)
    into.add(part, "frames with more than one record", doubled, 0)
    into.add(part, "frames submitted more than once", sum(per_prompt[p] > 1 for p in wanted), 0)
    into.add(part, "frames never submitted", sum(per_prompt[p] == 0 for p in wanted), 0)
    into.add(part, "images downloaded more than once", sum(n > 1 for n in by_task), 0)
    into.add(part, "images undecodable or format != extension", len(problems), 0)
    into.add(
        part, "tracebacks / exits other than 0", tracebacks + sum(exits.values()) - exits[0], 0
    )
    into.add(
        part,
        "temp files left",
        len(leftovers(root / "async_tasks", root / "out", images)),
        0,
    )
    into.add(part, "secret key in outputs or files", len(secret_hits(root, outputs)), 0)
    return into
