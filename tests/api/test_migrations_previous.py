"""Schema migrations (Alembic) meeting databases of the previous release (made by
`create_all`, no alembic_version), with and without `orders.customer_key`, on SQLite and
PostgreSQL: adopted in place, data kept, keys filled, search index working, and the same
schema as a fresh database's. `api.py --no-migrate`, as a process, refuses such a database
with a sentence naming its revision and the one this release needs, and changes nothing.

Fresh databases and this project's own revisions: test_migrations.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, inspect, text
from starlette.testclient import TestClient

from api import create_app
from product_mcp.shop import Shop, make_engine
from tests.api.helpers import HEAD, TABLES, shop_on
from tests.databases import fresh_postgres
from tests.servers import free_port, start


def _exited(args: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run `python <args>` (forked from the tests' forkserver, tests/servers.py) to its exit:
    its exit code and output."""
    svc = start(args, port=0, health_path=None)
    try:
        code = svc.proc.wait(timeout)
    finally:
        svc.stop()
    return code, svc.log()


# --- databases of the previous release ------------------------------------------------------

SQLITE_PREVIOUS = """
CREATE TABLE products (
    id INTEGER NOT NULL, name VARCHAR(200) NOT NULL, description TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0), PRIMARY KEY (id));
CREATE TABLE orders (
    id INTEGER NOT NULL, customer_name VARCHAR(200) NOT NULL,{key_column}
    total_cents INTEGER NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (id));{key_index}
CREATE INDEX ix_orders_customer_name ON orders (customer_name);
CREATE INDEX ix_orders_created_at ON orders (created_at);
CREATE TABLE inventory (
    product_id INTEGER NOT NULL, quantity INTEGER NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (product_id), FOREIGN KEY(product_id) REFERENCES products (id));
CREATE TABLE order_items (
    order_id INTEGER NOT NULL, product_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0), unit_price_cents INTEGER NOT NULL,
    line INTEGER NOT NULL, PRIMARY KEY (order_id, product_id),
    FOREIGN KEY(order_id) REFERENCES orders (id),
    FOREIGN KEY(product_id) REFERENCES products (id));
CREATE INDEX ix_order_items_product_id ON order_items (product_id);
CREATE TABLE idempotency_keys (
    "key" VARCHAR(255) NOT NULL, request_hash VARCHAR(64) NOT NULL, order_id INTEGER NOT NULL,
    PRIMARY KEY ("key"), FOREIGN KEY(order_id) REFERENCES orders (id));
CREATE VIRTUAL TABLE products_fts USING fts5(name, description, content='products',
    content_rowid='id', tokenize='porter unicode61');
CREATE TRIGGER products_ai AFTER INSERT ON products BEGIN INSERT INTO products_fts(rowid,
    name, description) VALUES (new.id, new.name, new.description); END;
CREATE TRIGGER products_ad AFTER DELETE ON products BEGIN INSERT INTO products_fts(
    products_fts, rowid, name, description) VALUES ('delete', old.id, old.name,
    old.description); END;
CREATE TRIGGER products_au AFTER UPDATE ON products BEGIN INSERT INTO products_fts(
    products_fts, rowid, name, description) VALUES ('delete', old.id, old.name,
    old.description); INSERT INTO products_fts(rowid, name, description) VALUES (new.id,
    new.name, new.description); END;
"""
# The shop's rows as the previous release wrote them: the seed, a fifth product, three orders
# (one bought with an Idempotency-Key) and their stock taken.
PREVIOUS_ROWS = [
    "INSERT INTO products VALUES (1, 'Galaxy Smart Watch', 'Health monitoring, activity "
    "tracking, supports multiple apps', 129900), (2, 'Pro Wireless Bluetooth Earbuds', 'Active "
    "noise cancellation, 30-hour battery life, IPX7 waterproof', 89900), (3, 'Portable Power "
    "Bank', '20000mAh capacity, fast charging, lightweight design', 29900), (4, 'Huawei "
    "MateBook X Pro', '14.2-inch full-screen display, 3:2 aspect ratio, 100% sRGB color gamut',"
    " 159900), (5, 'Brass Desk Lamp', 'Warm light, heavy base', 4500)",
    "INSERT INTO inventory VALUES (1, 99), (2, 48), (3, 200), (4, 150), (5, 6)",
    "INSERT INTO orders (id, customer_name, total_cents, created_at) VALUES "
    "(1, 'ÉMILE Zoë', 129900, '2025-06-01 10:00:00.000000'), "
    "(2, 'Ünal', 179800, '2025-06-02 10:00:00.000000'), "
    "(3, 'Straße', 4500, '2025-06-03 10:00:00.000000')",
    "INSERT INTO order_items VALUES (1, 1, 1, 129900, 0), (2, 2, 2, 89900, 0), (3, 5, 1, 4500, 0)",
    f"INSERT INTO idempotency_keys VALUES ('old-key', '{'0' * 64}', 3)",
]
KEYS = {1: "émile zoë", 2: "ünal", 3: "strasse"}


