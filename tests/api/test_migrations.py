"""Schema migrations (Alembic, product_mcp/shop/migrations/) on SQLite and PostgreSQL, from a
fresh database and between this project's revisions.

- A fresh database is migrated to head and seeded once; a second start changes nothing; the
  migrated schema is what `schema.metadata` describes (autogenerate finds no difference).
- `init(migrate=False)` refuses an empty or unknown revision with a sentence naming the
  database's revision and the one this release needs.
- Several processes starting on one fresh database at once: one migrates, the others wait for
  its lock and find the work done.
- Downgrade to base and back works (so the baseline's downgrade is not dead code), and a
  database at each earlier revision upgrades in place.

Databases of the previous release (before migrations) and api.py --no-migrate:
test_migrations_previous.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from product_mcp.shop import make_engine
from product_mcp.shop.migrate import SchemaNotCurrent, config, head, include_name, known_head
from product_mcp.shop.schema import metadata
from tests.api.helpers import HEAD, TABLES, shop_on
from tests.databases import DATABASES, fresh_database
from tests.servers import start


@pytest.fixture(params=DATABASES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database of each kind, for one test."""
    with fresh_database(request.param, tmp_path, "migrations") as u:
        yield u


def _scalar(engine: Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.scalar(text(sql))


def test_head_is_the_baseline() -> None:
    assert head() == HEAD  # a new revision: update HEAD and add its upgrade test here
    assert known_head() == head()  # the start-up check without Alembic reads the same files


def test_fresh_database_migrates_once_and_matches_metadata(url: str) -> None:
    with shop_on(url) as shop:
        assert shop.init() == (None, HEAD)
        assert shop.init() == (HEAD, HEAD)  # a second start: nothing to do, no second seed
        assert _scalar(shop.engine, "SELECT count(*) FROM products") == 4
        assert _scalar(shop.engine, "SELECT version_num FROM alembic_version") == HEAD
        with shop.engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) >= TABLES
            context = MigrationContext.configure(conn, opts={"include_name": include_name})
            assert compare_metadata(context, metadata) == []
        assert [p.id for p in shop.list_products(q="earbuds")] == [2]


def test_downgrade_to_base_and_back(url: str) -> None:
    with shop_on(url) as shop:
        shop.init()
        with shop.engine.begin() as conn:
            command.downgrade(config(conn), "base")
        with shop.engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) & TABLES == set()
        assert shop.init() == (None, HEAD)
        assert [p.id for p in shop.list_products(q="power")] == [3]


def test_unknown_or_missing_revision_is_refused_with_a_sentence(url: str) -> None:
    with shop_on(url) as shop:
        with pytest.raises(SchemaNotCurrent) as empty:
            shop.init(migrate=False)
        assert empty.value.message.startswith(
            f"the database is empty (no revision) but this release needs revision {HEAD}: "
            "start api.py without --no-migrate"
        )
        shop.init()
        shop.init(migrate=False)  # current: fine
        with shop.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        with pytest.raises(SchemaNotCurrent) as newer:
            shop.init()
        assert newer.value.message == (
            "the database is at revision 9999_future, which this release does not know "
            f"(a newer release migrated it?); this release needs {HEAD}"
        )
        with pytest.raises(SchemaNotCurrent) as refused:
            shop.init(migrate=False)
        assert f"at revision 9999_future but this release needs revision {HEAD}" in (
            refused.value.message
        )


def test_processes_starting_together_migrate_once(url: str) -> None:
    """Three processes migrate one fresh database at once (as API workers do at start)."""
    procs = [
        start(
            ["-m", "product_mcp.shop.migrations", "--database-url", url], port=0, health_path=None
        )
        for _ in range(3)
    ]
    try:
        codes = [p.proc.wait(120) for p in procs]
    finally:
        for p in procs:
            p.stop()
    outputs = [p.log() for p in procs]
    assert codes == [0] * 3, outputs
    assert all(f"database at revision {HEAD}; this release needs {HEAD}" in o for o in outputs)
    engine = make_engine(url)
    try:
        assert _scalar(engine, "SELECT count(*) FROM products") == 4
        assert _scalar(engine, "SELECT count(*) FROM inventory") == 4
        assert _scalar(engine, "SELECT count(*) FROM alembic_version") == 1
    finally:
        engine.dispose()


