"""Search table (issue #12): PostgreSQL ranks matches from a narrow table of its own.

Ranking the ~14,000 prefix matches of a common word reads nearly every heap page they sit on
(3,490 of the 3,584 pages of 100,000 products for "wireless earbuds"), and most of a search's
server time is per page and per row: the bitmap, buffer look-ups, visibility checks, then
ts_rank. The `tsvector` was a generated column of `products`, so those pages also held every
name, description and SKU, and each row was unpacked past them to reach the vector. Now the
vector lives in `product_search` (product id, archived, price in cents, vector: all that
ranking and its filters read), ~30 % fewer pages for the same matches, and `products` loses
the column and its GIN index.

The vector is the one the column held (same configuration, names weight A, descriptions B),
so every match and every ts_rank score is unchanged. Triggers on `products` keep the table in
step in the writer's own transaction: a new product gets its row, a change of name,
description, price or archived flag rewrites it; its foreign key (ON DELETE CASCADE) removes
it with its product, and lets `TRUNCATE products ... CASCADE` empty it too. The GIN index
keeps 0003's 256 kB pending list. An existing database is filled from its products in the
upgrade. SQLite's FTS5 table stays as it is.

Revision ID: 0004_search_table
Revises: 0003_search_speed
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "0004_search_table"
down_revision = "0003_search_speed"
branch_labels = None
depends_on = None
TABLE = "product_search"
INDEX = "ix_product_search_vector"
OLD_INDEX = "ix_products_search_vector"  # the column's index, made by 0001_baseline
PENDING_KB = 256  # as 0003_search_speed
VECTOR = (  # 0001_baseline's PG_VECTOR, over a function's arguments
    "setweight(to_tsvector('shop_search', name), 'A')"
    " || setweight(to_tsvector('shop_search', description), 'B')"
)
UPGRADE = [
    f"""CREATE TABLE {TABLE} (
        product_id INTEGER PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,
        archived BOOLEAN NOT NULL,
        price_cents INTEGER NOT NULL,
        search_vector TSVECTOR NOT NULL)""",
    f"""CREATE FUNCTION product_search_vector(name TEXT, description TEXT) RETURNS TSVECTOR
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {VECTOR} $$""",
    f"""CREATE FUNCTION product_search_sync() RETURNS TRIGGER LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO {TABLE} (product_id, archived, price_cents, search_vector)
            VALUES (NEW.id, NEW.archived, NEW.price_cents,
                    product_search_vector(NEW.name, NEW.description));
        ELSE
            UPDATE {TABLE} SET archived = NEW.archived, price_cents = NEW.price_cents,
                search_vector = product_search_vector(NEW.name, NEW.description)
            WHERE product_id = NEW.id;
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER product_search_insert AFTER INSERT ON products
        FOR EACH ROW EXECUTE FUNCTION product_search_sync()""",
    """CREATE TRIGGER product_search_update
        AFTER UPDATE OF name, description, price_cents, archived ON products FOR EACH ROW
        WHEN ((OLD.name, OLD.description, OLD.price_cents, OLD.archived)
              IS DISTINCT FROM (NEW.name, NEW.description, NEW.price_cents, NEW.archived))
        EXECUTE FUNCTION product_search_sync()""",
    f"""INSERT INTO {TABLE} (product_id, archived, price_cents, search_vector)
        SELECT id, archived, price_cents, product_search_vector(name, description)
        FROM products""",
    f"CREATE INDEX {INDEX} ON {TABLE} USING gin (search_vector)"
    f" WITH (gin_pending_list_limit = {PENDING_KB})",
    "ALTER TABLE products DROP COLUMN search_vector",  # and its index
]
DOWNGRADE = [
    f"ALTER TABLE products ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ({VECTOR}) STORED",
    f"CREATE INDEX {OLD_INDEX} ON products USING gin (search_vector)"
    f" WITH (gin_pending_list_limit = {PENDING_KB})",
    "DROP TRIGGER product_search_update ON products",
    "DROP TRIGGER product_search_insert ON products",
    "DROP FUNCTION product_search_sync()",
    f"DROP TABLE {TABLE}",
    "DROP FUNCTION product_search_vector(TEXT, TEXT)",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for sql in UPGRADE:
            op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for sql in DOWNGRADE:
            op.execute(sql)