def _previous_sqlite(path: Path, *, with_key: bool) -> None:
    """A shop file as the previous release left it: without `customer_key` (before issue
    #11) or with it, where the release after #11 had filled two keys and not yet the third
    (a row an older process wrote during a rolling upgrade)."""
    ddl = SQLITE_PREVIOUS.format(
        key_column=" customer_key VARCHAR(600) DEFAULT '' NOT NULL," if with_key else "",
        key_index="\nCREATE INDEX ix_orders_customer_key ON orders (customer_key);"
        if with_key
        else "",
    )
    db = sqlite3.connect(path)
    db.executescript(ddl)
    for sql in PREVIOUS_ROWS:
        db.execute(sql)
    if with_key:
        db.execute("UPDATE orders SET customer_key = 'émile zoë' WHERE id = 1")
        db.execute("UPDATE orders SET customer_key = 'ünal' WHERE id = 2")
    db.commit()
    db.close()


def _sqlite_objects(path: Path) -> list[tuple[str, str]]:
    """Every object's type and name (tables, indexes, triggers, FTS5's shadow tables)."""
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT type, name FROM sqlite_master").fetchall())


def _shape(engine: Engine) -> dict[str, Any]:
    """Each shop table's columns (name, type, nullability, default), primary and foreign
    keys, checks and indexes: what must be the same however the database got here (column
    order aside: ALTER TABLE appends)."""
    with engine.connect() as conn:
        ins = inspect(conn)
        return {
            t: (
                sorted(
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default")))
                    for c in ins.get_columns(t)
                ),
                ins.get_pk_constraint(t)["constrained_columns"],
                sorted(
                    (tuple(f["constrained_columns"]), f["referred_table"])
                    for f in ins.get_foreign_keys(t)
                ),
                sorted(" ".join(c["sqltext"].split()) for c in ins.get_check_constraints(t)),
                sorted((i["name"], tuple(i["column_names"])) for i in ins.get_indexes(t)),
            )
            for t in sorted(TABLES)
        }


def _assert_previous_data_kept(shop: Shop) -> None:
    with shop.engine.connect() as conn:
        stock = dict(conn.execute(text("SELECT product_id, quantity FROM inventory")).all())
        keys = dict(conn.execute(text("SELECT id, customer_key FROM orders")).all())
    assert stock == {1: 99, 2: 48, 3: 200, 4: 150, 5: 6}
    assert keys == KEYS
    assert [(o.id, o.customerName, o.totalAmount) for o in shop.list_orders()] == [
        (3, "Straße", 45.0),
        (2, "Ünal", 1798.0),
        (1, "ÉMILE Zoë", 1299.0),
    ]
    assert [o.id for o in shop.list_orders(customer="ÜNAL")] == [2]
    assert [o.id for o in shop.list_orders(customer="STRASSE")] == [3]
    assert [p.id for p in shop.list_products(q="lamp")] == [5]  # its index works
    assert [p.id for p in shop.list_products(q="earbuds battery")] == [2]


@pytest.mark.parametrize("with_key", [False, True], ids=["before-customer-key", "with-key"])
def test_previous_release_sqlite_file_upgrades_in_place(tmp_path: Path, with_key: bool) -> None:
    old, fresh = tmp_path / "old.db", tmp_path / "fresh.db"
    _previous_sqlite(old, with_key=with_key)
    with shop_on(f"sqlite:///{old}") as shop:
        assert shop.init() == (None, HEAD)
        _assert_previous_data_kept(shop)
    with TestClient(create_app(f"sqlite:///{old}")) as api:  # api.py's start: nothing to do
        assert [o["id"] for o in api.get("/api/orders?customer=émile ZOË").json()] == [1]
        replay = api.post(
            "/api/purchase",
            json={"customerName": "Straße", "items": [{"productId": 5, "quantity": 1}]},
            headers={"Idempotency-Key": "old-key"},
        )
        assert replay.status_code == 409  # the old key is still known (another body hash)
        new = api.post(
            "/api/purchase",
            json={"customerName": "ünal", "items": [{"productId": 5, "quantity": 2}]},
        ).json()
        assert new["id"] == 4
        assert [o["id"] for o in api.get("/api/orders?customer=ÜNAL").json()] == [4, 2]
        assert api.get("/api/inventory/5").json()["quantity"] == 4
    with shop_on(f"sqlite:///{fresh}") as reference:
        reference.init()
        assert _sqlite_objects(old) == _sqlite_objects(fresh)  # the same shape either way
        assert _shape(make_engine(f"sqlite:///{old}")) == _shape(reference.engine)
    with sqlite3.connect(old) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.execute("INSERT INTO products_fts(products_fts) VALUES ('integrity-check')")


