"""PostgreSQL search and recommendations stay cheap under the plans the server really uses,
and cost one round trip each.

psycopg prepares a statement after its 5th run, and PostgreSQL then plans it once for any
parameters (a generic plan). In such a plan a bare `to_tsquery(config, $1)` is computed again
for every matching row, twice (recheck and rank): 42 ms instead of 11 ms for the 14,000
matches of "wireless" in 100,000 products (issue #12). So this module takes the statements
`list_products` and `recommend` send, prepares them with `plan_cache_mode =
force_generic_plan`, and reads the plan:
- a page (searches and recommendations with a limit) is ranked by `product_search_best`
  (migration 0005: the shortest name matches first), called once, and only its page is
  joined with products and inventory; the function holds its tsqueries in variables, so
  its own generic plans compute them once;
- every match (a search without a limit): the tsqueries (the prefixes ts_rank gets, the
  words `product_search_query` asks the GIN index for) are computed once (InitPlans).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from bench.catalog import fill
from product_mcp.shop import Shop, make_engine
from tests.databases import fresh_database


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with fresh_database("postgresql", tmp_path_factory.mktemp("plans"), "search_plans") as url:
        engine = make_engine(url)
        try:
            fill(Shop(engine), 300)
            yield Shop(engine)
        finally:
            engine.dispose()


def _sent(shop: Shop, call: Callable[[], Any]) -> tuple[str, dict[str, Any]]:
    """The one statement `call` sends (psycopg's %(name)s form) and its parameters."""
    sent: list[tuple[str, dict[str, Any]]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        sent.append((statement, params))

    event.listen(shop.engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(shop.engine, "before_cursor_execute", capture)
    assert len(sent) == 1, [s for s, _ in sent]
    return sent[0]


def _generic_plan(shop: Shop, statement: str, params: dict[str, Any]) -> dict[str, Any]:
    """EXPLAIN of `statement` prepared and planned once for any parameters."""
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    numbered = re.sub(r"%\((\w+)\)s", number, statement)

    def literal(value: Any) -> str:
        if isinstance(value, int):
            return str(value)
        if isinstance(value, list):  # the search terms, a text[]
            return "ARRAY[" + ", ".join(literal(v) for v in value) + "]::text[]"
        return "'" + value.replace("'", "''") + "'"

    values = ", ".join(literal(params[n]) for n in names)
    with shop.engine.connect() as conn:
        conn.execute(text("SET plan_cache_mode = force_generic_plan"))
        conn.exec_driver_sql(f"PREPARE s AS {numbered}")
        plan = conn.exec_driver_sql(f"EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE s({values})")
        doc = plan.scalar()
        conn.exec_driver_sql("DEALLOCATE s")
        conn.rollback()
    return (json.loads(doc) if isinstance(doc, str) else doc)[0]["Plan"]


def _nodes(node: dict[str, Any], under: tuple[str, ...] = ()) -> Iterator[tuple[dict, tuple]]:
    """Every plan node with the node types above it (InitPlans marked as such)."""
    yield node, under
    for child in node.get("Plans", []):
        kind = "InitPlan" if child.get("Parent Relationship") == "InitPlan" else node["Node Type"]
        yield from _nodes(child, (*under, kind))


def _own_text(node: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in node.items() if k != "Plans"})


CALLS = {
    "search": lambda s: s.list_products(q="wireless earbuds", limit=10),
    "search, filtered": lambda s: s.list_products(q="smart", max_price=300.0, limit=5, offset=5),
    "recommend": lambda s: s.recommend("lightweight laptop for travel", budget=1500.0),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_a_page_is_ranked_once_by_product_search_best_before_joining(shop: Shop, name: str) -> None:
    statement, params = _sent(shop, lambda: CALLS[name](shop))
    nodes = list(_nodes(_generic_plan(shop, statement, params)))
    ranking = [(n, up) for n, up in nodes if n.get("Function Name") == "product_search_best"]
    assert len(ranking) == 1, ranking
    assert not [n for n, _ in nodes if "ts_rank" in _own_text(n)]  # nothing else ranks


def test_generic_plan_of_every_match_computes_the_tsquery_once(shop: Shop) -> None:
    statement, params = _sent(shop, lambda: shop.list_products(q="wireless earbuds"))
    assert "to_tsquery" in statement and "tsquery" in params
    nodes = list(_nodes(_generic_plan(shop, statement, params)))
    for function in ("to_tsquery", "product_search_query"):
        computing = [(n["Node Type"], up) for n, up in nodes if function in _own_text(n)]
        assert computing and all("InitPlan" in up for _, up in computing), computing
    read = {n["Relation Name"] for n, _ in nodes if "Relation Name" in n}
    assert read == {"product_search", "products", "inventory"}, read


def test_reads_are_one_round_trip(shop: Shop) -> None:
    """Searches, recommendations and look-ups run in autocommit: no BEGIN and ROLLBACK
    round trips around their one statement."""
    autocommit: list[bool] = []

    def capture(conn: Any, *_: Any) -> None:
        autocommit.append(conn.connection.dbapi_connection.autocommit)

    event.listen(shop.engine, "before_cursor_execute", capture)
    try:
        shop.list_products(q="wireless", limit=3)
        shop.recommend("gift for a runner", budget=50.0)
        shop.get_product(1)
        shop.list_inventory(limit=2)
    finally:
        event.remove(shop.engine, "before_cursor_execute", capture)
    assert autocommit and all(autocommit), autocommit
