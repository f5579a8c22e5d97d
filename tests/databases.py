"""Databases for tests: SQLite files and PostgreSQL databases of their own, and Redis key
prefixes of their own.

PostgreSQL is the server on 127.0.0.1:5432 (`TEST_POSTGRES_URL` names another: a URL whose
user may CREATE DATABASE). `fresh_database("postgresql", ...)` creates a database of its own
(`t_<label>_<random>`) and drops it afterwards, so tests never share tables, sequences or
search configurations. An unreachable server skips the test on a laptop and fails it when
`CI=true` (`need`).

Redis is the server on 127.0.0.1:6379 (`REDIS`); `redis_prefix()` gives a test keys of its own
(`test-<random>:`) and deletes them afterwards, skipping (or, in CI, failing) without Redis.

The fixtures (registered for every test by tests/conftest.py):
- `db_kind`: "sqlite" or "postgresql"; a test that asks for it, directly or through the
  fixtures below, runs once for each (module scope, so a module runs all its SQLite tests,
  then all its PostgreSQL ones).
- `database`: a `ModuleDatabase` of that kind for the module; `database.fresh()` is the URL
  of an empty shop for one test (a new SQLite file; the module's PostgreSQL database emptied,
  which costs 30 ms where a new database costs 0.5 s).

    def test_x(database: ModuleDatabase) -> None:
        with api_app(database.fresh()) as api: ...
"""

from __future__ import annotations

import functools
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from tests.web_helpers import need

REDIS = "redis://127.0.0.1:6379/0"
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


# Every table the shop's schema has (migrations/versions/0001_baseline.py).
SHOP_TABLES = (
    "products, inventory, orders, order_items, idempotency_keys, product_changes, change_feed"
)


def empty_postgres(url: str) -> None:
    """Delete every shop row and restart the ids, keeping the migrated schema: the next
    start of api.py seeds it as it would a new database."""
    database = make_url(url).database
    with psycopg.connect(_conninfo(database), autocommit=True) as conn:
        migrated = conn.execute("SELECT to_regclass('products') IS NOT NULL").fetchone()
        if migrated and migrated[0]:
            conn.execute(f"TRUNCATE {SHOP_TABLES} RESTART IDENTITY CASCADE")


@dataclass
class ModuleDatabase:
    """One module's database of `kind`; `fresh()` gives each test an empty one."""

    kind: str
    tmp: Path
    label: str
    url: str  # PostgreSQL: the module's database; SQLite: its first file
    _files: int = 0

    def fresh(self) -> str:
        if self.kind == "sqlite":
            self._files += 1
            return f"sqlite:///{self.tmp / f'{self.label}-{self._files}.db'}"
        empty_postgres(self.url)
        return self.url


@pytest.fixture(scope="module", params=DATABASES)
def db_kind(request: pytest.FixtureRequest) -> str:
    """The database kind this module's tests run on now: each runs once per kind."""
    if request.param == "postgresql":
        need_postgres()
    return request.param


@pytest.fixture(scope="module")
def database(
    db_kind: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[ModuleDatabase]:
    label = request.module.__name__.rsplit(".", 1)[-1]
    tmp = tmp_path_factory.mktemp(f"{label}-{db_kind}")
    with fresh_database(db_kind, tmp, label) as url:
        yield ModuleDatabase(db_kind, tmp, label, url)


def redis_up(url: str = REDIS) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def drop_redis_keys(prefix: str, url: str = REDIS) -> None:
    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        r.delete(*keys)


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix of its own on `REDIS`, its keys deleted at the end."""
    need(redis_up(), f"Redis not reachable at {REDIS}")
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    try:
        yield prefix
    finally:
        drop_redis_keys(prefix)
