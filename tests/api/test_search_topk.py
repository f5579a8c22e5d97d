"""Ranking only the best text matches before filters (Shop._top) never changes an answer, on
SQLite and on PostgreSQL: the same pages and recommendations as ranking every match."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.catalog import fill
from product_mcp.shop import Shop, catalog, make_engine
from tests.api.helpers import FullRanking
from tests.databases import fresh_database


class TinyTop(Shop):
    def _top(
        self, terms: list[str], limit: int | None, offset: int, in_stock: bool | None = None
    ) -> int | None:
        return None if not terms or limit is None else limit + offset  # forces the retry path


@pytest.fixture(scope="module")
def shops(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Shop]]:
    """The three rankings on one database of each kind (FTS5 and bm25; tsvector and ts_rank)."""
    tmp: Path = tmp_path_factory.mktemp("topk")
    with fresh_database(db_kind, tmp, "search_topk") as url:
        engine = make_engine(url, sqlite_synchronous="OFF")
        try:
            fill(Shop(engine), 3_000)
            yield [Shop(engine), FullRanking(engine), TinyTop(engine)]
        finally:
            engine.dispose()


QUERIES = ["wireless", "smart watch", "noise cancellation headphones", "4K", "zzz-none"]
FILTERS = [
    {},
    {"max_price": 50.0},
    {"min_price": 100.0, "max_price": 400.0},
    {"in_stock": True},
    {"in_stock": False},
]


def test_search_pages_match_full_ranking(shops: list[Shop]) -> None:
    for q, f, (limit, offset) in itertools.product(QUERIES, FILTERS, [(10, 0), (5, 20), (50, 3)]):
        answers = [
            [p.id for p in s.list_products(q=q, limit=limit, offset=offset, **f)] for s in shops
        ]
        assert answers[0] == answers[1] == answers[2], (q, f, limit, offset)


def test_recommendations_match_full_ranking(shops: list[Shop]) -> None:
    for prefs, budget, limit in itertools.product(
        ["lightweight laptop for travel", "gift for a runner", "waterproof speaker", "!!"],
        [None, 30.0, 500.0],
        [1, 5, 20],
    ):
        answers = [
            [(r.product.id, r.score) for r in s.recommend(prefs, budget=budget, limit=limit)]
            for s in shops
        ]
        assert answers[0] == answers[1] == answers[2], (prefs, budget, limit)


def test_statements_are_built_once_per_shape(shops: list[Shop]) -> None:
    """Other words, prices and pages reuse the statement of their shape (values are passed as
    parameters): building a select and its cache key per call was a fifth of a search's CPU.
    (A first page is a shape of its own: no OFFSET, see `list_products`.)"""
    shop = shops[0]
    assert len(shop.list_products(q="wireless", min_price=1.0, limit=10)) == 10
    assert len(shop.list_products(q="wireless", min_price=1.0, limit=10, offset=10)) == 10
    assert len(shop.recommend("wireless earbuds", budget=5000.0, limit=5)) == 5
    built = {key: id(stmt) for key, stmt in catalog._STATEMENTS.items()}
    assert len(shop.list_products(q="smart watch", min_price=2.0, limit=5)) == 5
    assert len(shop.list_products(q="smart watch", min_price=2.0, limit=5, offset=2)) == 5
    assert len(shop.recommend("smart watch", budget=4000.0, limit=3)) == 3
    assert {key: id(stmt) for key, stmt in catalog._STATEMENTS.items()} == built


def test_a_page_past_every_match_is_empty(shops: list[Shop]) -> None:
    """An absurd offset is an empty page, not an overflow (found by schemathesis: 8 × the
    offset went past PostgreSQL's int4 in the ranked-first bound, a 500)."""
    for f in FILTERS:
        for s in shops:
            assert s.list_products(q="wireless", limit=1, offset=999_999_999, **f) == []
