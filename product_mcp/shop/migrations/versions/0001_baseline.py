"""Baseline: the shop's schema as the release before migrations left it, plus its search index.

On an empty database this creates everything. On a database of the previous release (made by
`create_all`, so no `alembic_version`), it adopts it in place and keeps its data: tables that
exist are left alone, `orders.customer_key` is added and filled if missing, missing indexes are
created, and the full-text index is (re)built. So every database reaches this revision in the
same shape, whichever way it came.

Full-text search, one per dialect, with the same meaning: any query term as a word prefix,
after stemming (FTS5's porter tokenizer; a snowball English dictionary on PostgreSQL), names
weighted ten times descriptions.
- SQLite: an FTS5 table over products (external content) kept in step by three triggers.
- PostgreSQL: a stored generated `tsvector` column with a GIN index, under a text search
  configuration `shop_search` made to tokenize as FTS5 does: English stemming without stop
  words (FTS5 has none, so "the" is a prefix like any other), `unaccent` where the server has
  that extension (unicode61 removes diacritics: "cafe" finds "café"), and hyphenated words
  indexed as their parts only ("eco-friendly" is "eco" and "friendly"), so documents have the
  same length in words for the rankers' length normalisation.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-07-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None

INDEXES = {  # name: (table, columns), as create_all named them
    "ix_orders_customer_name": ("orders", ["customer_name"]),
    "ix_orders_customer_key": ("orders", ["customer_key"]),
    "ix_orders_created_at": ("orders", ["created_at"]),
    "ix_order_items_product_id": ("order_items", ["product_id"]),
}
FTS_TRIGGERS = {
    "products_ai": "AFTER INSERT ON products BEGIN INSERT INTO products_fts"
    "(rowid, name, description) VALUES (new.id, new.name, new.description); END",
    "products_ad": "AFTER DELETE ON products BEGIN INSERT INTO products_fts"
    "(products_fts, rowid, name, description) VALUES "
    "('delete', old.id, old.name, old.description); END",
    "products_au": "AFTER UPDATE ON products BEGIN INSERT INTO products_fts"
    "(products_fts, rowid, name, description) VALUES "
    "('delete', old.id, old.name, old.description); INSERT INTO products_fts"
    "(rowid, name, description) VALUES (new.id, new.name, new.description); END",
}
PG_WORDS = "asciiword, word, hword_asciipart, hword_part"  # stemmed, accents removed
PG_COMPOUNDS = "asciihword, hword, numhword"  # not indexed whole: FTS5 sees only the parts
PG_VECTOR = (
    "setweight(to_tsvector('shop_search', name), 'A')"
    " || setweight(to_tsvector('shop_search', description), 'B')"
)


def _tables() -> list[sa.Table]:
    """The five tables as the previous release's `create_all` made them."""
    m = sa.MetaData()
    return [
        sa.Table(
            "products",
            m,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(200), nullable=False),
            sa.Column("description", sa.Text, nullable=False),
            sa.Column(
                "price_cents", sa.Integer, sa.CheckConstraint("price_cents >= 0"), nullable=False
            ),
        ),
        sa.Table(
            "inventory",
            m,
            sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id"), primary_key=True),
            sa.Column("quantity", sa.Integer, sa.CheckConstraint("quantity >= 0"), nullable=False),
        ),
        sa.Table(
            "orders",
            m,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("customer_name", sa.String(200), nullable=False),
            sa.Column("customer_key", sa.String(600), nullable=False, server_default=""),
            sa.Column("total_cents", sa.Integer, nullable=False),
            sa.Column("created_at", sa.DateTime, nullable=False),
        ),
        sa.Table(
            "order_items",
            m,
            sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), primary_key=True),
            sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id"), primary_key=True),
            sa.Column("quantity", sa.Integer, sa.CheckConstraint("quantity > 0"), nullable=False),
            sa.Column("unit_price_cents", sa.Integer, nullable=False),
            sa.Column("line", sa.Integer, nullable=False),
        ),
        sa.Table(
            "idempotency_keys",
            m,
            sa.Column("key", sa.String(255), primary_key=True),
            sa.Column("request_hash", sa.String(64), nullable=False),
            sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), nullable=False),
        ),
    ]


