"""The largest purchase the API accepts is bought, listed and counted to the cent, on SQLite and
on PostgreSQL (`db_kind`, tests/databases.py).

Found by the schemathesis test's stateful phase on PostgreSQL: a purchase worth more than
$21,474,836.47 (2^31 cents) ended in a 500, "integer out of range", since the order's total was
a 32-bit column there and the purchase statement multiplied in 32 bits (migration
0006_order_totals); the sales report's revenue had the same limit per line.
"""

from __future__ import annotations

from pathlib import Path

from models import MAX_PRICE, MAX_QUANTITY
from product_mcp.shop import Shop, make_engine
from tests.api.helpers import buy, orders
from tests.databases import fresh_database
from tests.inproc import api_app

WATCH = 1299.0  # product 1's seed price


def test_an_order_past_32_bits_of_cents_is_bought_listed_and_counted(
    db_kind: str, tmp_path: Path
) -> None:
    with fresh_database(db_kind, tmp_path, "large") as url:
        shop = Shop(make_engine(url))
        shop.init()
        # (price in cents here)
        shop.add_products([("Superyacht", MAX_PRICE * 100, "the dearest thing", MAX_QUANTITY)])
        shop.engine.dispose()
        items = [{"productId": 5, "quantity": MAX_QUANTITY}, {"productId": 1, "quantity": 1}]
        body = {"customerName": "Big Spender", "items": items}
        line = MAX_PRICE * MAX_QUANTITY  # 10^11 dollars: 10^13 cents
        with api_app(url) as api:
            quote = api.post("/api/purchase/quote", json=body)
            assert quote.status_code == 200 and quote.json()["totalAmount"] == line + WATCH
            r = buy(api, body)
            assert r.status_code == 200, r.text
            assert r.json()["totalAmount"] == line + WATCH
            assert [o["totalAmount"] for o in orders(api)] == [line + WATCH]
            report = api.get("/api/analytics/sales", params={"groupBy": "product"}).json()
            assert [(g["key"], g["revenue"]) for g in report["groups"]] == [
                ("5", line),
                ("1", WATCH),
            ]
            assert report["totals"]["revenue"] == line + WATCH
