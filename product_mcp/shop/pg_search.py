"""PostgreSQL's full-text match and ranking, and the shortcut for a page of it.

Why a module of its own: the statements are PostgreSQL's alone (tsqueries, the search table
`product_search`, functions of migrations 0004 and 0005); catalog.py keeps the portable rest.

A page of the best `top` matches comes from `product_search_best` (0005_search_names): it
ranks the products whose names match a term, shortest first, and stops as soon as the
`top` best of those provably beat every other match (bounds computed per query from the
known words); otherwise it ranks every match, as `tsquery_match` does. Why: ranking every
match of a common word was most of a search's server time (14,031 matches, 12 ms, for
"wireless earbuds" in 100,000 generated products, where 969 decide the page). Without a
page (`all_hits`), every match is ranked here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    String,
    Text,
    bindparam,
    column,
    func,
    literal_column,
    null,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY

from product_mcp.shop.schema import SEARCH_CONFIG, product_search

TOP = bindparam("top", type_=Integer)
TERMS = bindparam("terms", type_=ARRAY(Text))  # the search terms, a text[]
WEIGHTS = literal_column("'{0, 0, 0.1, 1.0}'::float4[]")  # D, C, B (descriptions), A (names)


def tsquery_match() -> tuple[Any, Any]:
    """(match, rank) over product_search's GIN-indexed tsvectors, FTS5's meaning.

    Each term becomes a quoted prefix ('term':*) normalised by the same configuration as the
    vectors, ORed, as the SQLite query is; `search_terms` keeps only word characters, so no
    term can carry tsquery syntax. ts_rank weights names (A) 1.0 and descriptions (B) 0.1
    (bm25's 10 to 1) and divides by 1 + log(words in the product), as bm25 favours shorter
    products; ts_rank has no term rarity (IDF) and counts repeats differently (see the test).

    The GIN index is asked `product_search_query(terms)` instead (migration 0004): the same
    matches, with each term that covers at most 16 known words as those words, which the
    index reads straight from their lists; a prefix it has to gather into a bitmap first
    (about twice the work). ts_rank still gets the prefixes: its scale divides by the number
    of query items, so the scores are unchanged.

    Both tsqueries are scalar subqueries, computed once per statement: psycopg prepares a
    statement after 5 runs and PostgreSQL then plans it once for any parameter, where a bare
    to_tsquery(config, $1) is evaluated again for every matching row, twice (recheck and
    rank): 42 ms instead of 11 ms for the 14,000 matches of "wireless" in 100,000 products.
    """
    config = literal_column(f"'{SEARCH_CONFIG}'::regconfig")
    tsquery = select(func.to_tsquery(config, bindparam("tsquery", type_=String)))
    vector = product_search.c.search_vector
    rank = -func.ts_rank(WEIGHTS, vector, tsquery.scalar_subquery(), 1)
    return vector.op("@@")(_asked()), rank


def _asked() -> Any:
    """What the GIN indexes are asked: `product_search_query(terms)`, once per statement."""
    return select(func.product_search_query(TERMS)).scalar_subquery()


def ranked_hits(min_cents: Any, max_cents: Any) -> Any:
    """The `top` best matches (id, rank; lower ranks first) among the products not archived
    and within the price bounds given (parameters, or None), from `product_search_best`
    (migration 0005): the shortest name matches first, every match where that proves nothing.
    """
    best = func.product_search_best(
        TERMS,
        bindparam("tsquery", type_=String),
        TOP,
        null() if min_cents is None else min_cents,
        null() if max_cents is None else max_cents,
    ).table_valued(column("id", Integer), column("rank", Float), column("tier", Integer))
    return select(best.c.id, best.c.rank).subquery("hits")


def all_hits(narrow: list[Any]) -> Any:
    """Every match (id, rank) among the products `narrow` selects, unordered."""
    match, rank = tsquery_match()
    hits = select(product_search.c.product_id.label("id"), rank.label("rank"))
    return hits.where(match, *narrow).subquery("hits")
