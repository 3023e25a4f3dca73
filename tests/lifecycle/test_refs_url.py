"""References by URL: local files uploaded once to a real S3-compatible server (moto's
standalone server on 127.0.0.1) and sent as presigned URLs the emulator fetches and checks;
http(s) URLs sent as they are; base64 refused by the service → exact advice, no resubmit."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import pytest

from asyncimg.api import outcome_line
from asyncimg.constants import ACTION_SUBMIT
from asyncimg.lifecycle import refmode
from asyncimg.lifecycle.config import config_from_mapping
from asyncimg.lifecycle.ref_upload import ObjectStorage, ReferenceSender
from asyncimg.lifecycle.validate import Line, check_lines
from asyncimg.protocol.errors import (
    ConfigError,
    InputRejected,
    InvalidInput,
    OutputRejected,
    classify_business,
)
from asyncimg.store.states import TaskState

if TYPE_CHECKING:
    from conftest import Env, Start

V40 = "jimeng_t2i_v40"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _objects(s3: Any, bucket: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def _storage_config(endpoint: str, bucket: str, **references: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"storage": {"endpoint": endpoint, "bucket": bucket}}
    if references:
        data["references"] = references
    return data


def _submits(env: Env) -> int:
    return int(env.emu.stats()["requests"].get(ACTION_SUBMIT, 0))


# -- the pure decisions --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "models", "req_key", "storage", "sent"),
    [
        ("auto", {}, V40, True, "url"),
        ("auto", {}, V40, False, "base64"),
        ("auto", {}, "jimeng_i2i_v30", True, "base64"),
        ("auto", {}, "seededit_v3.0", True, "base64"),
        ("base64", {}, V40, True, "base64"),
        ("url", {}, "jimeng_i2i_v30", True, "url"),
        ("auto", {V40: "base64"}, V40, True, "base64"),
        ("base64", {"seededit_v3.0": "url"}, "seededit_v3.0", True, "url"),
    ],
)
def test_which_way_local_files_go(
    mode: refmode.Mode, models: dict[str, Any], req_key: str, storage: bool, sent: str
) -> None:
    refs = refmode.ReferencesConfig(mode=mode, models=models)
    assert refmode.local_files_go_as(refs, req_key, storage) == sent


def test_storage_settings_env_overrides_the_file() -> None:
    config = refmode.StorageConfig(endpoint="https://a.example", bucket="a", prefix="/p/x/")
    assert refmode.storage_settings(refmode.StorageConfig(), {}) is None
    assert refmode.storage_settings(refmode.StorageConfig(endpoint="https://a.example"), {}) is None
    got = refmode.storage_settings(
        config, {"ASYNCIMG_STORAGE_ENDPOINT": "http://127.0.0.1:9", "ASYNCIMG_STORAGE_BUCKET": "b"}
    )
    assert got is not None
    assert (got.endpoint, got.bucket, got.prefix) == ("http://127.0.0.1:9", "b", "p/x/")
    only_env = refmode.storage_settings(
        refmode.StorageConfig(),
        {"ASYNCIMG_STORAGE_ENDPOINT": "https://tos.example", "ASYNCIMG_STORAGE_BUCKET": "b"},
    )
    assert only_env is not None and only_env.bucket == "b"


def test_url_advice_only_for_base64_refused_by_a_model_not_documented_for_it() -> None:
    refused = classify_business(50215, "Input invalid for this service.", "rid", 400)
    advised = refmode.with_url_advice(refused, V40, "base64")
    assert 'mode = "url"' in advised.message and "[storage]" in advised.message
    assert "AWS_ACCESS_KEY_ID" in advised.message
    assert "asyncimg retry --failed" in advised.message
    assert advised.message.startswith("Input invalid for this service.")
    assert isinstance(advised, InputRejected) and not advised.resubmittable
    assert advised.request_id == "rid" and advised.code == 50215
    unknown = classify_business(50299, "Bad image", None, 400)
    assert refmode.with_url_advice(unknown, V40, "base64") is not unknown
    for error, req_key, sent in [
        (refused, V40, "url"),  # URLs went: not about base64
        (refused, V40, None),  # no references at all
        (refused, "jimeng_i2i_v30", "base64"),  # base64 is documented there
        (classify_business(50411, "Pre Img Risk Not Pass", None, 400), V40, "base64"),
        (OutputRejected("Post Img Risk Not Pass", code=50511), V40, "base64"),
        (InvalidInput("prompt", "", "required"), V40, "base64"),  # our own check
    ]:
        assert refmode.with_url_advice(error, req_key, sent) is error


def test_bad_urls_are_named() -> None:
    with pytest.raises(InvalidInput, match=r"character_images\[1\].*not an http\(s\) URL"):
        refmode.split_entries(["a.png", "ftp://host/x.png"])
    split = refmode.split_entries(["a.png", "https://h/x.png", "b.png"])
    assert split.urls == ((1, "https://h/x.png"),)
    assert split.files == ((0, "a.png"), (2, "b.png"))


def test_config_sections() -> None:
    config = config_from_mapping(
        {
            "references": {"mode": "base64", "models": {V40: "url"}},
            "storage": {"endpoint": "https://tos-s3-cn-beijing.volces.com", "bucket": "b"},
        }
    )
    assert refmode.configured_mode(config.references, V40) == "url"
    assert config.storage.bucket == "b"
    problems = {
        "storage.buket": {"storage": {"buket": "x"}},
        "references.mode": {"references": {"mode": "urls"}},
        "references.models.nope": {"references": {"models": {"nope": "url"}}},
        "storage.endpoint": {"storage": {"endpoint": "tos.example.com"}},
    }
    for where, data in problems.items():
        with pytest.raises(ConfigError, match=rf"asyncimg.toml: {where}"):
            config_from_mapping(data)
    with pytest.raises(ConfigError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        config_from_mapping({"storage": {"bucket": "b", "secret_access_key": "s"}})


# -- uploads against the real S3-compatible server ----------------------------------------


async def test_local_files_go_as_presigned_urls_uploaded_once(
    start: Start, s3_server: str, s3_bucket: str, s3: Any, s3_keys: tuple[str, str]
) -> None:
    s3_secret = s3_keys[1]
    env = await start(config=_storage_config(s3_server, s3_bucket))
    lin = env.image("lin.png", color=(10, 200, 10))
    chen = env.image("chen.jpg", color=(10, 10, 200), fmt="JPEG")
    ws = env.workspace()
    report = await ws.submit(
        [
            env.request("001", character_images=[str(lin), str(chen)]),
            env.request("002", character_images=[str(lin)]),
        ]
    )
    assert report.submitted == 2, [outcome_line(o) for o in report.batch.outcomes]
    expected = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (lin, chen)}
    assert {Path(k).stem for k in _objects(s3, s3_bucket)} == expected
    assert [k.rsplit(".", 1)[1] for k in _objects(s3, s3_bucket)] in (
        ["jpg", "png"],
        ["png", "jpg"],
    )
    fetches = env.emu.stats()["reference_fetches"]
    assert len(fetches) == 3 and all(f["status"] == 200 and not f["problem"] for f in fetches)
    # The service saw exactly the bytes of the files (they fit as they are: not re-encoded).
    assert sorted(f["sha256"] for f in fetches) == sorted(
        hashlib.sha256(p.read_bytes()).hexdigest() for p in (lin, chen, lin)
    )
    for fetch in fetches:
        query = parse_qs(urlsplit(fetch["url"]).query)
        assert int(query["X-Amz-Expires"][0]) >= 24 * 3600
        assert s3_secret not in fetch["url"]
    records = env.load_all()
    assert {r.references_sent for r in records} == {"url"}
    assert all(s3_secret not in p.read_text() for p in env.tasks_dir.glob("*.json"))
    assert ws.references._bucket is not None and ws.references._bucket.uploads == 2

    # Another process on the folder: the key is looked up first, nothing is uploaded again.
    again = env.workspace()
    await again.submit([env.request("003", character_images=[str(chen)])])
    assert again.references._bucket is not None and again.references._bucket.uploads == 0
    assert len(_objects(s3, s3_bucket)) == 2

    env.advance(11)
    summary = await env.run_pass()
    assert summary.completed == 3 and summary.failed == 0


def test_concurrent_uploads_of_one_file_are_coalesced(
    s3_server: str, s3_bucket: str, s3: Any, tmp_path: Path
) -> None:
    settings = refmode.StorageSettings(s3_server, s3_bucket, "p/", "us-east-1", "path")
    heads: list[str] = []

    class Slow(ObjectStorage):
        """Counts lookups and makes each upload slow, so racing threads would overlap."""

        def _exists(self, key: str) -> bool:
            heads.append(key)
            return super()._exists(key)

        def _put(self, key: str, data: bytes, fmt: str) -> None:
            time.sleep(0.3)
            super()._put(key, data, fmt)

    storage = Slow(settings, lock_dir=tmp_path)
    keys: list[str] = []
    barrier = threading.Barrier(6)

    def upload() -> None:
        barrier.wait()
        keys.append(storage.ensure(b"\x89PNG same bytes", "PNG"))

    threads = [threading.Thread(target=upload) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(set(keys)) == 1 and len(keys) == 6
    assert storage.uploads == 1 and len(heads) == 1
    assert _objects(s3, s3_bucket) == keys[:1]
    assert keys[0] == "p/" + hashlib.sha256(b"\x89PNG same bytes").hexdigest() + ".png"


async def test_checks_before_submit_upload_nothing(
    start: Start, s3_server: str, s3_bucket: str, s3: Any, chdir_tmp: Path
) -> None:
    env = await start(config=_storage_config(s3_server, s3_bucket))
    lin = env.image("lin.png")
    line = Line(
        "b.jsonl", 1, {"prompt": "p", "output_path": "o.png", "character_images": [str(lin)]}
    )
    checked = check_lines([line], env.config)
    assert checked.problems == [] and len(checked.frames) == 1
    assert _objects(s3, s3_bucket) == []


async def test_urls_given_are_sent_as_they_are(start: Start, s3_bucket: str, s3: Any) -> None:
    env = await start()  # no storage configured at all
    png = env.image("hosted.png").read_bytes()
    s3.put_object(Bucket=s3_bucket, Key="mine.png", Body=png)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": s3_bucket, "Key": "mine.png"})
    report = await env.workspace().submit([env.request("001", character_images=[url])])
    assert report.submitted == 1
    (fetch,) = env.emu.stats()["reference_fetches"]
    assert (fetch["url"], fetch["sha256"]) == (url, hashlib.sha256(png).hexdigest())
    (record,) = env.load_all()
    assert record.character_images == [url] and record.references_sent == "url"


async def test_mixing_urls_and_files_needs_storage(start: Start, chdir_tmp: Path) -> None:
    env = await start()
    lin = env.image("lin.png")
    line = Line(
        "b.jsonl",
        3,
        {"prompt": "p", "output_path": "o.png", "character_images": [str(lin), "https://h/x.png"]},
    )
    (problem,) = check_lines([line], env.config).problems
    assert problem.where == "b.jsonl:3" and problem.field == "character_images"
    assert "mixes URLs and local files" in problem.message
    assert "ASYNCIMG_STORAGE_ENDPOINT" in problem.message


async def test_an_unreachable_url_fails_the_frame_once(start: Start) -> None:
    env = await start()
    dead = f"http://127.0.0.1:{_free_port()}/gone.png"
    report = await env.workspace().submit([env.request("001", character_images=[dead])])
    (outcome,) = report.batch.outcomes
    assert outcome.rejected and outcome.error is not None and outcome.error.code == 50215
    assert "asyncimg.toml" not in outcome.error.message  # URLs went: no base64 advice
    await env.run_pass()
    assert _submits(env) == 1


async def test_missing_storage_keys_stop_before_anything_is_sent(
    start: Start, s3_server: str, s3_bucket: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    env = await start(config=_storage_config(s3_server, s3_bucket))
    lin = env.image("lin.png")
    report = await env.workspace().submit([env.request("001", character_images=[str(lin)])])
    assert report.batch.halted is not None
    assert "AWS_SECRET_ACCESS_KEY is not set" in str(report.batch.halted)
    (record,) = env.load_all()
    assert record.status is TaskState.PENDING
    assert _submits(env) == 0 and _objects(s3, s3_bucket) == []


# -- the service refuses base64 references -------------------------------------------------


async def test_base64_refused_says_how_to_switch_and_is_not_resubmitted(start: Start) -> None:
    env = await start(reject_base64_references=frozenset({V40}))
    lin = env.image("lin.png")
    report = await env.workspace().submit([env.request("001", character_images=[str(lin)])])
    (outcome,) = report.batch.outcomes
    line = outcome_line(outcome)
    assert outcome.rejected
    for needed in (
        "Input invalid for this service.",
        "(code 50215)",
        "[references] models.",
        '"url"',
        "[storage] endpoint",
        "AWS_ACCESS_KEY_ID",
        "asyncimg retry --failed",
    ):
        assert needed in line, line
    (record,) = env.load_all()
    assert record.status is TaskState.FAILED and record.references_sent == "base64"
    assert record.last_error is not None
    assert 'mode = "url"' in record.last_error.message
    assert "[storage] endpoint" in record.last_error.message
    env.advance(30)
    await env.run_pass()
    await env.run_pass()
    assert _submits(env) == 1
    assert env.load_all()[0].status is TaskState.FAILED


async def test_switching_to_urls_after_a_refusal_works(
    start: Start, s3_server: str, s3_bucket: str
) -> None:
    env = await start(
        reject_base64_references=frozenset({V40}),
        config={"references": {"mode": "url"}, **_storage_config(s3_server, s3_bucket)},
    )
    lin = env.image("lin.png")
    report = await env.workspace().submit([env.request("001", character_images=[str(lin)])])
    assert report.submitted == 1
    assert len(env.emu.stats()["reference_fetches"]) == 1


async def test_sender_plain_keeps_base64_for_local_files(start: Start) -> None:
    env = await start()
    sender = ReferenceSender.from_config(env.config, {})
    assert sender.storage is None and sender.sends(V40) == "base64"


def test_retry_character_url_is_kept_as_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asyncimg.api import typed_here
    from asyncimg.lifecycle.config import Config
    from asyncimg.lifecycle.submit import TaskRequest, build_record

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    record = build_record(TaskRequest("p", "o.png"), Config(), now=0.0)
    monkeypatch.chdir(tmp_path / "b")
    url = "https://cdn.example.com/lin.png?x=1"
    assert typed_here(record, url) == url
    assert typed_here(record, "lin.png") == str(tmp_path / "b" / "lin.png")


async def test_storage_down_keeps_the_frame_queued_not_unconfirmed(
    start: Start, s3_keys: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_keys[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_keys[1])
    dead = f"http://127.0.0.1:{_free_port()}"
    env = await start(config=_storage_config(dead, "b"))
    lin = env.image("lin.png")
    report = await env.workspace().submit([env.request("001", character_images=[str(lin)])])
    (outcome,) = report.batch.outcomes
    assert outcome.queued and outcome.error is not None
    assert "[storage]" in str(outcome.error)
    (record,) = env.load_all()
    assert record.status is TaskState.PENDING and record.unconfirmed_resubmits == 0
    assert _submits(env) == 0


def test_dry_run_says_which_frames_send_urls(
    chdir_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner
    from PIL import Image

    from asyncimg.cli.main import cli

    Image.new("RGB", (64, 64), (1, 2, 3)).save(chdir_tmp / "lin.png")
    argv = ["submit", "p", "-o", "o.png", "--character", "lin.png", "--dry-run"]
    monkeypatch.delenv("ASYNCIMG_STORAGE_ENDPOINT", raising=False)
    monkeypatch.delenv("ASYNCIMG_STORAGE_BUCKET", raising=False)
    plain = CliRunner().invoke(cli, argv)
    assert plain.exit_code == 0 and "1 character  1 image" in plain.output, plain.output
    monkeypatch.setenv("ASYNCIMG_STORAGE_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("ASYNCIMG_STORAGE_BUCKET", "b")
    urls = CliRunner().invoke(cli, argv)
    assert urls.exit_code == 0 and "1 character as URLs  1 image" in urls.output, urls.output
    assert "nothing was submitted or written" in urls.output
    assert not (chdir_tmp / "async_tasks").exists()
