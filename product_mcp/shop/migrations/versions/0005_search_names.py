"""Search names first (issue #12): PostgreSQL ranks the products whose names match before the
others, and only those when the others provably cannot reach the page.

A search ranked every match: ~10,000 to 23,000 of the 100,000 generated products for the
bench's queries, a heap visit and a ts_rank each, ~12 ms of server CPU. Most of those match in
their descriptions alone, and with names weighing ten times descriptions they rank far below
the products whose names match. Two things let the search skip them without changing a result:

- `ix_product_search_names`, a GIN index of each vector's name words alone
  (`ts_filter(search_vector, '{a}')`, the weight-A part), so the products with a name match
  are found without reading the others;
- `product_search_other_bound(terms)`, the most any product without a name match can score
  for those terms. Each of its matching words is a description word (weight 0.1), and
  ts_rank's share for one word is below its weight (a sum of weight/k^2 over its
  occurrences, divided by pi^2/6), whatever the word; summed over the query's terms (a word
  counts once per term it starts with), divided by their number, then by log2(1 + the
  product's length in words), at least the number of those words. So the bound is
  0.1 * (words covered, at most the known words the terms start) * (terms one word can
  start) / terms / log2(1 + words covered). NULL where that reasoning does not hold or would
  bound nothing: a term that parses into several words (a phrase, ranked differently), or
  more than 64 known words covered (a short prefix).

The search then ranks the name matches first; if it found a full page of them and the last
one scores above the bound, that is the answer (every other match scores lower); otherwise it
ranks every match as before (catalog.py). For "wireless earbuds" that ranks 6,273 products
instead of 14,031. SQLite's FTS5 ranking is unchanged.

Revision ID: 0005_search_names
Revises: 0004_search_table
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0005_search_names"
down_revision = "0004_search_table"
branch_labels = None
depends_on = None
INDEX = "ix_product_search_names"
PENDING_KB = 256  # as 0003_search_speed and 0004_search_table
MAX_WORDS = 64
# Above the true bound by more than ts_rank's float rounding could push a score over it.
MARGIN = 1.000001
UPGRADE = [
    f"CREATE INDEX {INDEX} ON product_search USING gin (ts_filter(search_vector, '{{a}}'))"
    f" WITH (gin_pending_list_limit = {PENDING_KB})",
    # Terms parse as product_search_query parses them; `items` are the distinct prefixes a
    # plain term makes (ts_rank's "number of query items"); `covered` counts the known words
    # each item starts, reading the next MAX_WORDS + 1 listed words from the item on.
    f"""CREATE FUNCTION product_search_other_bound(terms TEXT[]) RETURNS FLOAT8
        LANGUAGE plpgsql STABLE PARALLEL SAFE SET plan_cache_mode = force_generic_plan AS $$
    BEGIN
        RETURN (
            WITH parsed AS (
                SELECT to_tsquery('shop_search', quote_literal(term) || ':*') AS prefix,
                       (tsvector_to_array(to_tsvector('shop_search', term)))[1] AS lexeme
                FROM unnest(terms) AS term),
            items AS (SELECT DISTINCT lexeme AS item FROM parsed WHERE numnode(prefix) > 0),
            covered AS (
                SELECT count(DISTINCT word) AS n FROM items,
                LATERAL (SELECT DISTINCT word FROM search_words
                         WHERE word >= items.item COLLATE "C"
                         ORDER BY word LIMIT {MAX_WORDS + 1}) AS next_words
                WHERE starts_with(word, items.item)),
            chain AS (
                SELECT max((SELECT count(*) FROM items AS j WHERE starts_with(i.item, j.item)))
                    AS o FROM items AS i)
            SELECT 0.1 * o * n / (SELECT count(*) FROM items)
                   / (ln(CAST(n + 1 AS FLOAT8)) / ln(2.0::FLOAT8)) * {MARGIN}
            FROM covered, chain
            WHERE n BETWEEN 1 AND {MAX_WORDS}
              AND NOT EXISTS (SELECT FROM parsed WHERE numnode(prefix) > 0
                              AND CAST(prefix AS TEXT) <> quote_literal(lexeme) || ':*'));
    END $$""",
]
DOWNGRADE = [
    "DROP FUNCTION product_search_other_bound(TEXT[])",
    f"DROP INDEX {INDEX}",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for sql in UPGRADE:
            op.execute(sql)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for sql in DOWNGRADE:
            op.execute(sql)
