"""References by URL and base64 refusals, as a user meets them on the command line (issue 10):
`asyncimg submit` + `monitor` as subprocesses, the emulator fetching every presigned URL
from a real S3-compatible server (moto's standalone server on 127.0.0.1)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from asyncimg import constants

if TYPE_CHECKING:
    from conftest import E2E

SUBMIT = constants.ACTION_SUBMIT


def test_local_characters_go_as_urls_end_to_end(
    e2e: E2E, s3_server: str, s3_bucket: str, s3: Any, s3_keys: tuple[str, str]
) -> None:
    s3_key, s3_secret = s3_keys
    (e2e.root / "asyncimg.toml").write_text(
        f'[storage]\nendpoint = "{s3_server}"\nbucket = "{s3_bucket}"\nprefix = "novel/"\n'
    )
    lin = e2e.character("lin.png")
    env = e2e.env(AWS_ACCESS_KEY_ID=s3_key, AWS_SECRET_ACCESS_KEY=s3_secret)
    for name in ("001", "002"):
        e2e.exits(
            0, "asyncimg", "submit", "林晓回头", "-o", f"out/{name}.png",
            "--character", "chars/lin.png", "--size", "1024x1024", env=env,
        )  # fmt: skip
    e2e.exits(0, "asyncimg", "monitor", "--interval", "1", timeout=60, env=env)
    digest = hashlib.sha256(lin.read_bytes()).hexdigest()
    listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix="novel/")["Contents"]
    assert [o["Key"] for o in listed] == [f"novel/{digest}.png"]  # once for both frames
    kept = s3.list_objects_v2(Bucket=s3_bucket, Prefix="asyncimg-frames/")["Contents"]
    assert len(kept) == 2  # each finished frame is kept there too ([storage] keep_frames)
    fetches = e2e.emu.stats()["reference_fetches"]
    assert [f["sha256"] for f in fetches] == [digest, digest]
    assert all(f["url"].startswith(f"{s3_server}/{s3_bucket}/novel/") for f in fetches)
    assert {r["status"] for r in e2e.records()} == {"completed"}
    assert {r["references_sent"] for r in e2e.records()} == {"url"}
    for path in e2e.root.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".toml"):
            assert s3_secret not in path.read_text(errors="replace")


def test_storage_keys_missing_is_a_setup_problem(e2e: E2E, s3_server: str) -> None:
    (e2e.root / "asyncimg.toml").write_text(
        f'[storage]\nendpoint = "{s3_server}"\nbucket = "nobody"\n'
    )
    e2e.character("lin.png")
    env = e2e.env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None)
    ran = e2e.exits(
        2, "asyncimg", "submit", "p", "-o", "out/a.png", "--character", "chars/lin.png", env=env
    )
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set" in ran.output
    assert [r["status"] for r in e2e.records()] == ["pending"]
    assert e2e.emu.stats()["requests"].get(SUBMIT, 0) == 0


def test_refused_base64_says_how_to_switch(make_e2e: Callable[..., E2E]) -> None:
    e2e = make_e2e(reject_base64_references=frozenset({"jimeng_t2i_v40"}))
    e2e.character("lin.png")
    ran = e2e.exits(1, "asyncimg", "submit", "p", "-o", "out/a.png", "--character", "chars/lin.png")
    assert "a.png: rejected — Input invalid for this service." in ran.output, ran
    assert '[references] models.jimeng_t2i_v40 = "url"' in ran.output
    assert "[storage] endpoint" in ran.output and "asyncimg retry --failed" in ran.output
    e2e.exits(1, "asyncimg", "check")
    [record] = e2e.records()
    assert record["status"] == "failed" and "[storage] endpoint" in record["last_error"]["message"]
    assert e2e.emu.stats()["requests"][SUBMIT] == 1  # refused once, never resubmitted
