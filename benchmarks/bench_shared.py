"""One monitor vs three monitors on one shared store, one account (issue 11).

    make bench   # or: .venv/bin/python benchmarks/bench_shared.py [--quick] [--frames N]

Two chapters of N/2 frames each on a folder every "machine" shares, an emulator account
with concurrency 2 and 1-3 s tasks (time scale 1). Row 1: one `asyncimg monitor --store`;
row 2: three, with different machine ids, started together. Each row gets a fresh schema
and a fresh emulator. LB = sum(g_i) / C with g_i from the emulator's task log; makespan from
the monitors' start to the last frame done. Needs the PostgreSQL server the tests use
($ASYNCIMG_TEST_PG, default postgresql://root@127.0.0.1:5432/test); without one it says so
in one line and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table

from asyncimg import constants
from asyncimg.emulator import Emulator, EmulatorConfig

AK, SK = "AKLTbenchshared", "bench-shared-secret"
PG = os.environ.get("ASYNCIMG_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
ASYNCIMG = str(Path(sys.executable).parent / "asyncimg")
CONFIG = "[defaults]\nsubmit_rate = 20\npoll_rate = 40\ninterval = 5\n"


def reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG, connect_timeout=3):
            return True
    except Exception:
        return False


def fresh_schema() -> tuple[str, str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG else "?"
    return schema, f"{PG}{sep}options={quote(f'-csearch_path={schema}')}"


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def env(url: str, endpoint: str, machine: str, shared: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith(("VOLC_", "ASYNCIMG_"))}
    out.update(
        {
            constants.ENV_ENDPOINT: endpoint,
            constants.ENV_ACCESS_KEY: AK,
            constants.ENV_SECRET_KEY: SK,
            "ASYNCIMG_STORE": url,
            "ASYNCIMG_MACHINE_ID": machine,
            "ASYNCIMG_SHARED_DIRS": str(shared),
            "NO_PROXY": "127.0.0.1,localhost",
        }
    )
    return out


async def run(argv: list[str], cwd: Path, environ: dict[str, str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=environ,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await proc.wait()


async def one_row(frames: int, monitors: int, root: Path) -> dict[str, Any]:
    schema, url = fresh_schema()
    emu = Emulator(
        EmulatorConfig(access_key=AK, secret_key=SK, concurrency=2, gen_seconds=(1.0, 3.0), seed=3)
    )
    await emu.start()
    try:
        shared = root / "nas"
        for name in ("ch1", "ch2"):
            folder = shared / name
            folder.mkdir(parents=True)
            (folder / "asyncimg.toml").write_text(CONFIG, encoding="utf-8")
            rows = [
                {"prompt": f"{name} {i}", "output_path": f"out/{i:03d}.png"}
                for i in range(frames // 2)
            ]
            batch = folder / "batch.jsonl"
            batch.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
            environ = env(url, emu.url, "m0", shared)
            await run([ASYNCIMG, "submit", "--batch", batch.name], folder, environ)
        started = time.time()
        homes = []
        for m in range(monitors):
            home = root / f"m{m}"
            home.mkdir()
            (home / "asyncimg.toml").write_text(CONFIG, encoding="utf-8")
            homes.append(home)
        codes = await asyncio.gather(
            *(
                run([ASYNCIMG, "monitor"], home, env(url, emu.url, f"m{m}", shared))
                for m, home in enumerate(homes)
            )
        )
        stats = emu.stats()
        tasks = stats["tasks"]
        done = [t for t in tasks if t.get("done_at") is not None]
        makespan = max(t["done_at"] for t in done) - emu.emulator_time(started)
        lb = sum(t["done_at"] - t["submitted_at"] for t in done) / 2
        limits = sum(n for code, n in stats["errors"].items() if str(code) in ("50429", "50430"))
        return {
            "codes": codes,
            "done": len(done),
            "billed": stats["tasks_submitted"],
            "makespan": makespan,
            "lb": lb,
            "x_lb": makespan / lb if lb else float("nan"),
            "limits": limits / frames,
            "peak": stats["peak_unfinished"],
            "gets": stats["requests"].get(constants.ACTION_GET_RESULT, 0) / frames,
        }
    finally:
        await emu.close()
        drop_schema(schema)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="20 frames instead of 60")
    parser.add_argument("--frames", type=int, default=None)
    args = parser.parse_args()
    if not reachable():
        print(f"bench_shared: no PostgreSQL server answers at {PG}: skipped")
        return
    frames = args.frames or (20 if args.quick else 60)
    table = Table(title=f"shared store: {frames} frames, 2 chapters, concurrency 2, 1-3 s tasks")
    for col in (
        "monitors",
        "frames done",
        "tasks billed",
        "makespan s",
        "× LB",
        "50429+50430 /frame",
        "GetResult /frame",
        "peak unfinished",
    ):
        table.add_column(col, justify="right")
    for monitors in (1, 3):
        with tempfile.TemporaryDirectory() as tmp:
            res = await one_row(frames, monitors, Path(tmp))
        table.add_row(
            str(monitors),
            str(res["done"]),
            str(res["billed"]),
            f"{res['makespan']:.0f}",
            f"{res['x_lb']:.2f}",
            f"{res['limits']:.2f}",
            f"{res['gets']:.2f}",
            str(res["peak"]),
        )
    Console(width=140).print(table)


if __name__ == "__main__":
    asyncio.run(main())
