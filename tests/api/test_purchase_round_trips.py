"""PostgreSQL purchases in one round trip (product_mcp/shop/pg_purchase.py): what makes 32
buyers of one product faster, with every guarantee of the transaction it replaces (issue #12);
and pooled connections (schema.make_engine, 8 kept) still replaced when the server closed them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, text

from models import PurchaseRequest
from product_mcp.core.errors import ShopError
from product_mcp.shop import Shop, make_engine, schema
from tests.databases import _conninfo, fresh_postgres


@pytest.fixture
def shop() -> Iterator[Shop]:
    with fresh_postgres("round_trips") as url:
        engine = make_engine(url)
        shop = Shop(engine)
        shop.init()
        try:
            yield shop
        finally:
            engine.dispose()


def _statements(engine: Engine) -> list[str]:
    """Every statement the engine sends from now on (SQLAlchemy's, not the pool's pings)."""
    sent: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    return sent


def _request(*items: tuple[int, int], name: str = "Ann") -> PurchaseRequest:
    return PurchaseRequest(
        customerName=name, items=[{"productId": p, "quantity": q} for p, q in items]
    )


def _stock(shop: Shop) -> dict[int, int]:
    with shop.engine.connect() as conn:
        return dict(conn.execute(text("SELECT product_id, quantity FROM inventory")).all())


def _count(shop: Shop, table: str) -> int:
    with shop.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_a_purchase_is_one_statement(shop: Shop) -> None:
    """Before: 11 statements, the stock row locked for seven round trips."""
    sent = _statements(shop.engine)
    order = shop.purchase(_request((2, 2), (1, 1)), "key-1")
    assert len(sent) == 1, sent
    assert order.totalAmount == 2 * 899 + 1299 and [i.productId for i in order.items] == [2, 1]
    assert _stock(shop)[1] == 99 and _stock(shop)[2] == 48
    with shop.engine.connect() as conn:
        lines = conn.execute(text("SELECT product_id, line FROM order_items ORDER BY line")).all()
        feed = conn.execute(text("SELECT product_id, quantity FROM product_changes ORDER BY seq"))
        assert [tuple(r) for r in lines] == [(2, 0), (1, 1)]
        assert [tuple(r) for r in feed] == [(1, 99), (2, 48)]  # in product id order, as before
    assert shop.purchase(_request((2, 2), (1, 1)), "key-1") == order  # replayed
    assert _stock(shop)[2] == 48 and _count(shop, "orders") == 1


def test_short_of_stock_is_answered_by_the_statement_and_writes_nothing(shop: Shop) -> None:
    sent = _statements(shop.engine)
    with pytest.raises(ShopError, match=r"^Insufficient stock for .*Earbuds\. Available: 50$"):
        shop.purchase(_request((1, 5), (2, 51)))  # the first item fits, the second does not
    assert len(sent) == 1, sent
    with pytest.raises(ShopError, match="Available: 50"):
        shop.purchase(_request((2, 51)), "key-2")  # with a key: also asks whether it was used
    assert len(sent) == 3, sent
    assert _stock(shop) == {1: 100, 2: 50, 3: 200, 4: 150}
    assert _count(shop, "orders") == _count(shop, "product_changes") == 0


def test_purchases_of_the_same_products_in_opposite_orders(shop: Shop) -> None:
    """Rows are locked in product id order whatever the order of the items, so two such
    purchases never deadlock (PostgreSQL would abort one after deadlock_timeout: a 503); when
    stock runs out, each purchase is still all or nothing."""
    results: list[Any] = []

    def buyer(items: tuple[tuple[int, int], ...]) -> None:
        for _ in range(40):
            try:
                results.append(shop.purchase(_request(*items)))
            except ShopError as e:
                results.append(str(e))

    threads = [
        threading.Thread(target=buyer, args=(items,))
        for items in [((2, 1), (1, 1)), ((1, 1), (2, 1))] * 3
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    bought = [r for r in results if not isinstance(r, str)]
    refused = [r for r in results if isinstance(r, str)]
    assert len(bought) == 50 and len(refused) == 190, refused[:3]  # earbuds: 50 in stock
    assert all("Insufficient stock for Pro Wireless Bluetooth Earbuds" in r for r in refused)
    assert _stock(shop)[1] == 50 and _stock(shop)[2] == 0  # never one item without the other


def test_a_connection_the_server_closed_is_replaced_before_use(shop: Shop) -> None:
    with shop.engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with psycopg.connect(_conninfo("postgres"), autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone() == (True,)
    with shop.engine.connect() as conn:  # the same pooled connection, found closed
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar_one() != pid
    assert shop.purchase(_request((1, 1))).id == 1  # and a purchase meets no error either


def test_the_pool_keeps_its_connections_under_many_buyers(shop: Shop) -> None:
    """16 threads buying at once open PG_POOL connections and keep them. Before: 5 kept and
    10 more opened on demand, closed again as they came back (a new backend each time)."""
    opened: list[object] = []
    event.listen(shop.engine, "connect", lambda *a: opened.append(a[0]))
    shop.engine.dispose()  # count from an empty pool

    def buyer() -> None:
        for _ in range(10):
            shop.purchase(_request((3, 1)))

    threads = [threading.Thread(target=buyer) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert _stock(shop)[3] == 200 - 160
    assert 1 <= len(opened) <= schema.PG_POOL == 8, len(opened)
