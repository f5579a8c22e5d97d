"""PostgreSQL ranks the shortest name matches first (migration 0005_search_names,
`product_search_best`) and that never changes an answer.

On a catalogue made to strain the shortcut (names with no word at all, descriptions of 0 to
300 words, words repeated, words that are prefixes of others, so that a description-only
match can outrank a name match and a long product a short one):
- `product_search_bounds(terms)` is never below what it bounds: `other` above the ts_rank of
  every match without a name match, `per_length / log2(1 + length)` above the ts_rank of
  every match; NULL where its reasoning does not hold (a term that parses into a phrase) or
  would bound nothing useful (a term covering more than 64 known words);
- searches and recommendations answer exactly what ranking every match answers, and the
  function answers both ways here: from the name matches of a few lengths, from all of
  them, and from every match (its `tier` column says which).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from product_mcp.shop import Shop, make_engine
from tests.api.helpers import FullRanking
from tests.databases import fresh_database

NAME_WORDS = "wire wireless wirelessly earbud earbuds charger charging smart smartphone".split()
OTHER_WORDS = "lamp desk pro mini watch great value with case cable".split()
QUERIES = [
    "wireless",
    "wire",
    "wireless earbuds",
    "wire wireless",  # one is a prefix of the other: a word counts for both
    "charg smart",
    "smart watch lamp",
    "earbud case cable value",
    "lamp",
    "cable",
    "filler1 filler2",  # words found in descriptions only: ranked by length as well
    "desk_lamp wireless",  # a phrase: no shortcut
    "w",  # covers many words, but fewer than 64
    "zzz",
]
RANK = "ts_rank('{0, 0, 0.1, 1.0}'::float4[], search_vector, to_tsquery('shop_search', :q), 1)"
MATCH = "search_vector @@ to_tsquery('shop_search', :q)"
NAMELESS = "NOT (ts_filter(search_vector, '{a}') @@ to_tsquery('shop_search', :q))"


class BigTop(Shop):
    def _top(
        self, terms: list[str], limit: int | None, offset: int, in_stock: bool | None = None
    ) -> int | None:
        return None if not terms or limit is None else 200 + limit + offset


def _catalogue(n: int, seed: int = 12) -> list[tuple[str, int, str, int]]:
    rnd = random.Random(seed)
    words = NAME_WORDS + OTHER_WORDS
    filler = [f"filler{i}" for i in range(80)]
    rows = []
    for i in range(n):
        name = " ".join(rnd.choices(words, k=rnd.randint(1, 4)))
        if rnd.random() < 0.1:
            name = "***"  # no word at all: its length is its description's
        size = rnd.choice([0, 1, 2, 3, 8, 12, 40, 300])
        description = " ".join(rnd.choices(words + filler, k=size))
        rows.append((name, 100 * (1 + i % 50), description, i % 7))
    return rows


@pytest.fixture(scope="module")
def shops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Shop]]:
    tmp: Path = tmp_path_factory.mktemp("search-names")
    with fresh_database("postgresql", tmp, "search_names") as url:
        engine = make_engine(url)
        try:
            Shop(engine).init()
            Shop(engine).add_products(_catalogue(1_500))
            yield [Shop(engine), FullRanking(engine), BigTop(engine)]
        finally:
            engine.dispose()


def _bounds(shop: Shop, terms: list[str]) -> Any:
    with shop.engine.connect() as conn:
        sql = text("SELECT * FROM product_search_bounds(CAST(:terms AS text[]))")
        return conn.execute(sql, {"terms": terms}).one()


def test_no_match_scores_above_the_bounds(shops: list[Shop]) -> None:
    shop = shops[0]
    bounded = 0
    for query in QUERIES:
        terms = query.split()
        bounds = _bounds(shop, terms)
        if "_" in query or query == "zzz":
            assert bounds.other is None and bounds.words is None, query  # a phrase; no word
            continue
        assert bounds.other is not None and bounds.per_length is not None, query
        prefixes = {"q": " | ".join(f"'{t}':*" for t in terms)}
        nameless = f"SELECT max({RANK}) FROM product_search WHERE {NAMELESS} AND {MATCH}"
        scaled = f"SELECT max({RANK} * log(2.0, word_count + 1)) FROM product_search WHERE {MATCH}"
        with shop.engine.connect() as conn:
            best_nameless = conn.scalar(text(nameless), prefixes)
            best_scaled = conn.scalar(text(scaled), prefixes)
        assert best_scaled <= bounds.per_length, (query, best_scaled, bounds.per_length)
        if best_nameless is not None:
            assert best_nameless <= bounds.other, (query, best_nameless, bounds.other)
            bounded += 1
    assert bounded >= 5
    soup = [f"zq{i:02}" for i in range(70)]
    shop.add_products([("Soup", 100, " ".join(soup), 1)])
    assert _bounds(shop, ["zq"]).other is None  # 70 known words start with it
    assert _bounds(shop, ["zq0"]).other is not None
    assert _bounds(shop, ["zq"]).words is None
    assert _bounds(shop, ["zq0"]).words is not None  # 10 words
    assert _bounds(shop, ["zq", "lamp"]).words is None  # one term covers more than 16


def _statement(shop: Shop, call: Callable[[], Any]) -> dict[str, Any]:
    """The parameters of the first statement `call` sends."""
    sent: list[dict[str, Any]] = []

    def capture(_c: Any, _cur: Any, _statement: str, params: Any, *_: Any) -> None:
        sent.append(params)

    event.listen(shop.engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(shop.engine, "before_cursor_execute", capture)
    return sent[0]


def _tier(shop: Shop, **search: Any) -> int:
    """Which way `product_search_best` answered this search: 0 from every match, else after
    how many steps through the name matches."""
    params = _statement(shop, lambda: shop.list_products(**search))
    sql = "SELECT DISTINCT tier FROM product_search_best(CAST(:terms AS text[]), :tsquery, :top,"
    sql += " CAST(:min_cents AS integer), CAST(:max_cents AS integer))"
    bounds = {"min_cents": params.get("min_cents"), "max_cents": params.get("max_cents")}
    with shop.engine.connect() as conn:
        tiers = conn.scalars(text(sql), {**params, **bounds}).all()
    assert len(tiers) <= 1, tiers
    return tiers[0] if tiers else 0


def test_answers_match_full_ranking_whichever_way_they_are_found(shops: list[Shop]) -> None:
    tiers: dict[str, int] = {"every match": 0, "first lengths": 0, "more lengths": 0}
    filters: list[dict[str, Any]] = [{}, {"max_price": 20.0}, {"in_stock": True}]
    for q, f, (limit, offset) in itertools.product(QUERIES, filters, [(10, 0), (3, 4)]):
        answers = [
            [p.id for p in s.list_products(q=q, limit=limit, offset=offset, **f)] for s in shops
        ]
        assert answers[0] == answers[1] == answers[2], (q, f, limit, offset)
        for s in (shops[0], shops[2]):
            if q != "zzz":
                tier = _tier(s, q=q, limit=limit, offset=offset, **f)
                tiers[
                    "every match" if tier == 0 else "first lengths" if tier <= 2 else "more lengths"
                ] += 1
    for q, budget in itertools.product(QUERIES, [None, 10.0]):
        answers = [
            [(r.product.id, r.score) for r in s.recommend(q, budget=budget, limit=5)] for s in shops
        ]
        assert answers[0] == answers[1] == answers[2], (q, budget)
    assert min(tiers.values()) >= 3, tiers


def test_names_with_quotes_and_backslashes_are_tagged_and_found(shops: list[Shop]) -> None:
    """The tags index writes each word into tsquery text: a word holding a quote or a
    backslash must neither break a write nor go missing from a search."""
    hostile = ["O'Brien's lamp", "back\\slash lamp", "'quoted' it''s lamp", "end' lamp '"]
    shops[0].add_products([(name, 500, f"{name} cable", 3) for name in hostile])
    for q in ["brien", "back", "slash", "quoted", "lamp", "end"]:
        answers = [[p.id for p in s.list_products(q=q, limit=10)] for s in shops]
        assert answers[0] == answers[1] == answers[2], q
        assert answers[0], q
    found = {p.name for p in shops[0].list_products(q="brien back quoted end", limit=50)}
    assert set(hostile) <= found, found