def upgrade() -> None:
    conn = op.get_bind()
    existing = set(sa.inspect(conn).get_table_names())
    adopting = "products" in existing  # a database of the previous release
    for table in _tables():
        if table.name not in existing:
            table.create(conn)
    if adopting:
        _customer_key(conn)
    present = {
        i["name"] for t in ("orders", "order_items") for i in sa.inspect(conn).get_indexes(t)
    }
    for name, (table, columns) in INDEXES.items():
        if name not in present:
            op.create_index(name, table, columns)
    if conn.dialect.name == "sqlite":
        _sqlite_search(conn, rebuild=adopting)
    elif conn.dialect.name == "postgresql":
        _postgresql_search(conn)


def _customer_key(conn: sa.Connection) -> None:
    """orders.customer_key (issue #11) on a database that may predate it: added, then filled
    with each name trimmed and case-folded (what `schema.customer_key` computes)."""
    if "customer_key" not in {c["name"] for c in sa.inspect(conn).get_columns("orders")}:
        op.add_column(
            "orders",
            sa.Column("customer_key", sa.String(600), nullable=False, server_default=""),
        )
    blank = conn.execute(
        sa.text("SELECT id, customer_name FROM orders WHERE customer_key = ''")
    ).all()
    if blank:
        conn.execute(
            sa.text("UPDATE orders SET customer_key = :k WHERE id = :i"),
            [{"i": row.id, "k": row.customer_name.strip().casefold()} for row in blank],
        )


def _sqlite_search(conn: sa.Connection, *, rebuild: bool) -> None:
    conn.exec_driver_sql(
        "CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5("
        "name, description, content='products', content_rowid='id', "
        "tokenize='porter unicode61')"
    )
    for name, body in FTS_TRIGGERS.items():
        conn.exec_driver_sql(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")
    if rebuild:  # whatever the old file's index held, it now matches its products
        conn.exec_driver_sql("INSERT INTO products_fts(products_fts) VALUES ('rebuild')")


def _postgresql_search(conn: sa.Connection) -> None:
    unaccent = conn.scalar(
        sa.text("SELECT count(*) FROM pg_available_extensions WHERE name = 'unaccent'")
    )
    if unaccent:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS unaccent")
    conn.exec_driver_sql(
        "CREATE TEXT SEARCH DICTIONARY shop_stem (TEMPLATE = snowball, Language = english)"
    )
    conn.exec_driver_sql("CREATE TEXT SEARCH CONFIGURATION shop_search (COPY = english)")
    chain = "unaccent, shop_stem" if unaccent else "shop_stem"
    conn.exec_driver_sql(
        f"ALTER TEXT SEARCH CONFIGURATION shop_search ALTER MAPPING FOR {PG_WORDS} WITH {chain}"
    )
    conn.exec_driver_sql(
        f"ALTER TEXT SEARCH CONFIGURATION shop_search DROP MAPPING FOR {PG_COMPOUNDS}"
    )
    conn.exec_driver_sql(
        f"ALTER TABLE products ADD COLUMN search_vector tsvector "
        f"GENERATED ALWAYS AS ({PG_VECTOR}) STORED"
    )
    conn.exec_driver_sql(
        "CREATE INDEX ix_products_search_vector ON products USING gin (search_vector)"
    )


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        for name in FTS_TRIGGERS:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        conn.exec_driver_sql("DROP TABLE IF EXISTS products_fts")
    for table in reversed(_tables()):
        op.drop_table(table.name)
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DROP TEXT SEARCH CONFIGURATION IF EXISTS shop_search")
        conn.exec_driver_sql("DROP TEXT SEARCH DICTIONARY IF EXISTS shop_stem")
