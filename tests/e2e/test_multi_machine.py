"""Three machines, one account, one shared store (issue 11's acceptance test).

Three `asyncimg monitor --store URL` processes with different machine ids and folders:
alpha's chapter is on alpha's own disk (only alpha's monitor may write it); beta's is on a
shared folder (beta's and gamma's monitors both work it). The emulator account allows 2
unfinished tasks. Every frame must land in its owner's folder, billed once, with the
account never over its limit and few limit replies; then again with beta's monitor
SIGKILLed mid-run: gamma takes over its claims once their leases expire.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

from .conftest import E2E, wait_for

# Per chapter: 30 in all. The run's length is about FRAMES poll floors (1 s each: a slot
# turns over once a poll sees its task done), so this is the test's cost; 15 turnovers of
# the account's 2 slots among 3 monitors exercise the same sharing as 30 did.
FRAMES = 15
# Limit replies come from learning the account's cap at the start (about 2 in a run), not
# from every slot turning over (which would be one per frame): a count, not a share.
MAX_LIMIT_REPLIES = 6
LEASE_S = 3.0
CONFIG = """[defaults]
submit_rate = 20
poll_rate = 40
interval = 2
"""


def chapter(e2e: E2E, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"prompt": f"{name} {i}: 雨夜的小巷", "output_path": f"out/{name}_{i:02d}.png"}
        for i in range(1, FRAMES + 1)
    ]
    path = folder / f"{name}.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    (folder / "asyncimg.toml").write_text(CONFIG, encoding="utf-8")
    return path


def env(e2e: E2E, url: str, machine: str, shared: Path | None) -> dict[str, str]:
    return e2e.env(
        ASYNCIMG_STORE=url,
        ASYNCIMG_MACHINE_ID=machine,
        ASYNCIMG_SHARED_DIRS=str(shared) if shared else None,
        ASYNCIMG_LEASE_S=str(LEASE_S),
    )


def start(e2e: E2E, cwd: Path, environ: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        e2e.argv_for("asyncimg", "monitor", "--interval", "2"),
        cwd=cwd,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def rows(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        got = conn.execute("SELECT record, lease_owner, poll_owner FROM tasks").fetchall()
    return [{**record, "_lease": lease, "_poller": poller} for record, lease, poller in got]


def setup(make_e2e: Any, pg_url: str) -> tuple[E2E, dict[str, tuple[Path, dict[str, str]]]]:
    e2e = make_e2e(concurrency=2, gen_seconds=(0.3, 0.8))
    nas = e2e.root / "nas"
    machines = {
        "alpha": (e2e.root / "alpha", env(e2e, pg_url, "alpha", None)),
        "beta": (nas / "beta", env(e2e, pg_url, "beta", nas)),
        "gamma": (e2e.root / "gamma", env(e2e, pg_url, "gamma", nas)),
    }
    for name in ("alpha", "beta"):
        folder, environ = machines[name]
        batch = chapter(e2e, folder, name)
        done = e2e.run_in(folder, environ, "submit", "--batch", batch.name)
        assert done.returncode == 0, done.stderr
    machines["gamma"][0].mkdir(parents=True)
    (machines["gamma"][0] / "asyncimg.toml").write_text(CONFIG, encoding="utf-8")
    return e2e, machines


def check_outcome(e2e: E2E, pg_url: str, *, killed: bool) -> dict[str, Any]:
    stats = e2e.emu.stats()
    records = rows(pg_url)
    assert len(records) == 2 * FRAMES
    assert all(r["status"] == "completed" for r in records), [r["status"] for r in records]
    for r in records:
        owner_folder = e2e.root / ("alpha" if r["machine"] == "alpha" else "nas/beta")
        assert Path(r["working_dir"]) == owner_folder
        assert (owner_folder / r["output_path"]).is_file()
    extra = stats["tasks_submitted"] - 2 * FRAMES
    # Billed once: one task per frame; a SIGKILL mid-submit may leave one frame whose
    # submit went out unanswered (the documented kill window), resubmitted once.
    assert extra <= (1 if killed else 0), extra
    assert stats["peak_unfinished"] <= 2
    limits = sum(n for code, n in stats["errors"].items() if str(code) in ("50429", "50430"))
    assert limits <= MAX_LIMIT_REPLIES, stats["errors"]
    for name in ("alpha", "gamma"):
        assert not (e2e.root / name / "out").exists() or name == "alpha"
    return stats


def test_three_monitors_share_one_account(make_e2e: Any, pg_url: str) -> None:
    e2e, machines = setup(make_e2e, pg_url)
    started = time.monotonic()
    procs = [start(e2e, folder, environ) for folder, environ in machines.values()]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    stats = check_outcome(e2e, pg_url, killed=False)
    elapsed = time.monotonic() - started
    print(f"3 monitors, {2 * FRAMES} frames: {elapsed:.1f} s, errors {stats['errors']}")
    assert not (e2e.root / "gamma" / "out").exists()  # gamma wrote into beta's shared folder


def test_a_killed_monitors_claims_are_taken_over(make_e2e: Any, pg_url: str) -> None:
    e2e, machines = setup(make_e2e, pg_url)
    # Alpha and beta first; gamma (who can take over beta's shared chapter) once beta's
    # monitor holds work of its own: an unfinished frame it has claimed or polls.
    procs = {name: start(e2e, *machines[name]) for name in ("alpha", "beta")}
    beta = procs["beta"]

    def betas_claim() -> str | None:
        for r in rows(pg_url):
            for owner in (r["_lease"], r["_poller"]):
                if (owner or "").startswith("beta:") and r["status"] != "completed":
                    return str(owner)
        return None

    owner = wait_for(betas_claim, 90, "beta's monitor to hold a claim")
    procs["gamma"] = start(e2e, *machines["gamma"])
    os.kill(beta.pid, signal.SIGKILL)
    beta.communicate(timeout=10)
    killed_at = time.monotonic()
    held = {
        r["local_id"]
        for r in rows(pg_url)
        if owner in (r["_lease"], r["_poller"]) and r["status"] != "completed"
    }

    def taken_over() -> bool | None:
        current = {r["local_id"]: r for r in rows(pg_url)}
        return (
            all(
                owner not in (current[i]["_lease"], current[i]["_poller"])
                or current[i]["status"] == "completed"
                for i in held
            )
            or None
        )

    wait_for(taken_over, LEASE_S + 30, "the dead monitor's claims to be taken over")
    took = time.monotonic() - killed_at
    assert took <= LEASE_S + 30
    for name in ("alpha", "gamma"):
        _out, err = procs[name].communicate(timeout=120)
        assert procs[name].returncode in (0, 1), err
        assert "Traceback" not in err
    stats = check_outcome(e2e, pg_url, killed=True)
    print(
        f"killed beta's monitor holding {len(held)} claim(s); taken over in {took:.1f} s"
        f" (lease {LEASE_S} s); tasks billed {stats['tasks_submitted']}, errors {stats['errors']}"
    )
