"""PostgreSQL ranks name matches first (migration 0005_search_names, pg_search.py) and that
never changes an answer.

On a catalogue made to strain the shortcut (names with no word at all, long and short
descriptions, words repeated, words that are prefixes of others, so that a description-only
match can outrank a name match):
- `product_search_other_bound(terms)` is never below the ts_rank of a match without a name
  match, and is NULL where its reasoning does not hold (a term that parses into a phrase) or
  would bound nothing useful (a prefix covering more than 64 known words);
- searches and recommendations answer exactly what ranking every match answers, whether the
  shortcut was taken or not, and both happen here (read from the plan: whether the ranking of
  every match ran).
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from product_mcp.shop import Shop, make_engine
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
    "cable",  # in descriptions only
    "desk_lamp wireless",  # a phrase: no shortcut
    "w",  # covers many words, but fewer than 64
    "zzz",
]
RANK = "ts_rank('{0, 0, 0.1, 1.0}'::float4[], search_vector, to_tsquery('shop_search', :q), 1)"
NAMELESS = "NOT (ts_filter(search_vector, '{a}') @@ to_tsquery('shop_search', :q))"


class FullRanking(Shop):
    def _top(self, terms: list[str], limit: int | None, offset: int) -> int | None:
        return None


class TinyTop(Shop):
    def _top(self, terms: list[str], limit: int | None, offset: int) -> int | None:
        return None if not terms or limit is None else limit + offset


def _catalogue(n: int, seed: int = 12) -> list[tuple[str, int, str, int]]:
    rnd = random.Random(seed)
    words = NAME_WORDS + OTHER_WORDS
    filler = [f"filler{i}" for i in range(80)]
    rows = []
    for i in range(n):
        name = " ".join(rnd.choices(words, k=rnd.randint(1, 4)))
        if rnd.random() < 0.1:
            name = "***"  # no word at all: its length is its description's
        size = rnd.choice([0, 1, 2, 3, 8, 40, 300])
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
            yield [Shop(engine), FullRanking(engine), TinyTop(engine)]
        finally:
            engine.dispose()


def _bound(shop: Shop, terms: list[str]) -> float | None:
    with shop.engine.connect() as conn:
        sql = text("SELECT product_search_other_bound(CAST(:terms AS text[]))")
        return conn.scalar(sql, {"terms": terms})


def test_no_match_without_a_name_match_scores_above_the_bound(shops: list[Shop]) -> None:
    shop = shops[0]
    bounded = 0
    for query in QUERIES:
        terms = query.split()
        bound = _bound(shop, terms)
        if "_" in query or query == "zzz":
            assert bound is None, query  # a phrase; no known word
            continue
        assert bound is not None, query
        prefixes = " | ".join(f"'{t}':*" for t in terms)
        sql = f"SELECT max({RANK}) FROM product_search WHERE {NAMELESS}"
        sql += " AND search_vector @@ to_tsquery('shop_search', :q)"
        with shop.engine.connect() as conn:
            best = conn.scalar(text(sql), {"q": prefixes})
        if best is not None:
            assert best <= bound, (query, best, bound)
            bounded += 1
    assert bounded >= 5
    soup = [f"zq{i:02}" for i in range(70)]
    shop.add_products([("Soup", 100, " ".join(soup), 1)])
    assert _bound(shop, ["zq"]) is None  # 70 known words start with it
    assert _bound(shop, ["zq0"]) is not None


def _statement(shop: Shop, call: Callable[[], Any]) -> tuple[str, dict[str, Any]]:
    sent: list[tuple[str, dict[str, Any]]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        sent.append((statement, params))

    event.listen(shop.engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(shop.engine, "before_cursor_execute", capture)
    return sent[0]


def _ranked_every_match(shop: Shop, **search: Any) -> bool:
    """Whether the first statement of this search ran the ranking of every match (the scan of
    the whole-vector index), read from EXPLAIN ANALYZE."""
    statement, params = _statement(shop, lambda: shop.list_products(**search))
    with shop.engine.connect() as conn:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, params)
        doc = cursor.fetchone()[0]
    plan = (json.loads(doc) if isinstance(doc, str) else doc)[0]["Plan"]

    def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    scans = [n for n in nodes(plan) if n.get("Index Name") == "ix_product_search_vector"]
    assert scans
    return any(n["Actual Loops"] > 0 for n in scans)


def test_answers_match_full_ranking_with_and_without_the_shortcut(shops: list[Shop]) -> None:
    taken = {True: 0, False: 0}
    filters: list[dict[str, Any]] = [{}, {"max_price": 20.0}, {"in_stock": True}]
    for q, f, (limit, offset) in itertools.product(QUERIES, filters, [(10, 0), (3, 4)]):
        answers = [
            [p.id for p in s.list_products(q=q, limit=limit, offset=offset, **f)] for s in shops
        ]
        assert answers[0] == answers[1] == answers[2], (q, f, limit, offset)
        for s in (shops[0], shops[2]):
            if q != "zzz":
                taken[not _ranked_every_match(s, q=q, limit=limit, offset=offset, **f)] += 1
    for q, budget in itertools.product(QUERIES, [None, 10.0]):
        answers = [
            [(r.product.id, r.score) for r in s.recommend(q, budget=budget, limit=5)] for s in shops
        ]
        assert answers[0] == answers[1] == answers[2], (q, budget)
    assert taken[True] >= 10 and taken[False] >= 10, taken
