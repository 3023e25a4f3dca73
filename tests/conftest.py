"""The PostgreSQL server the shared store's tests use (skipped, with one line, without it).

`$ASYNCIMG_TEST_PG` names it (default: the development and CI machines' local server,
trust auth). Every test gets a schema of its own, dropped afterwards, so tests never see
each other's rows and can run beside other users of the same database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (a fixed seed per test), so a run on CI
# never meets a case no earlier run met; no deadline, since a loaded 2-core machine is slow
# at random. Explore with `--hypothesis-seed=random` or a profile of your own.
settings.register_profile("asyncimg", derandomize=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "asyncimg"))

# A suite started in the background (`make test &`, some CI runners) inherits SIGINT ignored,
# and every program it starts would too: the tests that press Ctrl+C on a child would then
# wait for nothing. Children of this process get the default back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

PG_URL = os.environ.get("ASYNCIMG_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
_SKIP = f"no PostgreSQL server answers at {PG_URL}: shared-store tests skipped"
_reachable: bool | None = None
_LEFT_OUT = pytest.StashKey[int]()


def pg_reachable() -> bool:
    global _reachable
    if _reachable is None:
        try:
            import psycopg

            with psycopg.connect(PG_URL, connect_timeout=3):
                _reachable = True
        except Exception:
            _reachable = False
    return _reachable


def schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose tables live in a fresh schema of the test database."""
    if not pg_reachable():
        pytest.skip(_SKIP)
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema_url(schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _needs_pg(item: pytest.Item) -> bool:
    if "pg_url" in getattr(item, "fixturenames", ()):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "postgresql" in callspec.params.values()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a server, the shared-store tests are left out and said so in one line (at
    the end of the run), instead of one skip line per test."""
    wanted = [item for item in items if _needs_pg(item)]
    if not wanted or pg_reachable():
        return
    config.stash[_LEFT_OUT] = len(wanted)
    config.hook.pytest_deselected(items=wanted)
    items[:] = [item for item in items if not _needs_pg(item)]


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    left_out = config.stash.get(_LEFT_OUT, 0)
    if left_out:
        terminalreporter.write_line(f"{_SKIP} ({left_out} tests)")


def _dead_writer_temp(folder: Path, suffix: str) -> Path:
    code = (
        "import sys; from pathlib import Path; from asyncimg.fileio import temp_name\n"
        f"p = Path(sys.argv[1]) / temp_name({suffix!r}); p.write_bytes(b'half'); print(p)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


@pytest.fixture
def dead_writer_temp() -> Callable[[Path, str], Path]:
    """Makes a temp file (`temp_name(suffix)` in a folder) whose writer has exited since,
    as after a SIGKILL mid-write; returns its path."""
    return _dead_writer_temp


S3_KEY, S3_SECRET = "kept-s3-access-key", "kept-s3-Secret-never-printed"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-compatible server on 127.0.0.1 for the session (moto's standalone server):
    its endpoint URL. Any access key pair is accepted; each test makes its own bucket."""
    import logging
    import socket

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_keys() -> tuple[str, str]:
    """The access key pair `s3` and `s3_bucket` use (for a test to hand on or look for)."""
    return S3_KEY, S3_SECRET


@pytest.fixture
def s3(s3_server: str) -> Any:
    """A boto3 client of `s3_server` (to look at and change buckets as a test needs)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_SECRET,
    )


@pytest.fixture
def s3_bucket(s3: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on `s3_server`, and its key pair in this process's environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    for name in ("AWS_SESSION_TOKEN", "ASYNCIMG_STORAGE_ENDPOINT", "ASYNCIMG_STORAGE_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    name = f"kept-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name
