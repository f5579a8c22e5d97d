"""Search the shortest name matches first (issue #12): PostgreSQL ranks a page's best matches
from few products when it can prove the others cannot reach the page.

A search ranked every match: ~10,000 to 23,000 of the 100,000 generated products for the
bench's queries, a heap visit and a ts_rank each, ~12 ms of server CPU for a page of ten.
ts_rank (weights: names 1.0, descriptions 0.1; normalisation 1) is, for a product p,

    sum over query items i, over p's words w starting with i, of share(w, p)
    / (number of items) / log2(1 + p's length in words)

where share(w, p), w's own ts_rank in p without normalisation, depends on where w stands in p
alone. Two bounds follow, each computed per query from `search_words`:
- a product none of whose name words matches scores at most `other`: each matching word is
  a description word (weight 0.1) and its share is below its weight (a sum of weight/k^2
  over its occurrences, divided by pi^2/6); summed over the items (a word counts once per
  item it starts), divided by their number and by log2(1 + its length) >= log2(1 + words
  covered): 0.1 * (known words the items start) * (items one word can start) / items
  / log2(1 + known words the items start);
- a product of more than L words scores at most sum(share of each covered word, its largest
  in any product) / items / log2(2 + L): `search_words` now keeps each word's largest share
  (`share`; it only grows, so it stays a bound when products change or go).

So `product_search_best(terms, prefixes, top, min_cents, max_cents)` ranks the products
whose name matches a term by length: those of at most 8 words, then of 9, 10, ... 16 words,
then up to 20, 24, 32, 48 and more (`ix_product_search_tags`: each word of a product tagged
with where it stands, A name or B description, and its product's length range, from
`product_search.word_count`; a search asks for the tags of a range at a time). As soon as it
holds `top` of them and the last scores above both bounds for what it has not read
(strictly: nothing else can even tie), they are the answer; once it holds `top`, it goes
straight to the length that settles it, and when that takes more than 32 tags it reads all
the longer name matches at once (`ix_product_search_names`, the name words alone).
Otherwise it ranks every match as before. When no product has these words in its name
(shares all below 0.5: a name occurrence alone is worth 1/(pi^2/6) ~ 0.61), every match is
a description match, and it goes through the B tags by length the same way. For "wireless
earbuds" that ranks the 969 earbuds of 11 words instead of 14,031 matches. No shortcut
where a bound is NULL: a term that parses into several words (a phrase, ranked another way),
a term covering more than 16 known words (more than 64 for `other`).

The triggers of 0004_search_table now also write `word_count` and the shares; an existing
database gets both from its vectors. SQLite's FTS5 ranking is unchanged.

Revision ID: 0005_search_names
Revises: 0004_search_table
Create Date: 2026-12-03
"""

from __future__ import annotations

from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path

from alembic import op

revision = "0005_search_names"
down_revision = "0004_search_table"
branch_labels = None
depends_on = None
TABLE = "product_search"
WORDS = "search_words"
INDEX = "ix_product_search_tags"
NAMES_INDEX = "ix_product_search_names"
PENDING_KB = 256  # as 0003_search_speed and 0004_search_table
# The word counts a tag tells apart, as ranges (their upper edges): up to 8 words, then one
# per count up to 16, then wider; the last is "more than 48". A search asks for few at once:
# GIN checks each match against every tag asked for.
EDGES = [8, *range(9, 17), 20, 24, 32, 48, 64]
MOST_TAGS = 32  # more tags at once: the longer name matches are read through their own index
WEIGHTS = "'{0, 0, 0.1, 1.0}'::float4[]"  # catalog.py's ranking: D, C, B (descriptions), A
# Above each true bound by more than ts_rank's float rounding could push a score.
MARGIN = 1.0001
# A product's length as ts_rank counts it: its words' occurrences (1 for one without any).
WORD_COUNT = (
    "(SELECT CAST(COALESCE(sum(GREATEST(cardinality(u.positions), 1)), 0) AS INTEGER)"
    " FROM unnest({v}) AS u)"
)
# The range (its upper edge) a word count falls in.
RANGE = (
    "CASE"
    + "".join(f" WHEN word_count <= {edge} THEN {edge}" for edge in EDGES[:-1])
    + f" ELSE {EDGES[-1]} END"
)


