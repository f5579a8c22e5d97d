"""Search table (issue #12): PostgreSQL ranks matches from a narrow table of its own, and asks
the GIN index for words rather than prefixes.

Ranking the ~14,000 prefix matches of a common word reads nearly every heap page they sit on
(3,490 of the 3,584 pages of 100,000 products for "wireless earbuds"), and most of a search's
server time is per page and per row: the bitmap, buffer look-ups, visibility checks, then
ts_rank. The `tsvector` was a generated column of `products`, so those pages also held every
name, description and SKU, and each row was unpacked past them to reach the vector. Now the
vector lives in `product_search` (product id, archived, price in cents, vector: all that
ranking and its filters read), ~30 % fewer pages for the same matches, and `products` loses
the column and its GIN index. The vector is the one the column held (same configuration,
names weight A, descriptions B), so every match and every ts_rank score is unchanged.

A prefix ('wireless':*) costs the GIN index about twice what a word does: it gathers the
posting lists of every word it covers into a bitmap before the scan can read them. So
`search_words` lists every word the vectors hold, and `product_search_query(terms)` asks the
index for the words a term covers (when there are 1 to 16; otherwise the prefix): the same
matches, since every word of every vector is listed. Words are never removed (one no product
has any more matches nothing); the list has no unique key, so writers never wait for each
other on a new word (two may list it twice, which the query reads past).

Statement-level triggers on `products` keep both in step in the writer's own transaction: new
products get their rows (bulk inserts send one statement per 1,000 products, so this is one
INSERT ... SELECT per batch), a change of name, description, price or archived flag rewrites
the row; the foreign key (ON DELETE CASCADE) removes it with its product and lets `TRUNCATE
products ... CASCADE` empty the table. The GIN index keeps 0003's 256 kB pending list. An
existing database is filled from its products. SQLite's FTS5 table stays as it is.

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
# The words of the vectors `written` (a CTE) that are not listed yet, listed.
LIST_WORDS = f"""INSERT INTO {WORDS} (word)
        SELECT DISTINCT w FROM written, unnest(tsvector_to_array(written.search_vector)) AS w
        WHERE NOT EXISTS (SELECT FROM {WORDS} AS known WHERE known.word = w COLLATE "C")"""
UPGRADE = [
    f"""CREATE TABLE {TABLE} (
        product_id INTEGER PRIMARY KEY REFERENCES products (id) ON DELETE CASCADE,
        archived BOOLEAN NOT NULL,
        price_cents INTEGER NOT NULL,
        search_vector TSVECTOR NOT NULL)""",
    f'CREATE TABLE {WORDS} (word TEXT COLLATE "C" NOT NULL)',
    f"CREATE INDEX ix_{WORDS}_word ON {WORDS} (word)",
    f"""CREATE FUNCTION product_search_vector(name TEXT, description TEXT) RETURNS TSVECTOR
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT {VECTOR} $$""",
    f"""CREATE FUNCTION product_search_added() RETURNS TRIGGER LANGUAGE plpgsql AS $$
    BEGIN
        WITH written AS (
            INSERT INTO {TABLE} (product_id, archived, price_cents, search_vector)
            SELECT id, archived, price_cents, product_search_vector(name, description)
            FROM new_products
            RETURNING search_vector)
        {LIST_WORDS};
        RETURN NULL;
    END $$""",
    f"""CREATE FUNCTION product_search_changed() RETURNS TRIGGER LANGUAGE plpgsql AS $$
    BEGIN
        WITH written AS (
            UPDATE {TABLE} AS s SET archived = n.archived, price_cents = n.price_cents,
                search_vector = product_search_vector(n.name, n.description)
            FROM new_products AS n JOIN old_products AS o ON o.id = n.id
            WHERE s.product_id = n.id
              AND (o.name, o.description, o.price_cents, o.archived)
                  IS DISTINCT FROM (n.name, n.description, n.price_cents, n.archived)
            RETURNING s.search_vector)
        {LIST_WORDS};
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER product_search_insert AFTER INSERT ON products
        REFERENCING NEW TABLE AS new_products
        FOR EACH STATEMENT EXECUTE FUNCTION product_search_added()""",
    """CREATE TRIGGER product_search_update AFTER UPDATE ON products
        REFERENCING OLD TABLE AS old_products NEW TABLE AS new_products
        FOR EACH STATEMENT EXECUTE FUNCTION product_search_changed()""",
    # What the GIN index is asked for terms each meant as a prefix: a term that is one word
    # whose prefix covers 1 to MAX_WORDS listed words becomes those words (the first distinct
    # words >= it in byte order: all that start with it come first); any other term stays
    # the prefix to_tsquery makes of it. NULL when no term has a word (matches nothing).
    # Planned once per connection (a generic plan): PL/pgSQL would plan it again on every
    # call for the terms at hand, ~2 % of a search's server time.
    f"""CREATE FUNCTION product_search_query(terms TEXT[]) RETURNS TSQUERY
        LANGUAGE plpgsql STABLE PARALLEL SAFE SET plan_cache_mode = force_generic_plan AS $$
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
                     FROM (SELECT DISTINCT word FROM {WORDS}
                           WHERE word >= parsed.lexeme COLLATE "C"
                           ORDER BY word LIMIT {MAX_WORDS + 1}) AS next_words
                     WHERE starts_with(word, parsed.lexeme)) AS covered
        ) AS parts WHERE part <> '');
    END $$""",
    f"""WITH written AS (
            INSERT INTO {TABLE} (product_id, archived, price_cents, search_vector)
            SELECT id, archived, price_cents, product_search_vector(name, description)
            FROM products
            RETURNING search_vector)
        {LIST_WORDS}""",
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
    "DROP FUNCTION product_search_changed()",
    "DROP FUNCTION product_search_added()",
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
