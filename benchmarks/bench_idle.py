"""What finished records cost an idle `check` and a `list`: seconds and peak RSS by folder size.

    make bench-idle    # or: .venv/bin/python benchmarks/bench_idle.py [--sizes 0 1000] [--repeat 3]

For each size a tasks folder is filled with valid `completed` record files (written
directly, not through the API), then every row runs in a fresh subprocess so that its peak
RSS is its own:

- `check`: one pass of `asyncimg check` (the CLI's code path, summary printed to
  /dev/null) with nothing to do, against the in-process emulator;
- `list`: `asyncimg list` (the rich table) to /dev/null.

Seconds are the command's own work, measured inside the subprocess (interpreter start and
imports excluded); peak RSS is the whole subprocess's `ru_maxrss`. Each row is the median
of `--repeat` runs. "no index" rows delete `.index` before each run (the first run over a
folder, or an old folder); the other rows run with the index the previous row left. "added"
is the difference from the 0-record folder in the same mode, "per 10k" that difference per
10,000 records (flat when the cost grows linearly). The folder's files are in the page
cache in every row.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

try:
    from asyncimg.store.index import INDEX_NAME, SETTLE_NS
except ImportError:  # a tree from before the index, for a baseline (PYTHONPATH=old/src)
    INDEX_NAME, SETTLE_NS = ".index", 0

AK, SK = "AKLTbenchidle", "bench-idle-secret"
# Records younger than SETTLE_NS are never served from the index; the folder is left to
# settle that long so that the rows measure old finished records, as a real folder has.
SETTLE_S = SETTLE_NS / 1e9 + 0.5
MODES = (
    ("check", True, "check, no index"),
    ("check", False, "check"),
    ("list", True, "list, no index"),
    ("list", False, "list"),
)


# -- the folder ---------------------------------------------------------------------------


def fill(tasks_dir: Path, count: int) -> None:
    """`count` completed records, as `check` leaves them, written straight to disk."""
    from asyncimg.store.record import TaskRecord, record_to_json

    tasks_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    base = time.time() - 86400
    template = json.loads(
        record_to_json(
            TaskRecord.model_validate(
                {
                    "task_id": "0",
                    "output_path": "frames/000000.png",
                    "filename": "000000.png",
                    "prompt": "雨夜的小巷，林晓撑着红伞回头张望",
                    "full_prompt": "雨夜的小巷，林晓撑着红伞回头张望，日系漫画风格，线条干净",
                    "character_images": ["chars/lin.png"],
                    "style": "manga",
                    "submit_time": base,
                    "status": "completed",
                    "local_id": "0" * 32,
                    "params": {"width": 1440, "height": 2560, "force_single": True},
                    "attempts": 1,
                    "created_at": base,
                    "updated_at": base + 30,
                    "completed_time": base + 30,
                    "results": [
                        {
                            "path": "frames/000000.png",
                            "sha256": "ab" * 32,
                            "bytes": 1234567,
                            "width": 1440,
                            "height": 2560,
                        }
                    ],
                    "working_dir": "/home/me/novel",
                }
            )
        )
    )
    for i in range(count):
        task_id = str(7392616336519610409 + i)
        t = base + i
        template.update(
            task_id=task_id,
            local_id=f"{i:032x}",
            output_path=f"frames/{i:06d}.png",
            filename=f"{i:06d}.png",
            submit_time=t,
            created_at=t,
            updated_at=t + 30,
            completed_time=t + 30,
        )
        template["results"][0]["path"] = f"frames/{i:06d}.png"
        data = json.dumps(template, ensure_ascii=False, indent=2) + "\n"
        fd = os.open(tasks_dir / f"{task_id}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)


# -- one row, in a subprocess -------------------------------------------------------------


def child(op: str, tasks_dir: Path, result_file: Path) -> int:
    """Run `op` once over `tasks_dir`; write its seconds and this process's peak RSS."""
    from asyncimg.cli import commands

    seconds: float
    if op == "check":
        with _emulator() as url:
            os.environ.update(
                {"VOLC_ACCESSKEY": AK, "VOLC_SECRETKEY": SK, "ASYNCIMG_ENDPOINT": url}
            )
            started = time.perf_counter()
            code = commands.run_check(tasks_dir, None)
            seconds = time.perf_counter() - started
    else:
        started = time.perf_counter()
        try:
            commands.list_.main(["--tasks-dir", str(tasks_dir)], standalone_mode=False)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result_file.write_text(json.dumps({"seconds": seconds, "rss_mb": peak_kb / 1024, "code": code}))
    return 0