def _tagged(weight: str, mark: str) -> str:
    """The words of a weight (a: names, b: descriptions) as text, each tagged 'word MARK range'.
    The stripped part as text is 'w1' 'w2' ...; a closing quote is one followed by a space or
    the end (a quote inside a word is doubled, and words hold no spaces)."""
    return (
        f"regexp_replace(CAST(strip(ts_filter(search_vector, '{{{weight}}}')) AS TEXT),"
        f" '''( |$)', ' {mark} ' || CAST({RANGE} AS TEXT) || '''\\1', 'g')"
    )


# Each word of a product tagged with where it stands (A: in the name, B: in the description)
# and its product's length range: 'earbud A 11', 'charg B 14'.
TAGS = f"CAST({_tagged('a', 'A')} || ' ' || {_tagged('b', 'B')} AS TSVECTOR)"
NAMES = "ts_filter(search_vector, '{a}')"  # a product's name words (weight A)
P_TAGS = TAGS.replace("search_vector", "p.search_vector").replace("word_count", "p.word_count")
P_NAMES = NAMES.replace("search_vector", "p.search_vector")
# A word as tsquery input: quoted, its quotes and backslashes escaped.
QUOTED = "'''' || replace(replace({w}, '\\', '\\\\'), '''', '''''') || ''''"
# Each word of the vectors `written` (a CTE) with its largest share in them, listed unless a
# row with at least that share is there already (rows are only added: writers never wait).
LIST_SHARES = f"""INSERT INTO {WORDS} (word, share)
        SELECT s.word, s.share FROM (
            SELECT u.lexeme AS word, max(ts_rank({WEIGHTS}, written.search_vector,
                CAST({QUOTED.format(w="u.lexeme")} AS TSQUERY), 0)) AS share
            FROM written, unnest(written.search_vector) AS u GROUP BY u.lexeme) AS s
        WHERE NOT EXISTS (SELECT FROM {WORDS} AS known
                          WHERE known.word = s.word COLLATE "C" AND known.share >= s.share)"""
ADDED = f"""CREATE OR REPLACE FUNCTION product_search_added() RETURNS TRIGGER
    LANGUAGE plpgsql AS $$
    BEGIN
        WITH written AS (
            INSERT INTO {TABLE} (product_id, archived, price_cents, search_vector, word_count)
            SELECT id, archived, price_cents, v, {WORD_COUNT.format(v="v")}
            FROM (SELECT id, archived, price_cents, product_search_vector(name, description) AS v
                  FROM new_products) AS n
            RETURNING search_vector)
        {LIST_SHARES};
        RETURN NULL;
    END $$"""
CHANGED = f"""CREATE OR REPLACE FUNCTION product_search_changed() RETURNS TRIGGER
    LANGUAGE plpgsql AS $$
    BEGIN
        WITH written AS (
            UPDATE {TABLE} AS s SET archived = n.archived, price_cents = n.price_cents,
                search_vector = n.v, word_count = {WORD_COUNT.format(v="n.v")}
            FROM (SELECT n.id, n.archived, n.price_cents,
                         product_search_vector(n.name, n.description) AS v
                  FROM new_products AS n JOIN old_products AS o ON o.id = n.id
                  WHERE (o.name, o.description, o.price_cents, o.archived)
                        IS DISTINCT FROM (n.name, n.description, n.price_cents, n.archived)
                 ) AS n
            WHERE s.product_id = n.id
            RETURNING s.search_vector)
        {LIST_SHARES};
        RETURN NULL;
    END $$"""