def test_baseline_database_upgrades_to_live_inventory_in_place(url: str) -> None:
    """A database at 0001_baseline with orders (the release before issue #13) gains SKUs,
    the archived flag and the change feed; its products stay listed and buyable."""
    with shop_on(url) as shop:
        shop.init()
        with shop.engine.begin() as conn:
            command.downgrade(config(conn), "0001_baseline")
        with shop.engine.connect() as conn:
            assert "product_changes" not in inspect(conn).get_table_names()
        with shop.engine.begin() as conn:
            conn.execute(text("UPDATE inventory SET quantity = 7 WHERE product_id = 2"))
        assert shop.init() == ("0001_baseline", HEAD)
        assert [p.id for p in shop.list_products()] == [1, 2, 3, 4]
        assert _scalar(shop.engine, "SELECT count(*) FROM products WHERE archived") == 0
        assert _scalar(shop.engine, "SELECT pruned_through FROM change_feed") == 0
        assert shop.get_product(2)[1] == 7
        assert [p.id for p in shop.list_products(q="earbuds")] == [2]


def test_live_inventory_database_upgrades_to_search_speed(url: str) -> None:
    """A database at 0002_live_inventory: on PostgreSQL the search index's pending list is
    capped at 256 kB (searches read it whole; since 0004 the index is product_search's), on
    SQLite nothing changes; search still works."""
    reloptions = "SELECT reloptions FROM pg_class WHERE relname = '{}'"
    with shop_on(url) as shop:
        shop.init()
        with shop.engine.begin() as conn:
            command.downgrade(config(conn), "0002_live_inventory")
        postgresql = shop.engine.dialect.name == "postgresql"
        if postgresql:
            assert _scalar(shop.engine, reloptions.format("ix_products_search_vector")) is None
        assert shop.init() == ("0002_live_inventory", HEAD)
        if postgresql:
            limit = _scalar(shop.engine, reloptions.format("ix_product_search_vector"))
            assert limit == ["gin_pending_list_limit=256"]
        shop.add_products([("Trail Earbuds", 1_000, "sweat-proof", 3)])
        assert [p.id for p in shop.list_products(q="earbuds", limit=10)] == [5, 2]


WIRELESS = "to_tsquery('shop_search', 'wireless:* | earbuds:*')"


def _ranks(engine: Engine, table: str, key: str) -> dict[int, float]:
    """Each product matching "wireless earbuds" in `table`'s tsvectors, with its ts_rank."""
    weights = "'{0, 0, 0.1, 1.0}'::float4[]"
    sql = (
        f"SELECT {key}, ts_rank({weights}, search_vector, {WIRELESS}, 1) FROM {table} "
        f"WHERE search_vector @@ {WIRELESS}"
    )
    with engine.connect() as conn:
        return {key: rank for key, rank in conn.execute(text(sql))}


def test_search_speed_database_upgrades_to_search_table(url: str) -> None:
    """A database at 0003_search_speed whose products were added, renamed, repriced and
    archived: on PostgreSQL the tsvectors move from products' column to product_search (a row
    per product, the same matches and ts_rank scores, their words listed, the column gone) and
    search answers as before; on SQLite nothing changes."""
    with shop_on(url) as shop:
        shop.init()
        with shop.engine.begin() as conn:
            command.downgrade(config(conn), "0003_search_speed")
        shop.add_products([("Trail Earbuds", 1_000, "sweat-proof", 3), ("Desk Lamp", 2_500, "", 1)])
        with shop.engine.begin() as conn:
            conn.execute(text("UPDATE products SET name = 'Wireless Lamp' WHERE id = 6"))
            conn.execute(text("UPDATE products SET price_cents = 500 WHERE id = 5"))
            conn.execute(text("UPDATE products SET archived = true WHERE id = 1"))
        postgresql = shop.engine.dialect.name == "postgresql"
        if postgresql:
            before = _ranks(shop.engine, "products", "id")
            assert set(before) == {2, 5, 6}
        assert shop.init() == ("0003_search_speed", HEAD)
        if postgresql:
            assert _ranks(shop.engine, "product_search", "product_id") == before
            words = "SELECT count(DISTINCT word) FROM search_words"
            words += " WHERE word IN ('wireless', 'earbud', 'lamp')"
            assert _scalar(shop.engine, words) == 3
            copies = "SELECT product_id, archived, price_cents FROM product_search ORDER BY 1"
            products = "SELECT id, archived, price_cents FROM products ORDER BY 1"
            with shop.engine.connect() as conn:
                assert conn.execute(text(copies)).all() == conn.execute(text(products)).all()
                columns = {c["name"] for c in inspect(conn).get_columns("products")}
            assert "search_vector" not in columns
        found = [p.id for p in shop.list_products(q="wireless earbuds", limit=10)]
        assert sorted(found) == [2, 5, 6]
        if postgresql:
            assert found == sorted(before, key=lambda i: (-before[i], i))
        assert [p.id for p in shop.list_products(q="earbuds", max_price=5.0)] == [5]


