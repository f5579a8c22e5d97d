"""The shop's tables, and the engine settings that make SQLite safe for many processes.

`metadata` describes the tables as the queries see them; the database itself is created and
changed only by the Alembic migrations in `migrations/` (run at start by `migrate.py`). The
full-text index is not in `metadata`: it is per dialect (an FTS5 table on SQLite; on
PostgreSQL `product_search`, a narrow table of each product's `tsvector` kept in step by
triggers), made by the migrations and read through the names below (`product_search` is
described in a MetaData of its own, so nothing creates or compares it on SQLite).

Money is stored as integer cents so totals add up exactly; the JSON API converts to the seed's
float prices at the edge. Stock can only go down through a conditional UPDATE (`orders.py`), and
the CHECK constraints here are the last line: stock never below zero, whatever the code does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    false,
)
from sqlalchemy.dialects.postgresql import TSVECTOR
from sqlalchemy.engine import URL, ExceptionContext, make_url

from models import trimmed

metadata = MetaData()
# PostgreSQL connections per process, all kept once opened. With 5 kept and 10 more opened on
# demand, 32 buyers made the pool close and reopen connections all the time (25 to 166 backends
# started in a run of 2,000 purchases: a fork and a cold cache each, statements prepared again);
# and more connections than this only queue more backends on a row lock (PostgreSQL's CPU per
# purchase 0.8 ms with 4, 1.0 ms with 15, 32 clients buying one product).
PG_POOL = 8

SEARCH_TABLE = "products_fts"  # SQLite: the FTS5 table over products (and its shadow tables)
PG_SEARCH_TABLE = "product_search"  # PostgreSQL: the table of tsvectors (0004_search_table)
PG_SEARCH_WORDS = "search_words"  # PostgreSQL: every word those vectors hold (0004)
SEARCH_CONFIG = "shop_search"  # PostgreSQL: its text search configuration

products = Table(
    "products",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("price_cents", Integer, CheckConstraint("price_cents >= 0"), nullable=False),
    # The owner's product key (issue #13): bulk imports update the product with the same SKU.
    Column("sku", String(64), nullable=True, unique=True, index=True),
    # Archived products leave listings, search and sale; past orders still point at them.
    Column("archived", Boolean, nullable=False, server_default=false()),
)
inventory = Table(
    "inventory",
    metadata,
    Column("product_id", Integer, ForeignKey("products.id"), primary_key=True),
    Column("quantity", Integer, CheckConstraint("quantity >= 0"), nullable=False),
)
orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_name", String(200), nullable=False, index=True),
    # customer_key(customer_name), for lookups in any case across all of Unicode (SQLite's
    # lower() folds ASCII only). Case folding can triple a name's length ("ﬃ" -> "ffi").
    # The default only let the baseline migration add it to a filled table; every purchase
    # writes it.
    Column("customer_key", String(600), nullable=False, server_default="", index=True),
    # 64-bit (PostgreSQL's integer is 32): up to 100 × 10,000 units × $10,000,000 (0006).
    Column("total_cents", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("created_at", DateTime, nullable=False, index=True),
)
order_items = Table(
    "order_items",
    metadata,
    Column("order_id", Integer, ForeignKey("orders.id"), primary_key=True),
    Column("product_id", Integer, ForeignKey("products.id"), primary_key=True, index=True),
    Column("quantity", Integer, CheckConstraint("quantity > 0"), nullable=False),
    Column("unit_price_cents", Integer, nullable=False),
    Column("line", Integer, nullable=False),
)
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("order_id", Integer, ForeignKey("orders.id"), nullable=False),
)

# PostgreSQL only: what ranking and its filters read, one row per product (GIN-indexed
# `search_vector`: names weight A, descriptions B), written by triggers on `products`.
product_search = Table(
    PG_SEARCH_TABLE,
    MetaData(),
    Column("product_id", Integer, primary_key=True),
    Column("archived", Boolean, nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("search_vector", TSVECTOR, nullable=False),
)

# 64-bit on PostgreSQL; SQLite's INTEGER is 64-bit already (and only INTEGER aliases the rowid).
SEQ = BigInteger().with_variant(Integer, "sqlite")
# The change feed's outbox (issue #13): every change to a product or its stock appends a row in
# the same transaction. `seq` only grows (AUTOINCREMENT on SQLite: never reused after pruning)
# and readers never pass a seq whose writer is still running: SQLite has one writer, and on
# PostgreSQL readers wait for running appenders through an advisory lock (`changes.py`).
product_changes = Table(
    "product_changes",
    metadata,
    Column("seq", SEQ, primary_key=True, autoincrement=True),
    Column("product_id", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("quantity", Integer, nullable=True),
    Column("price_cents", Integer, nullable=True),
    Column("at", DateTime, nullable=False, index=True),
    sqlite_autoincrement=True,
)
# One row: the highest seq pruning removed, so a consumer older than that is told to resync.
change_feed = Table(
    "change_feed",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pruned_through", SEQ, nullable=False, server_default="0"),
)


def customer_key(name: str) -> str:
    """What customer names are compared by: trimmed (of invisible characters too, as a
    purchase's name is) and case-folded (Ünal, ÜNAL, ünal)."""
    return trimmed(name).casefold()


def postgres_url(url: URL) -> URL:
    """psycopg 3 for `postgresql://` and `postgres://` (SQLAlchemy would look for psycopg2),
    and a URL naming several servers made to follow a failover.

    With `?host=h1:p1&host=h2:p2` libpq tries the servers in order and keeps the first that
    answers; with the primary down that is the standby, read-only until promoted, where every
    purchase failed (a 500, not a 503). So unless the URL says otherwise, several hosts get
    `target_session_attrs=read-write`: connections go only to the server that takes writes;
    while there is none they fail (503), and once the standby is promoted they land on it
    (tests/faults/test_postgres_failover_standby.py). `host=h1:p1,h2:p2` is split into that
    form too (SQLAlchemy would pass "h1:p1,h2:p2" to libpq as one host name).
    """
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    hosts = url.query.get("host")
    if isinstance(hosts, str) and "," in hosts and ":" in hosts and "port" not in url.query:
        hosts = hosts.split(",")
        url = url.update_query_dict({"host": hosts})
    several = len(hosts) > 1 if isinstance(hosts, (list, tuple)) else "," in (hosts or "")
    if several and "target_session_attrs" not in url.query:
        url = url.update_query_dict({"target_session_attrs": "read-write"})
    return url


READ_ONLY_SQLSTATE = "25006"  # read_only_sql_transaction


def _read_only_is_lost(ctx: ExceptionContext) -> None:
    """A server that refuses writes (a demoted primary, a standby reached through a name or a
    proxy) is as good as gone for this API: the pool drops its connections, the request gets
    503 (api.py), and the next connections find the server that takes writes."""
    if getattr(ctx.original_exception, "sqlstate", None) == READ_ONLY_SQLSTATE:
        ctx.is_disconnect = True


def _no_prefetch(dbapi_conn: Any, _record: Any) -> None:
    """PostgreSQL: no prefetching in bitmap heap scans, for this connection.

    A search visits a few thousand heap pages of `product_search` for its matches, all in
    shared buffers (the catalogue is small); with `effective_io_concurrency` at its default of
    1 each page was also looked up once more ahead of time, to ask the kernel for it: ~5 % of a
    search's server CPU (issue #12; 11.0 -> 10.6 ms per search, 8.4 -> 7.9 ms per
    recommendation on the 100,000-product catalogue). Committed: a SET in a transaction that
    rolls back is undone."""
    with dbapi_conn.cursor() as cur:
        cur.execute("SET effective_io_concurrency = 0")
    dbapi_conn.commit()


# A PostgreSQL server that goes silent (a dead host, a dropped network: nothing refuses) held
# requests for ever: a new connection waited on libpq's connect_timeout (none by default), a
# pooled one on the kernel (about 15 minutes of retransmissions) (found from outside). These
# bound both; the URL's own values win.
PG_SILENCE: dict[str, int] = {
    "connect_timeout": 5,  # seconds to connect, per host
    "keepalives": 1,
    "keepalives_idle": 30,  # an idle connection is probed after 30 s...
    "keepalives_interval": 10,
    "keepalives_count": 3,  # ...and dropped after 3 probes unanswered
    "tcp_user_timeout": 30_000,  # ms: data sent and not acknowledged for this long drops it
}


def make_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """An engine with SQLite made safe for many threads and processes (WAL, busy wait).

    PostgreSQL URLs go through `postgres_url` (psycopg 3; several hosts: the writable one).
    Each process keeps at most PG_POOL PostgreSQL connections, so 4 API workers stay well
    inside the server's default max_connections of 100; requests beyond that wait for one.
    A pooled connection is pinged before use: one killed a moment before (pg_terminate_backend,
    a restart) is replaced instead of failing its request.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() in ("postgresql", "postgres"):
        parsed = postgres_url(parsed)
    if parsed.get_backend_name() != "sqlite":
        postgres = parsed.get_backend_name() == "postgresql"
        engine = create_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=PG_POOL if postgres else 5,
            max_overflow=0 if postgres else 10,
            connect_args={k: v for k, v in PG_SILENCE.items() if k not in parsed.query}
            if postgres
            else {},
        )
        event.listen(engine, "handle_error", _read_only_is_lost)
        if postgres:
            event.listen(engine, "connect", _no_prefetch)
        return engine
    engine = create_engine(
        url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=16
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide where transactions begin (so BEGIN IMMEDIATE works).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front: no deadlocked read→write upgrades between processes.
        conn.exec_driver_sql(
            "BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN"
        )

    return engine
