"""Finished images kept in object storage, and written back from it (issue 11, `pull`).

The real client against the real emulator (its clock moved by the test), a real
S3-compatible server (moto's, on 127.0.0.1) and, for two machines on one account, the real
PostgreSQL store: machine alpha submits and is "off"; machine gamma's pass keeps alpha's
finished frame in the bucket without writing alpha's file; once the service has forgotten
the task, alpha's own pass (or `pull`) writes it from the bucket, byte for byte what a
download writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from asyncimg import constants
from asyncimg.api import Workspace
from asyncimg.lifecycle.config import Config, config_from_mapping
from asyncimg.lifecycle.download import save_image
from asyncimg.lifecycle.kept import FrameBucket, NotInStorage, open_bucket, pull_plan
from asyncimg.lifecycle.provenance import provenance_of
from asyncimg.lifecycle.pull import pull
from asyncimg.lifecycle.refmode import StorageConfig, storage_settings
from asyncimg.lifecycle.submit import build_record
from asyncimg.store.pg.gate import SharedGate
from asyncimg.store.pg.store import PgStore
from asyncimg.store.record import ErrorInfo, KeptImage, TaskRecord, record_from_json
from asyncimg.store.states import TaskState, refetch_record, retry_record

if TYPE_CHECKING:
    from conftest import Env, Start

S = TaskState
SHA = "ab" * 32


def storage(endpoint: str, bucket: str, **extra: Any) -> Config:
    return config_from_mapping({"storage": {"endpoint": endpoint, "bucket": bucket, **extra}})


def objects(s3: Any, bucket: str) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def plain(n: int = 1, **extra: Any) -> TaskRecord:
    data: dict[str, Any] = {
        "output_path": f"/frames/{n:03d}.png",
        "filename": f"{n:03d}.png",
        "prompt": "p",
        "full_prompt": "p",
        "status": S.PENDING,
        "created_at": 1.0,
        "updated_at": 1.0,
    }
    data.update(extra)
    return TaskRecord.model_validate(data)


def kept(n: int = 1) -> list[KeptImage]:
    return [KeptImage(key=f"f/{i}.png", sha256=SHA, bytes=10, time=2.0) for i in range(n)]


def expected_bytes(record: TaskRecord, blob: bytes, where: Path) -> bytes:
    """What a download of `blob` for `record` writes (the one save every image write uses)."""
    save_image(blob, where, fields=provenance_of(record))
    return where.read_bytes()


# -- pure: what pull does, and the record ---------------------------------------------------


def test_pull_plan_by_state_and_files() -> None:
    flying = plain(status=S.PROCESSING, task_id="t1", kept=kept(2))
    plan = pull_plan(flying, lambda _p: True)  # waiting for it: written whatever is there
    assert plan.indexes == (0, 1)
    assert plan.targets == (Path("/frames/001.png"), Path("/frames/001_2.png"))

    done = plain(status=S.COMPLETED, task_id="t1", kept=kept(1))
    assert not pull_plan(done, lambda _p: True).wanted  # on disk: nothing to do
    assert pull_plan(done, lambda _p: False).indexes == (0,)

    unkept = plain(status=S.COMPLETED, task_id="t1")
    missing = pull_plan(unkept, lambda _p: False)
    assert missing.problem is not None and "never kept" in missing.problem

    assert not pull_plan(plain(status=S.PROCESSING, task_id="t1"), lambda _p: False).wanted
    assert not pull_plan(plain(), lambda _p: False).wanted

    gone = ErrorInfo(kind="TaskGone", message="not found", time=3.0)
    forgotten = plain(status=S.FAILED, task_id="t1", kept=kept(1), last_error=gone)
    assert pull_plan(forgotten, lambda _p: True).indexes == (0,)
    other = ErrorInfo(kind="OutputRejected", message="review", time=3.0)
    refused = plain(status=S.FAILED, task_id="t1", kept=kept(1), last_error=other)
    assert not pull_plan(refused, lambda _p: True).wanted


def test_kept_round_trips_and_old_records_load() -> None:
    record = plain(status=S.SUBMITTED, task_id="t1", kept=kept(1))
    again = record_from_json(json.dumps(record.model_dump(mode="json")))
    assert again == record and again.kept[0].key == "f/0.png"
    old = {k: v for k, v in plain().model_dump(mode="json").items() if k != "kept"}
    assert record_from_json(json.dumps(old)).kept == []


def test_a_resubmission_forgets_kept_images_a_refetch_keeps_them() -> None:
    failed = plain(status=S.FAILED, task_id="t1", kept=kept(1), submit_time=1.0)
    assert retry_record(failed, now=5.0).kept == []  # a new task: the old images are not its
    assert refetch_record(failed, now=5.0).kept == failed.kept  # the same task


def test_storage_config_keeps_frames_by_default_under_their_own_prefix() -> None:
    config = StorageConfig(endpoint="https://s3.example", bucket="b")
    settings = storage_settings(config, {})
    assert settings is not None
    assert settings.keep_frames and settings.frames_prefix == "asyncimg-frames/"
    off = storage_settings(
        StorageConfig(endpoint="https://s3.example", bucket="b", keep_frames=False,
                      frames_prefix="/novel/frames"), {}
    )  # fmt: skip
    assert off is not None and not off.keep_frames and off.frames_prefix == "novel/frames/"
    assert open_bucket(StorageConfig(), env={}) is None
    assert open_bucket(StorageConfig(endpoint="https://s3.example", bucket="b",
                                     keep_frames=False), env={}, keeping=True) is None  # fmt: skip


# -- the bucket -------------------------------------------------------------------------------


def test_keep_is_content_addressed_and_fetch_checks_the_bytes(
    s3_server: str, s3_bucket: str, s3: Any, tmp_path: Path
) -> None:
    settings = storage_settings(StorageConfig(endpoint=s3_server, bucket=s3_bucket), {})
    assert settings is not None
    bucket = FrameBucket(settings, machine="m1", clock=lambda: 7.0)
    data = tmp_path.joinpath("a.png")
    from PIL import Image

    Image.new("RGB", (8, 8), (1, 2, 3)).save(data)
    blob = data.read_bytes()
    first, second = bucket.keep(blob), bucket.keep(blob)
    digest = hashlib.sha256(blob).hexdigest()
    assert first == second
    assert first.key == f"asyncimg-frames/{digest}.png" and first.sha256 == digest
    assert first.machine == "m1" and first.time == 7.0
    assert objects(s3, s3_bucket) == {first.key: blob}
    assert bucket.fetch(first) == blob

    s3.put_object(Bucket=s3_bucket, Key=first.key, Body=b"not it")
    with pytest.raises(NotInStorage, match="not the image kept"):
        bucket.fetch(first)
    s3.delete_object(Bucket=s3_bucket, Key=first.key)
    with pytest.raises(NotInStorage, match="not in storage"):
        bucket.fetch(first)


# -- one machine, a folder: keep on download, pull what went missing ---------------------------


async def test_a_finished_frame_is_kept_and_pull_restores_it_exactly(
    start: Start, s3_server: str, s3_bucket: str, s3: Any, no_leftovers: Any
) -> None:
    env = await start()
    ws = env.workspace(storage(s3_server, s3_bucket))
    record = env.add("f1")
    await ws.check_once()
    env.advance(10)
    summary = await ws.check_once()
    assert summary.completed == 1
    done = env.load(record)
    assert done.status is S.COMPLETED and len(done.kept) == 1
    stored = objects(s3, s3_bucket)
    assert list(stored) == [done.kept[0].key]
    assert hashlib.sha256(stored[done.kept[0].key]).hexdigest() == done.kept[0].sha256
    output = env.out_dir / "f1.png"
    written = output.read_bytes()
    assert written == expected_bytes(done, stored[done.kept[0].key], env.root / "x.png")

    nothing = pull(env.store, _frames(ws), clock=env.now)
    assert nothing.frames == [] and nothing.exit_code == 0

    output.unlink()
    restored = pull(env.store, _frames(ws), clock=env.now)
    assert [f.paths for f in restored.pulled] == [(output,)]
    assert output.read_bytes() == written  # byte for byte what the download wrote
    assert env.load(record) == done  # a completed record is not rewritten

    output.unlink()
    s3.delete_object(Bucket=s3_bucket, Key=done.kept[0].key)
    lost = pull(env.store, _frames(ws), clock=env.now)
    assert lost.exit_code == 1 and len(lost.failed) == 1
    assert lost.failed[0].problem is not None and "not in storage" in lost.failed[0].problem
    assert not output.exists() and no_leftovers(env.out_dir) == []
    assert env.emu.stats()["tasks_submitted"] == 1  # nothing here ever submits


async def test_keep_frames_false_keeps_nothing(
    start: Start, s3_server: str, s3_bucket: str, s3: Any
) -> None:
    env = await start()
    ws = env.workspace(storage(s3_server, s3_bucket, keep_frames=False))
    record = env.add("f1")
    await ws.check_once()
    env.advance(10)
    await ws.check_once()
    assert env.load(record).status is S.COMPLETED and env.load(record).kept == []
    assert objects(s3, s3_bucket) == {}


async def test_a_bucket_that_refuses_is_said_once_and_the_frame_still_completes(
    start: Start, s3_server: str, s3_bucket: str
) -> None:
    env = await start()
    ws = env.workspace(storage(s3_server, "no-such-bucket-here"))
    first, second = env.add("f1"), env.add("f2")
    lines: list[str] = []
    await ws.check_once(report=lines.append)
    env.advance(10)
    await ws.check_once(report=lines.append)
    assert {env.load(r).status for r in (first, second)} == {S.COMPLETED}
    assert all(env.load(r).kept == [] for r in (first, second))
    said = [line for line in lines if "not keeping finished images" in line]
    assert len(said) == 1 and "NoSuchBucket" in said[0]


# -- two machines, one shared store ------------------------------------------------------------


def _frames(ws: Workspace) -> FrameBucket:
    assert ws.frames is not None
    return ws.frames


def _machine(env: Env, pg_url: str, name: str, config: Config, tmp: Path) -> Workspace:
    store = PgStore(pg_url, machine=name, account="acct", state_dir=tmp / name)
    return Workspace(store, config, env.new_client, clock=env.now)


@pytest.fixture
async def machines(
    start: Start, pg_url: str, s3_server: str, s3_bucket: str, tmp_path: Path
) -> Any:
    """alpha (whose frame it is) and gamma (another machine) on one account."""
    env = await start()
    config = storage(s3_server, s3_bucket)
    alpha = _machine(env, pg_url, "alpha", config, tmp_path)
    gamma = _machine(env, pg_url, "gamma", config, tmp_path)
    yield env, alpha, gamma
    for ws in (alpha, gamma):
        assert isinstance(ws.store, PgStore)
        ws.store.close()


async def _submitted_then_done(env: Env, alpha: Workspace, name: str = "a1") -> TaskRecord:
    record = build_record(env.request(name), alpha.config, now=env.now())
    alpha.store.save(record)
    await alpha.check_once()  # accepted; alpha then goes off
    env.advance(10)  # done at the service, nobody polls it
    current = alpha.store.reload(record)
    assert current is not None and current.status is S.SUBMITTED
    return current


async def test_another_machine_keeps_a_frame_its_machine_then_writes_from_the_bucket(
    machines: Any, s3: Any, s3_bucket: str, tmp_path: Path
) -> None:
    env, alpha, gamma = machines
    record = await _submitted_then_done(env, alpha)
    output = env.out_dir / "a1.png"

    lines: list[str] = []
    summary = await gamma.check_once(report=lines.append)
    assert summary.kept == 1 and "1 kept in storage for other machines" in summary.line()
    assert any("kept in storage for it" in line and "alpha" in line for line in lines)
    held = gamma.store.reload(record)
    assert held is not None and held.status is S.SUBMITTED  # still alpha's to write
    assert len(held.kept) == 1 and held.kept[0].machine == "gamma"
    assert not output.exists()  # gamma never writes alpha's files
    assert SharedGate(gamma.store).in_flight() == 0  # done at the service: no slot held
    stored = objects(s3, s3_bucket)
    assert list(stored) == [held.kept[0].key]

    again = await gamma.check_once()  # kept once: nothing more to do for it
    assert again.kept == 0 and len(objects(s3, s3_bucket)) == 1

    env.advance(constants.RESULT_RETENTION_S + 60)  # the service forgets the task
    lines.clear()
    back = await alpha.check_once(report=lines.append)
    assert back.completed == 1, lines
    done = alpha.store.reload(record)
    assert done is not None and done.status is S.COMPLETED and done.kept == held.kept
    assert any("(from storage)" in line for line in lines)
    blob = stored[held.kept[0].key]
    assert output.read_bytes() == expected_bytes(done, blob, tmp_path / "x.png")
    assert done.results[0].sha256 == hashlib.sha256(output.read_bytes()).hexdigest()
    assert env.emu.stats()["tasks_submitted"] == 1  # billed once


async def test_an_expired_image_url_falls_back_to_the_bucket(machines: Any) -> None:
    env, alpha, gamma = machines
    record = await _submitted_then_done(env, alpha)
    await gamma.check_once()
    env.emu.inject("expired_url", count=1, action="image")  # the service's URL answers 403
    back = await alpha.check_once()
    assert back.completed == 1
    done = alpha.store.reload(record)
    assert done is not None and done.status is S.COMPLETED
    assert (env.out_dir / "a1.png").is_file()


async def test_pull_writes_a_kept_frame_and_completes_it(machines: Any) -> None:
    env, alpha, gamma = machines
    record = await _submitted_then_done(env, alpha)
    await gamma.check_once()
    env.advance(constants.RESULT_RETENTION_S + 60)
    polls = env.emu.stats()["requests"].get(constants.ACTION_GET_RESULT, 0)

    report = pull(alpha.store, _frames(alpha), clock=env.now)
    assert report.exit_code == 0 and len(report.pulled) == 1
    done = alpha.store.reload(record)
    assert done is not None and done.status is S.COMPLETED
    assert (env.out_dir / "a1.png").is_file()
    assert env.emu.stats()["requests"].get(constants.ACTION_GET_RESULT, 0) == polls  # no call
    assert pull(gamma.store, _frames(gamma), clock=env.now).frames == []  # not gamma's
    assert pull(alpha.store, _frames(alpha), clock=env.now).frames == []  # done already


async def test_a_frame_its_machine_polls_is_left_to_it(machines: Any) -> None:
    env, alpha, gamma = machines
    record = await _submitted_then_done(env, alpha)
    assert SharedGate(alpha.store).may_poll(record)  # alpha's monitor is on and polls it
    summary = await gamma.check_once()
    assert summary.kept == 0
    current = gamma.store.reload(record)
    assert current is not None and current.kept == []


async def test_without_storage_on_its_machine_the_task_fails_saying_pull(
    machines: Any, pg_url: str, tmp_path: Path
) -> None:
    env, alpha, gamma = machines
    record = await _submitted_then_done(env, alpha)
    await gamma.check_once()
    env.advance(constants.RESULT_RETENTION_S + 60)
    bare = _machine(env, pg_url, "alpha", config_from_mapping({}), tmp_path / "bare")
    try:
        summary = await bare.check_once()
        assert summary.failed == 1
        failed = bare.store.reload(record)
        assert failed is not None and failed.status is S.FAILED
        assert failed.last_error is not None and "asyncimg pull" in failed.last_error.message
    finally:
        assert isinstance(bare.store, PgStore)
        bare.store.close()
    report = pull(alpha.store, _frames(alpha), clock=env.now)  # with [storage] again
    assert len(report.pulled) == 1
    done = alpha.store.reload(record)
    assert done is not None and done.status is S.COMPLETED
    assert done.history and done.history[-1].status is S.FAILED  # the failed attempt kept


async def test_a_monitor_with_nothing_of_its_own_waits_to_keep_others_frames(
    machines: Any,
) -> None:
    env, alpha, gamma = machines
    record = build_record(env.request("a1"), alpha.config, now=env.now())
    alpha.store.save(record)
    await alpha.check_once()  # accepted, not done: gamma's monitor has to wait for it

    lines: list[str] = []

    waiting = asyncio.Event()

    def report(line: str) -> None:
        lines.append(line)
        if "waiting for" in line:
            waiting.set()

    async def later() -> None:  # done at the service once gamma says it waits for it
        await waiting.wait()
        env.advance(10)

    mover = asyncio.create_task(later())
    outcome = await gamma.monitor(interval=1, report=report)
    await mover
    assert not outcome.interrupted and outcome.last is not None
    assert outcome.last.kept == 1
    assert any("waiting for 1 frames of other machines" in line for line in lines)
    held = gamma.store.reload(record)
    assert held is not None and len(held.kept) == 1
