"""Databases for tests: a fresh SQLite file, or a fresh PostgreSQL database, per use.

PostgreSQL is the server on 127.0.0.1:5432 (`TEST_POSTGRES_URL` names another: a URL whose
user may CREATE DATABASE). `fresh_database("postgresql", ...)` creates a database of its own
(`t_<label>_<random>`) and drops it afterwards, so tests never share tables, sequences or
search configurations. An unreachable server skips the test on a laptop and fails it when
`CI=true` (`need`).

    @pytest.fixture(scope="module", params=DATABASES)
    def db_url(request, tmp_path_factory):
        with fresh_database(request.param, tmp_path_factory.mktemp("db"), "mytest") as url:
            yield url
"""

from __future__ import annotations

import functools
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from tests.web_helpers import need

ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
DATABASES = ["sqlite", "postgresql"]


def _conninfo(database: str | None = None) -> str:
    """ADMIN_URL (or the same server's `database`) as a libpq URL for psycopg itself."""
    url = make_url(ADMIN_URL).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


@functools.cache
def postgres_unreachable() -> str | None:
    """Why PostgreSQL cannot be used for tests, or None if it can (asked once per process)."""
    try:
        with psycopg.connect(_conninfo(), connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as e:
        where = make_url(ADMIN_URL).render_as_string(hide_password=True)
        return f"PostgreSQL not reachable at {where} ({str(e).strip().splitlines()[0]})"
    return None


def need_postgres() -> None:
    reason = postgres_unreachable()
    need(reason is None, reason or "")


def postgres_url(database: str) -> str:
    """The SQLAlchemy URL of `database` on the test server."""
    url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg", database=database)
    return url.render_as_string(hide_password=False)


@contextmanager
def fresh_postgres(label: str) -> Iterator[str]:
    """A new, empty database on the test server (its URL), dropped afterwards."""
    need_postgres()
    name = f"t_{re.sub(r'[^a-z0-9]+', '_', label.lower())[:40]}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_url(name)
    finally:
        with psycopg.connect(_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database(kind: str, tmp: Path, label: str) -> Iterator[str]:
    """A new, empty database of `kind` ("sqlite" or "postgresql"): its SQLAlchemy URL."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'{label}.db'}"
        return
    assert kind == "postgresql", kind
    with fresh_postgres(label) as url:
        yield url
