"""`asyncimg emulator` as a real subprocess: URL line, serving, clean Ctrl+C."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import click
import pytest

from asyncimg import constants
from asyncimg.cli.emulator_cmd import _parse_gen_seconds
from asyncimg.emulator.config import DEMO_ACCESS_KEY, DEMO_SECRET_KEY
from asyncimg.protocol import signing
from asyncimg.protocol.signing import Credentials

ASYNCIMG = Path(sys.executable).parent / "asyncimg"
PREFIX = "asyncimg emulator listening on "


async def _run(env: dict[str, str], *args: str) -> tuple[str, str, int | None, str]:
    """Start the CLI, submit one signed task with the given keys, then Ctrl+C it."""
    proc = await asyncio.create_subprocess_exec(
        str(ASYNCIMG),
        "emulator",
        "--port",
        "0",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        if not first.startswith(PREFIX):
            err = await asyncio.wait_for(proc.stderr.read(), 20)
            pytest.fail(f"no URL line; stdout {first!r}, stderr:\n{err.decode()}")
        url = first[len(PREFIX) :].strip()
        ak = env.get(constants.ENV_ACCESS_KEY, DEMO_ACCESS_KEY)
        sk = env.get(constants.ENV_SECRET_KEY, DEMO_SECRET_KEY)
        body = json.dumps({"req_key": "jimeng_t2i_v40", "prompt": "cli"}).encode()
        query = {"Action": constants.ACTION_SUBMIT, "Version": constants.API_VERSION}
        sig = signing.sign(
            method="POST",
            host=url.removeprefix("http://"),
            path="/",
            query=query,
            body=body,
            credentials=Credentials(ak, sk),
            region=constants.REGION,
            service=constants.SERVICE,
            now=datetime.now(UTC),
            headers={"Content-Type": "application/json"},
            scheme="http",
        )
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/", params=query, data=body, headers=sig.headers) as r:
                assert (r.status, (await r.json())["code"]) == (200, 10000)
            async with session.get(url + "/_emulator/stats") as r:
                stats = await r.json()
                assert stats["tasks_submitted"] == 1
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    return first + out.decode(), err.decode(), proc.returncode, url


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop(constants.ENV_ACCESS_KEY, None)
    env.pop(constants.ENV_SECRET_KEY, None)
    return env


async def test_cli_demo_keys() -> None:
    out, err, code, url = await _run(_clean_env(), "--seed", "1", "--gen-seconds", "1-2")
    assert url.startswith("http://127.0.0.1:")
    assert code in (0, 130), err
    assert "Traceback" not in err
    assert DEMO_ACCESS_KEY in out and DEMO_SECRET_KEY in out


async def test_cli_never_prints_keys_from_env() -> None:
    env = _clean_env()
    env[constants.ENV_ACCESS_KEY] = "AKLTfromtheenvironment"
    env[constants.ENV_SECRET_KEY] = "secret-from-the-environment"
    out, err, code, _ = await _run(env, "--qps", "5", "--concurrency", "3")
    assert code in (0, 130), err
    assert "Traceback" not in err
    for secret in ("AKLTfromtheenvironment", "secret-from-the-environment", DEMO_SECRET_KEY):
        assert secret not in out + err


@pytest.mark.parametrize(
    ("text", "expected"), [("2-6", (2.0, 6.0)), ("3", (3.0, 3.0)), ("0.5-1.5", (0.5, 1.5))]
)
def test_parse_gen_seconds(text: str, expected: tuple[float, float]) -> None:
    assert _parse_gen_seconds(text) == expected


@pytest.mark.parametrize("text", ["6-2", "x", "-1", "1-"])
def test_parse_gen_seconds_rejects(text: str) -> None:
    with pytest.raises(click.BadParameter):
        _parse_gen_seconds(text)


async def test_cli_takes_every_setting_flag() -> None:
    _out, err, code, _ = await _run(
        _clean_env(),
        "--fault-kinds",
        "no_image,slow,late_invalid,review_internal_error",
        "--strict",
        "--expire-seconds",
        "100",
        "--images-per-task",
        "2",
        "--latency-ms",
        "1",
    )
    assert code in (0, 130), err
    assert "Traceback" not in err


def test_fault_kinds_are_parsed_and_checked() -> None:
    from asyncimg.cli.emulator_cmd import _parse_fault_kinds
    from asyncimg.emulator.faults import FaultKind

    assert _parse_fault_kinds("no_image, slow") == {FaultKind.NO_IMAGE, FaultKind.SLOW}
    opt_in = {FaultKind.LATE_INVALID, FaultKind.REVIEW_INTERNAL_ERROR}
    assert _parse_fault_kinds(None) == frozenset(FaultKind) - opt_in
    with pytest.raises(click.BadParameter, match="meteor"):
        _parse_fault_kinds("meteor")


def test_bad_setting_is_one_line_not_a_traceback() -> None:
    import subprocess

    ran = subprocess.run(
        [str(ASYNCIMG), "emulator", "--images-per-task", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert ran.returncode == 2
    assert "images_per_task must be at least 1" in ran.stderr
    assert "Traceback" not in ran.stderr
