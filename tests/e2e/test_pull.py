"""`asyncimg pull` end to end (issue 11): frames finished while their machine was off.

Two machines on one shared store (real PostgreSQL), one bucket (moto's S3 server), the
emulator. Twice, alpha submits a frame and is off, and gamma's `asyncimg monitor` (nothing
of its own to do) keeps it in the bucket without writing alpha's file (the kept frame no
longer holds the account's one slot, so alpha's second submit goes out). The service then
forgets the tasks (its clock moved past the retention); alpha's `asyncimg pull` writes
them, byte for byte what a download writes, and says in one line, exit 1, which one it
could not write (its object removed from the bucket).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import psycopg

from asyncimg import constants
from asyncimg.lifecycle.download import save_image
from asyncimg.lifecycle.provenance import provenance_of
from asyncimg.store.record import TaskRecord

from .conftest import E2E, assert_no_secret


def run(
    e2e: E2E, cwd: Path, environ: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    done = e2e.run_in(cwd, environ, *args)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr
    assert_no_secret(done.stdout + done.stderr, f"asyncimg {' '.join(args)}")
    return done


def records(url: str) -> dict[str, TaskRecord]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT record FROM tasks").fetchall()
    found = [TaskRecord.model_validate(row[0]) for row in rows]
    return {r.output_path: r for r in found}


def test_frames_kept_by_another_machine_are_pulled_after_the_service_forgot_them(
    make_e2e: Any, pg_url: str, s3_server: str, s3_bucket: str, s3: Any
) -> None:
    e2e = make_e2e(gen_seconds=(0.2, 0.4), max_clock_skew=3 * 86400.0)
    config = f'[storage]\nendpoint = "{s3_server}"\nbucket = "{s3_bucket}"\n'
    folders = {name: e2e.root / name for name in ("alpha", "gamma")}
    env = {}
    for name, folder in folders.items():
        folder.mkdir()
        (folder / "asyncimg.toml").write_text(config, encoding="utf-8")
        env[name] = e2e.env(ASYNCIMG_STORE=pg_url, ASYNCIMG_MACHINE_ID=name)
    alpha, gamma, out = env["alpha"], env["gamma"], folders["alpha"] / "out"

    idle = run(e2e, folders["alpha"], alpha, "pull")  # nothing kept yet: nothing to do
    assert idle.returncode == 0 and "nothing to pull" in idle.stdout, idle
    assert idle.stderr == ""
    for i in (1, 2):
        # Alpha submits a frame and is off (the account's one slot: the kept first frame
        # no longer holds it). Gamma's monitor has nothing of its own: it keeps the frame.
        prompt = f"alpha {i}: 雨夜的小巷"
        sent = run(e2e, folders["alpha"], alpha, "submit", prompt, "-o", f"out/a{i}.png")
        assert sent.returncode == 0 and "submitted as" in sent.stdout, sent
        as_json = ("--json",) if i == 2 else ()
        kept = run(e2e, folders["gamma"], gamma, "monitor", "--interval", "1", *as_json)
        assert kept.returncode == 0, kept.stderr
        assert f"a{i}.png: finished while alpha is away; kept in storage for it" in kept.stdout
    events = [json.loads(line) for line in kept.stdout.splitlines()]
    [event] = [e for e in events if e["event"] == "kept" and e.get("output_path")]
    assert event["output_path"] == "out/a2.png" and event["machine"] == "alpha"
    assert events[-1]["event"] == "summary" and events[-1]["kept"] == 1
    assert not out.exists()  # gamma never writes alpha's files
    held = records(pg_url)
    assert {r.status.value for r in held.values()} == {"submitted"}
    assert all(len(r.kept) == 1 and r.kept[0].machine == "gamma" for r in held.values())
    stored = {
        o["Key"]: s3.get_object(Bucket=s3_bucket, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]
    }
    assert sorted(stored) == sorted(r.kept[0].key for r in held.values())

    shown = run(e2e, folders["alpha"], alpha, "show", "out/a1.png")
    assert held["out/a1.png"].kept[0].key in shown.stdout
    assert "not written here yet: asyncimg pull" in shown.stdout

    s3.delete_object(Bucket=s3_bucket, Key=held["out/a2.png"].kept[0].key)
    e2e.emu._on_loop(lambda: e2e.emu.emu.advance(constants.RESULT_RETENTION_S + 3600))

    pulled = run(e2e, folders["alpha"], alpha, "pull")
    assert pulled.returncode == 1, pulled
    assert "out/a1.png: written from storage" in pulled.stdout
    assert "1 frames written from storage, 1 could not be" in pulled.stdout
    [line] = pulled.stderr.splitlines()
    assert "out/a2.png: not pulled" in line and "not in storage" in line
    assert not (out / "a2.png").exists()
    assert [p.name for p in out.iterdir()] == ["a1.png"]  # no temp file left either
    done = records(pg_url)
    first = done["out/a1.png"]
    assert first.status.value == "completed" and done["out/a2.png"].status.value == "submitted"
    blob = stored[first.kept[0].key]
    save_image(blob, e2e.root / "expected.png", fields=provenance_of(first))
    assert (out / "a1.png").read_bytes() == (e2e.root / "expected.png").read_bytes()
    assert e2e.emu.stats()["tasks_submitted"] == 2  # nothing resubmitted, nothing billed


def test_pull_without_storage_is_one_line_and_exit_2(e2e: E2E) -> None:
    ran = e2e.exits(2, "asyncimg", "pull")
    assert ran.stdout == ""
    [line] = ran.stderr.splitlines()
    assert "pull needs object storage" in line and "[storage]" in line
