"""The shop's tables, and the engine settings that make SQLite safe for many processes.

Money is stored as integer cents so totals add up exactly; the JSON API converts to the seed's
float prices at the edge. Stock can only go down through a conditional UPDATE (`orders.py`), and
the CHECK constraints here are the last line: stock never below zero, whatever the code does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
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
    bindparam,
    create_engine,
    event,
    inspect,
    select,
    update,
)

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("price_cents", Integer, CheckConstraint("price_cents >= 0"), nullable=False),
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
    # The default only lets `upgrade` add it to a filled table; every purchase writes it.
    Column("customer_key", String(600), nullable=False, server_default="", index=True),
    Column("total_cents", Integer, nullable=False),
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


def customer_key(name: str) -> str:
    """What customer names are compared by: trimmed and case-folded (Ünal, ÜNAL, ünal)."""
    return name.strip().casefold()


def upgrade(conn: Connection) -> None:
    """Bring a database from an earlier release up to `metadata`, in place, keeping its data.

    Portable DDL (SQLite and PostgreSQL): `create_all` makes missing tables but never alters
    an existing one, so columns added since are added here, then filled and indexed.
    """
    columns = {c["name"] for c in inspect(conn).get_columns("orders")}
    key = orders.c.customer_key
    if key.name not in columns:
        ddl_type = key.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(
            f"ALTER TABLE orders ADD COLUMN {key.name} {ddl_type} DEFAULT '' NOT NULL"
        )
    # Rows without a key: all of them just after the ALTER, and any that a process of the
    # previous release wrote meanwhile (a rolling upgrade; filled at the next start).
    blank = list(conn.execute(select(orders.c.id, orders.c.customer_name).where(key == "")))
    if blank:
        conn.execute(
            update(orders)
            .where(orders.c.id == bindparam("row_id"))
            .values(customer_key=bindparam("k")),
            [{"row_id": r.id, "k": customer_key(r.customer_name)} for r in blank],
        )
    indexes = {i["name"] for i in inspect(conn).get_indexes("orders")}
    for index in orders.indexes:
        if index.name not in indexes:
            index.create(conn)


def make_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """An engine with SQLite made safe for many threads and processes (WAL, busy wait)."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
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


def init_sqlite_fts(conn: Connection) -> None:
    """The FTS5 index over name and description, kept in step with `products` by triggers."""
    conn.exec_driver_sql(
        "CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5("
        "name, description, content='products', content_rowid='id', "
        "tokenize='porter unicode61')"
    )
    for name, body in {
        "products_ai": "AFTER INSERT ON products BEGIN INSERT INTO products_fts"
        "(rowid, name, description) VALUES (new.id, new.name, new.description); END",
        "products_ad": "AFTER DELETE ON products BEGIN INSERT INTO products_fts"
        "(products_fts, rowid, name, description) VALUES "
        "('delete', old.id, old.name, old.description); END",
        "products_au": "AFTER UPDATE ON products BEGIN INSERT INTO products_fts"
        "(products_fts, rowid, name, description) VALUES "
        "('delete', old.id, old.name, old.description); INSERT INTO products_fts"
        "(rowid, name, description) VALUES (new.id, new.name, new.description); END",
    }.items():
        conn.exec_driver_sql(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")
