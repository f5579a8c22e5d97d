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
WORDS = "search_words"
INDEX = "ix_product_search_vector"
OLD_INDEX = "ix_products_search_vector"  # the column's index, made by 0001_baseline
PENDING_KB = 256  # as 0003_search_speed
MAX_WORDS = 16  # a prefix covering more words is left to the index's own prefix scan
VECTOR = (  # 0001_baseline's PG_VECTOR, over a function's arguments
    "setweight(to_tsvector('shop_search', name), 'A')"
    " || setweight(to_tsvector('shop_search', description), 'B')"
)
# A word as tsquery input: quoted, its quotes and backslashes escaped.
QUOTED = "'''' || replace(replace(word, '\\', '\\\\'), '''', '''''') || ''''"
UPGRADE = [
    f"""CREATE TABLE {TABLE} (
        product_id INTEGER PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,
        archived BOOLEAN NOT NULL,
        price_cents INTEGER NOT NULL,
        search_vector TSVECTOR NOT NULL)""",
    f'CREATE TABLE {WORDS} (word TEXT COLLATE "C" PRIMARY KEY)',
    f"""CREATE FUNCTION product_search_vector(name TEXT, description TEXT) RETURNS TSVECTOR
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {VECTOR} $$""",
    f"""CREATE FUNCTION product_search_sync() RETURNS TRIGGER LANGUAGE plpgsql AS $$
    DECLARE
        vector TSVECTOR := product_search_vector(NEW.name, NEW.description);
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO {TABLE} (product_id, archived, price_cents, search_vector)
            VALUES (NEW.id, NEW.archived, NEW.price_cents, vector);
        ELSE
            UPDATE {TABLE} SET archived = NEW.archived, price_cents = NEW.price_cents,
                search_vector = vector
            WHERE product_id = NEW.id;
        END IF;
        INSERT INTO {WORDS} (word)
        SELECT w FROM unnest(tsvector_to_array(vector)) AS w
        WHERE NOT EXISTS (SELECT FROM {WORDS} AS known WHERE known.word = w COLLATE "C")
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER product_search_insert AFTER INSERT ON products
        FOR EACH ROW EXECUTE FUNCTION product_search_sync()""",
    """CREATE TRIGGER product_search_update
        AFTER UPDATE OF name, description, price_cents, archived ON products FOR EACH ROW
        WHEN ((OLD.name, OLD.description, OLD.price_cents, OLD.archived)
              IS DISTINCT FROM (NEW.name, NEW.description, NEW.price_cents, NEW.archived))
        EXECUTE FUNCTION product_search_sync()""",
    # The query the GIN index is asked, for terms each meant as a prefix: a term that is one
    # word whose prefix covers 1 to MAX_WORDS known words becomes those words, exactly (the
    # known words are the first ones >= it in byte order: all that start with it come
    # first); any other term stays the prefix to_tsquery makes of it.
    f"""CREATE FUNCTION product_search_query(terms TEXT[]) RETURNS TSQUERY
        LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
    BEGIN
        RETURN (SELECT CAST(string_agg('(' || part || ')', ' | ') AS TSQUERY) FROM (
            SELECT CASE WHEN CAST(prefix AS TEXT) = quote_literal(lexeme) || ':*'
                             AND covered.n BETWEEN 1 AND {MAX_WORDS}
                        THEN covered.words ELSE CAST(prefix AS TEXT) END AS part
            FROM unnest(terms) AS term,
            LATERAL (SELECT to_tsquery('shop_search', quote_literal(term) || ':*') AS prefix,
                            (tsvector_to_array(to_tsvector('shop_search', term)))[1] AS lexeme
                    ) AS parsed,
            LATERAL (SELECT count(*) AS n, string_agg({QUOTED}, ' | ') AS words
                     FROM (SELECT word FROM {WORDS} WHERE word >= parsed.lexeme COLLATE "C"
                           ORDER BY word LIMIT {MAX_WORDS + 1}) AS next_words
                     WHERE starts_with(word, parsed.lexeme)) AS covered
        ) AS parts WHERE part <> '');
    END $$""",
    f"""INSERT INTO {TABLE} (product_id, archived, price_cents, search_vector)
        SELECT id, archived, price_cents, product_search_vector(name, description)
        FROM products""",
    f"""INSERT INTO {WORDS} (word)
        SELECT DISTINCT w FROM {TABLE}, unnest(tsvector_to_array(search_vector)) AS w""",
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
    "DROP FUNCTION product_search_query(TEXT[])",
    "DROP FUNCTION product_search_sync()",
    f"DROP TABLE {TABLE}",
    f"DROP TABLE {WORDS}",
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