POSTGRES_PREVIOUS = [
    "CREATE TABLE products (id SERIAL NOT NULL, name VARCHAR(200) NOT NULL, description TEXT "
    "NOT NULL, price_cents INTEGER NOT NULL CHECK (price_cents >= 0), PRIMARY KEY (id))",
    "CREATE TABLE orders (id SERIAL NOT NULL, customer_name VARCHAR(200) NOT NULL, "
    "customer_key VARCHAR(600) DEFAULT '' NOT NULL, total_cents INTEGER NOT NULL, "
    "created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL, PRIMARY KEY (id))",
    "CREATE INDEX ix_orders_customer_key ON orders (customer_key)",
    "CREATE INDEX ix_orders_customer_name ON orders (customer_name)",
    "CREATE INDEX ix_orders_created_at ON orders (created_at)",
    "CREATE TABLE inventory (product_id INTEGER NOT NULL, quantity INTEGER NOT NULL CHECK "
    "(quantity >= 0), PRIMARY KEY (product_id), FOREIGN KEY(product_id) REFERENCES products "
    "(id))",
    "CREATE TABLE order_items (order_id INTEGER NOT NULL, product_id INTEGER NOT NULL, "
    "quantity INTEGER NOT NULL CHECK (quantity > 0), unit_price_cents INTEGER NOT NULL, "
    "line INTEGER NOT NULL, PRIMARY KEY (order_id, product_id), FOREIGN KEY(order_id) "
    "REFERENCES orders (id), FOREIGN KEY(product_id) REFERENCES products (id))",
    "CREATE INDEX ix_order_items_product_id ON order_items (product_id)",
    "CREATE TABLE idempotency_keys (key VARCHAR(255) NOT NULL, request_hash VARCHAR(64) NOT "
    "NULL, order_id INTEGER NOT NULL, PRIMARY KEY (key), FOREIGN KEY(order_id) REFERENCES "
    "orders (id))",
]


def test_previous_release_postgresql_database_is_adopted(tmp_path: Path) -> None:
    """A database the previous release made on PostgreSQL (tried by hand then) gets the
    search table and its GIN index, keeps its rows, and has a fresh database's shape."""
    with (
        fresh_postgres("previous") as old_url,
        fresh_postgres("fresh") as fresh_url,
        shop_on(old_url) as old,
        shop_on(fresh_url) as fresh,
    ):
        with old.engine.begin() as conn:
            for sql in [*POSTGRES_PREVIOUS, *PREVIOUS_ROWS]:
                conn.execute(text(sql))
            conn.execute(text("UPDATE orders SET customer_key = 'ünal' WHERE id = 2"))
        assert old.init() == (None, HEAD)
        _assert_previous_data_kept(old)
        fresh.init()
        assert _shape(old.engine) == _shape(fresh.engine)
        with old.engine.begin() as conn:
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = conn.execute(
                text(
                    "EXPLAIN SELECT product_id FROM product_search WHERE search_vector @@ "
                    "to_tsquery('shop_search', 'lamp:*')"
                )
            ).all()
        assert "ix_product_search_vector" in " ".join(r[0] for r in plan)


# --- api.py --no-migrate, as a process ------------------------------------------------------


def test_no_migrate_refuses_a_previous_release_file_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _previous_sqlite(path, with_key=False)
    before = _sqlite_objects(path)
    code, log = _exited(["api.py", "--port", str(free_port()), "--no-migrate", "--database-url",
                         f"sqlite:///{path}"])  # fmt: skip
    assert code == 1, log
    assert log.strip().splitlines()[-1] == (
        "api.py --no-migrate: the database is from before schema migrations (no revision) but "
        f"this release needs revision {HEAD}: start api.py without --no-migrate to upgrade it "
        "in place, or run `uv run python -m product_mcp.shop.migrations`"
    )
    assert "Traceback" not in log
    assert _sqlite_objects(path) == before
    # Upgraded (as a start without the flag does), the same flag starts and serves.
    with shop_on(f"sqlite:///{path}") as shop:
        shop.init()
    port = free_port()
    svc = start(
        ["api.py", "--port", str(port), "--no-migrate", "--database-url", f"sqlite:///{path}"],
        port=port,
    )
    try:
        assert httpx.get(f"{svc.url}/api/orders?customer=ünal").json()[0]["id"] == 2
    finally:
        svc.stop()