# The bounds for `terms` (see the docstring): `other`, `per_length` (to divide by log2(2 + L))
# and the known words the items cover (NULL where no shortcut applies). The items parse as in
# product_search_query; each item reads the next 65 listed words from it on.
BOUNDS = f"""CREATE FUNCTION product_search_bounds(terms TEXT[],
        OUT other FLOAT8, OUT per_length FLOAT8, OUT words TEXT[], OUT named BOOLEAN)
    LANGUAGE plpgsql STABLE PARALLEL SAFE SET plan_cache_mode = force_generic_plan AS $$
    DECLARE
        size BIGINT; n BIGINT; chain BIGINT; widest BIGINT; shares FLOAT8; unknown BOOLEAN;
        phrase BOOLEAN;
    BEGIN
        WITH parsed AS (
            SELECT to_tsquery('shop_search', quote_literal(term) || ':*') AS prefix,
                   (tsvector_to_array(to_tsvector('shop_search', term)))[1] AS lexeme
            FROM unnest(terms) AS term),
        items AS (SELECT DISTINCT lexeme AS item FROM parsed WHERE numnode(prefix) > 0),
        covered AS (
            SELECT items.item, w.word, w.share FROM items,
            LATERAL (SELECT k.word, max(k.share) AS share FROM {WORDS} AS k
                     WHERE k.word >= items.item COLLATE "C"
                     GROUP BY k.word ORDER BY k.word LIMIT 65) AS w
            WHERE starts_with(w.word, items.item))
        SELECT (SELECT count(*) FROM items), (SELECT count(DISTINCT c.word) FROM covered AS c),
               (SELECT max((SELECT count(*) FROM items AS j WHERE starts_with(i.item, j.item)))
                FROM items AS i),
               (SELECT max(g.n) FROM (SELECT count(*) AS n FROM covered GROUP BY item) AS g),
               (SELECT sum(c.share) FROM covered AS c),
               (SELECT bool_or(c.share IS NULL) FROM covered AS c),
               (SELECT array_agg(DISTINCT c.word) FROM covered AS c),
               (SELECT bool_or(c.share >= 0.5) FROM covered AS c),
               EXISTS (SELECT FROM parsed AS p WHERE numnode(p.prefix) > 0
                       AND CAST(p.prefix AS TEXT) <> quote_literal(p.lexeme) || ':*')
        INTO size, n, chain, widest, shares, unknown, words, named, phrase;
        IF phrase OR n NOT BETWEEN 1 AND 64 THEN
            words := NULL;
            RETURN;
        END IF;
        other := 0.1 * chain * n / size / (ln(CAST(n + 1 AS FLOAT8)) / ln(2.0)) * {MARGIN};
        IF widest > 16 THEN
            words := NULL;
        ELSIF NOT unknown THEN
            per_length := shares / size * {MARGIN};
        END IF;
    END $$"""
# Rank the rows `@cond` selects (with the price bounds) into the best `top` so far.
MERGE = f"""SELECT array_agg(m.i ORDER BY m.r, m.i), array_agg(m.r ORDER BY m.r, m.i)
                INTO ids, ranks FROM (
                    SELECT * FROM unnest(ids, ranks) AS kept(i, r)
                    UNION ALL
                    SELECT p.product_id, -ts_rank({WEIGHTS}, p.search_vector, ranked, 1)
                    FROM {TABLE} AS p
                    WHERE @cond AND NOT p.archived
                      AND (min_cents IS NULL OR p.price_cents >= min_cents)
                      AND (max_cents IS NULL OR p.price_cents <= max_cents)
                    ORDER BY 2, 1 LIMIT top) AS m"""
