"""Versioned schema migrations: numbered SQL files applied in order, once each.

``migrations/NNNN_name.sql`` are applied in one transaction each, under an advisory lock
(two monitors starting together never both migrate), and recorded in ``schema_version``.
A database whose schema is newer than this code knows is refused rather than guessed at.
Why not alembic: it brings SQLAlchemy for three tables we write by hand in SQL, and its
strength (autogenerating from ORM models) does not apply; this runner is forty lines.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import psycopg

from asyncimg.i18n import _
from asyncimg.protocol.errors import ConfigError

# Any constant: the advisory lock that serialises migrations on one database.
_MIGRATION_LOCK = 0x61737969  # "asyi"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations() -> list[tuple[int, str, str]]:
    """(version, file name, SQL) of every migration shipped, in order."""
    folder = resources.files("asyncimg.store.pg").joinpath("migrations")
    found: list[tuple[int, str, str]] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def current_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT to_regclass('schema_version') IS NOT NULL",
    ).fetchone()
    if not row or not row[0]:
        return 0
    got = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return int(got[0]) if got else 0


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Bring the schema up to date; the names of the migrations applied now."""
    shipped = migrations()
    newest = shipped[-1][0] if shipped else 0
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        have = current_version(conn)
        if have > newest:
            raise ConfigError(
                _(
                    "the store's schema is version {have}, newer than this asyncimg knows "
                    "({newest}): upgrade asyncimg"
                ).format(have=have, newest=newest)
            )
        for version, name, sql in shipped:
            if version <= have:
                continue
            conn.execute(sql.encode("utf-8"))
            conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (%s, %s)", (version, name)
            )
            applied.append(name)
    return applied
