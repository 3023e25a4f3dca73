"""The PostgreSQL server the shared store's tests use (skipped, with one line, without it).

`$ASYNCIMG_TEST_PG` names it (default: the development and CI machines' local server,
trust auth). Every test gets a schema of its own, dropped afterwards, so tests never see
each other's rows and can run beside other users of the same database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest

PG_URL = os.environ.get("ASYNCIMG_TEST_PG", "postgresql://root@127.0.0.1:5432/test")
_SKIP = f"no PostgreSQL server answers at {PG_URL}: shared-store tests skipped"
_reachable: bool | None = None


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


PgUrlFactory = Callable[[], str]