def test_search_table_database_upgrades_to_search_names(url: str) -> None:
    """A database at 0004_search_table with products: on PostgreSQL each product gets its word
    count and each word its largest share (the bounds that let a search rank the shortest name
    matches first), and searches rank as ts_rank says; on SQLite nothing changes."""
    with shop_on(url) as shop:
        shop.init()
        with shop.engine.begin() as conn:
            command.downgrade(config(conn), "0004_search_table")
        shop.add_products([("Trail Earbuds", 1_000, "sweat-proof", 3), ("Lamp", 900, "earbuds", 1)])
        postgresql = shop.engine.dialect.name == "postgresql"
        if postgresql:
            ranks = _ranks(shop.engine, "product_search", "product_id")
        assert shop.init() == ("0004_search_table", HEAD)
        found = [p.id for p in shop.list_products(q="wireless earbuds", limit=10)]
        assert sorted(found) == [2, 5, 6]
        assert [p.id for p in shop.list_products(q="wireless earbuds", limit=1)] == found[:1]
        if postgresql:
            assert found == sorted(ranks, key=lambda i: (-ranks[i], i))
            lengths = "SELECT word_count FROM product_search WHERE product_id IN (5, 6) ORDER BY 1"
            with shop.engine.connect() as conn:  # "lamp earbud", "trail earbud sweat proof"
                assert conn.scalars(text(lengths)).all() == [2, 4]
            share = "SELECT max(share) FROM search_words WHERE word = 'earbud'"
            assert _scalar(shop.engine, share) == pytest.approx(1 / 1.64493406685, rel=1e-6)
            bounds = "SELECT words FROM product_search_bounds(ARRAY['wireless', 'earbuds'])"
            assert sorted(_scalar(shop.engine, bounds)) == ["earbud", "wireless"]


def test_search_names_database_upgrades_to_order_totals(url: str) -> None:
    """A database at 0005_search_names with an order: on PostgreSQL the order total becomes a
    64-bit column and keeps its value (a purchase over 2^31 cents then fits); on SQLite
    nothing changes (its INTEGER is 64-bit)."""
    with shop_on(url) as shop:
        shop.init()
        with shop.engine.begin() as conn:
            command.downgrade(config(conn), "0005_search_names")
        type_of = (
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'orders' AND column_name = 'total_cents'"
        )
        postgresql = shop.engine.dialect.name == "postgresql"
        if postgresql:
            assert _scalar(shop.engine, type_of) == "integer"
        with shop.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO orders (customer_name, customer_key, total_cents, created_at) "
                    "VALUES ('Old', 'old', 2147483647, '2026-11-01 10:00:00')"
                )
            )
        assert shop.init() == ("0005_search_names", HEAD)
        if postgresql:
            assert _scalar(shop.engine, type_of) == "bigint"
        assert _scalar(shop.engine, "SELECT total_cents FROM orders") == 2147483647
        with shop.engine.begin() as conn:
            conn.execute(text("UPDATE orders SET total_cents = total_cents * 1000"))
        assert _scalar(shop.engine, "SELECT total_cents FROM orders") == 2147483647000