@contextlib.contextmanager
def _emulator() -> Any:
    """The in-process emulator on its own loop in a thread; yields its URL."""
    from asyncimg.emulator import Emulator, EmulatorConfig

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    emu = Emulator(EmulatorConfig(access_key=AK, secret_key=SK, seed=1))
    asyncio.run_coroutine_threadsafe(emu.start(), loop).result(15)
    try:
        yield emu.url
    finally:
        asyncio.run_coroutine_threadsafe(emu.close(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def run_row(op: str, tasks_dir: Path, scratch: Path) -> dict[str, Any]:
    result_file = scratch / "result.json"
    result_file.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "ASYNCIMG_CONFIG"}
    subprocess.run(
        [sys.executable, __file__, "--child", op, str(tasks_dir), str(result_file)],
        cwd=scratch,  # no asyncimg.toml is picked up
        env=env,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    row: dict[str, Any] = json.loads(result_file.read_text())
    if row["code"] not in (0,):
        raise SystemExit(f"{op} over {tasks_dir} exited {row['code']}")
    return row


# -- the table ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 1000, 10000, 50000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per row (the median)")
    parser.add_argument("--child", nargs=3, metavar=("OP", "TASKS_DIR", "RESULT"))
    args = parser.parse_args(argv)
    if args.child:
        op, tasks_dir, result = args.child
        return child(op, Path(tasks_dir), Path(result))

    sizes = sorted(set(args.sizes) | {0})
    results: dict[tuple[str, int], dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        scratch = Path(tmp)
        for size in sizes:
            tasks_dir = scratch / f"tasks-{size}"
            started = time.perf_counter()
            fill(tasks_dir, size)
            print(f"{size} records written in {time.perf_counter() - started:.1f} s", flush=True)
            time.sleep(SETTLE_S)
            for op, cold, label in MODES:
                runs = []
                for _ in range(max(1, args.repeat)):
                    if cold:
                        (tasks_dir / INDEX_NAME).unlink(missing_ok=True)
                    runs.append(run_row(op, tasks_dir, scratch))
                results[(label, size)] = {
                    "seconds": statistics.median(r["seconds"] for r in runs),
                    "rss_mb": statistics.median(r["rss_mb"] for r in runs),
                }
            # Nothing may have changed a finished record.
            names = sorted(p.name for p in tasks_dir.iterdir() if not p.name.startswith("."))
            assert len(names) == size, (size, len(names))

    title = f"idle work over finished records (median of {max(1, args.repeat)} fresh subprocesses)"
    table = Table(title=title)
    table.add_column("command", no_wrap=True)
    for col in ("records", "seconds", "added s", "per 10k", "peak MB", "added MB"):
        table.add_column(col, justify="right")
    for _op, _cold, label in MODES:
        zero = results[(label, 0)]
        for size in sizes:
            row = results[(label, size)]
            table.add_row(
                label,
                f"{size:,}",
                f"{row['seconds']:.2f}",
                "" if size == 0 else f"{row['seconds'] - zero['seconds']:+.2f}",
                "" if size == 0 else f"{(row['seconds'] - zero['seconds']) * 1e4 / size:.2f}",
                f"{row['rss_mb']:.0f}",
                "" if size == 0 else f"{row['rss_mb'] - zero['rss_mb']:+.0f}",
            )
        table.add_section()
    Console().print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