TAG = QUOTED.format(w="(w || ' ' || mark || ' ' || CAST(e AS TEXT))")
EDGE_ARRAY = "ARRAY[" + ", ".join(map(str, EDGES)) + "]"
# The tags of the covered words for the ranges in (lo, hi], as a tsquery.
TAG_QUERY = (
    f"SELECT CAST(string_agg({TAG}, ' | ') AS TSQUERY) FROM unnest(bounds.words) AS w,"
    f" unnest(edges) AS e WHERE e > lo AND e <= hi"
)
# Ranks name matches by length, one range at a time while it holds fewer than `top`; then
# straight to the length beyond which nothing can reach the last of them (that rank only
# grows as more are ranked); more than MOST_TAGS tags: every longer match at once.
BEST = f"""CREATE FUNCTION product_search_best(terms TEXT[], prefixes TEXT, top INTEGER,
        min_cents INTEGER, max_cents INTEGER) RETURNS TABLE (id INTEGER, rank REAL, tier INTEGER)
    LANGUAGE plpgsql STABLE PARALLEL SAFE ROWS 200 SET plan_cache_mode = force_generic_plan
    AS $$
    DECLARE
        ranked TSQUERY := to_tsquery('shop_search', prefixes);
        asked TSQUERY := product_search_query(terms);
        tags TSQUERY;
        bounds RECORD;
        ids INTEGER[];
        ranks REAL[];
        edges INTEGER[] := {EDGE_ARRAY};
        lo INTEGER := 0;
        hi INTEGER := {EDGES[0]};
        target FLOAT8;
        steps INTEGER := 0;
        rest FLOAT8;
        mark TEXT := 'A';
        other FLOAT8;
    BEGIN
        SELECT * INTO bounds FROM product_search_bounds(terms);
        other := bounds.other;
        IF NOT bounds.named THEN  -- no product has these words in its name: all match as B
            mark := 'B';
            other := 0;
        END IF;
        IF bounds.words IS NOT NULL AND (bounds.named OR bounds.per_length IS NOT NULL) THEN
            IF bounds.per_length IS NULL THEN
                hi := NULL;
            END IF;
            LOOP
                steps := steps + 1;
                IF hi IS NULL AND mark = 'A' THEN
                    {MERGE.replace("@cond", P_NAMES + " @@ asked AND p.word_count > lo")};
                    rest := 0;
                ELSIF hi IS NULL THEN
                    {MERGE.replace("@cond", "p.search_vector @@ asked AND p.word_count > lo")};
                    rest := 0;
                ELSE
                    {TAG_QUERY} INTO tags;
                    {MERGE.replace("@cond", P_TAGS + " @@ tags")};
                    rest := CASE WHEN hi = {EDGES[-1]} THEN 0
                            ELSE bounds.per_length / (ln(CAST(hi + 2 AS FLOAT8)) / ln(2.0)) END;
                END IF;
                IF cardinality(ids) = top AND -ranks[top] > GREATEST(other, rest) THEN
                    RETURN QUERY SELECT kept.i, kept.r, steps FROM unnest(ids, ranks) AS kept(i, r);
                    RETURN;
                END IF;
                EXIT WHEN hi IS NULL OR hi = {EDGES[-1]};
                lo := hi;
                -- per_length / log2(2 + L) < rank[top] from L = 2^(per_length / rank) - 1 on
                target := CASE WHEN cardinality(ids) = top AND -ranks[top] > other
                          THEN power(2.0, LEAST(bounds.per_length / -ranks[top], 30)) - 1
                          ELSE lo + 1 END;
                hi := (SELECT min(e) FROM unnest(edges) AS e WHERE e >= target);
                IF hi IS NULL OR cardinality(bounds.words) * (SELECT count(*) FROM unnest(edges)
                                  AS e WHERE e > lo AND e <= hi) > {MOST_TAGS} THEN
                    hi := NULL;
                END IF;
            END LOOP;
        END IF;
        RETURN QUERY SELECT p.product_id, -ts_rank({WEIGHTS}, p.search_vector, ranked, 1), 0
            FROM {TABLE} AS p
            WHERE p.search_vector @@ asked AND NOT p.archived
              AND (min_cents IS NULL OR p.price_cents >= min_cents)
              AND (max_cents IS NULL OR p.price_cents <= max_cents)
            ORDER BY 2, 1 LIMIT top;
    END $$"""
UPGRADE = [
    f"ALTER TABLE {TABLE} ADD COLUMN word_count INTEGER",
    f"UPDATE {TABLE} SET word_count = {WORD_COUNT.format(v='search_vector')}",
    f"ALTER TABLE {TABLE} ALTER COLUMN word_count SET NOT NULL",
    f"ALTER TABLE {WORDS} ADD COLUMN share REAL",
    f"WITH written AS (SELECT search_vector FROM {TABLE}) {LIST_SHARES}",
    ADDED,
    CHANGED,
    f"CREATE INDEX {INDEX} ON {TABLE} USING gin ({TAGS})"
    f" WITH (gin_pending_list_limit = {PENDING_KB})",
    f"CREATE INDEX {NAMES_INDEX} ON {TABLE} USING gin ({NAMES})"
    f" WITH (gin_pending_list_limit = {PENDING_KB})",
    BOUNDS,
    BEST,
]
DOWNGRADE = [
    "DROP FUNCTION product_search_best(TEXT[], TEXT, INTEGER, INTEGER, INTEGER)",
    "DROP FUNCTION product_search_bounds(TEXT[])",
    f"DROP INDEX {INDEX}",
    f"DROP INDEX {NAMES_INDEX}",
    f"ALTER TABLE {WORDS} DROP COLUMN share",  # its extra rows list words twice: harmless
    f"ALTER TABLE {TABLE} DROP COLUMN word_count",
]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for sql in UPGRADE:
            op.execute(sql)


def downgrade() -> None:
    """Back to 0004's trigger functions, as that revision made them."""
    if op.get_bind().dialect.name != "postgresql":
        return
    path = Path(__file__).with_name("0004_search_table.py")
    spec = spec_from_file_location("search_table_0004", path)
    assert spec is not None and spec.loader is not None
    previous = module_from_spec(spec)
    spec.loader.exec_module(previous)
    for sql in previous.UPGRADE:
        if sql.startswith(
            ("CREATE FUNCTION product_search_added", "CREATE FUNCTION product_search_changed")
        ):
            op.execute(sql.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    for sql in DOWNGRADE:
        op.execute(sql)
