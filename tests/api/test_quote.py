"""Issue 14: POST /api/purchase/quote prices a purchase body and changes nothing; a body a
purchase refuses gets the very same answer from the quote. In process, on SQLite and on
PostgreSQL (`database`, tests/databases.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from tests.api.helpers import SEED_STOCK, buy, orders, stock
from tests.api.test_contract import BAD_BODIES
from tests.inproc import api_on_fresh_database

QUOTE = "/api/purchase/quote"


@pytest.fixture(scope="module")
def api(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with api_on_fresh_database(db_kind, tmp_path_factory.mktemp("quote"), "quote") as client:
        yield client


def test_quote_prices_the_body_exactly(api: TestClient) -> None:
    body = {
        "customerName": " Alice ",
        "items": [
            {"productId": 2, "quantity": 2},
            {"productId": 3, "quantity": 1},
            {"productId": 2, "quantity": 1},  # repeats are merged, as in a purchase
        ],
    }
    r = api.post(QUOTE, json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "items": [
            {"productId": 2, "name": "Pro Wireless Bluetooth Earbuds", "unitPrice": 899.0,
             "quantity": 3, "lineTotal": 2697.0, "available": 50},
            {"productId": 3, "name": "Portable Power Bank", "unitPrice": 299.0,
             "quantity": 1, "lineTotal": 299.0, "available": 200},
        ],
        "totalAmount": 2996.0,
        "inStock": True,
    }  # fmt: skip
    assert stock(api) == SEED_STOCK
    assert orders(api) == []
    # the purchase that follows costs what the quote said
    order = buy(api, body, headers={"Idempotency-Key": "quote-then-buy"}).json()
    assert order["totalAmount"] == r.json()["totalAmount"]
    after = api.post(QUOTE, json=body).json()
    assert [i["available"] for i in after["items"]] == [47, 199]


def test_short_stock_is_reported_not_refused(api: TestClient) -> None:
    before = stock(api)
    items = [{"productId": 1, "quantity": 5}, {"productId": 2, "quantity": before[2] + 1}]
    body = {"customerName": "Al", "items": items}
    r = api.post(QUOTE, json=body)
    assert r.status_code == 200, r.text
    quote = r.json()
    assert quote["inStock"] is False
    assert [i["available"] for i in quote["items"]] == [before[1], before[2]]
    assert quote["totalAmount"] == 5 * 1299 + (before[2] + 1) * 899
    assert buy(api, body).status_code == 400  # the purchase itself is refused
    assert stock(api) == before


@pytest.mark.parametrize(
    "body",
    [
        {"customerName": "", "items": [{"productId": 1, "quantity": 1}]},
        {"customerName": "   ", "items": [{"productId": 1, "quantity": 1}]},
        {"customerName": "Al", "items": []},
        {"customerName": "Al", "items": [{"productId": 99, "quantity": 1}]},
        {"customerName": "Al", "items": [{"productId": 1, "quantity": 1},
                                         {"productId": 77, "quantity": 1}]},
    ]
    + [body for body, _ in BAD_BODIES.values()],
)  # fmt: skip
def test_refused_exactly_like_a_purchase_and_nothing_changes(api: TestClient, body: object) -> None:
    before_stock, before_orders = stock(api), orders(api)
    quoted, bought = api.post(QUOTE, json=body), buy(api, body)
    assert quoted.status_code == bought.status_code
    assert quoted.status_code in (400, 404, 422)
    assert quoted.json() == bought.json()
    assert stock(api) == before_stock
    assert orders(api) == before_orders


def test_unstorable_name_is_refused_like_a_purchase(api: TestClient) -> None:
    raw = b'{"customerName": "\\ud800", "items": [{"productId": 1, "quantity": 1}]}'
    headers = {"content-type": "application/json"}
    quoted = api.post(QUOTE, content=raw, headers=headers)
    bought = api.post("/api/purchase", content=raw, headers=headers)
    assert (quoted.status_code, quoted.json()) == (bought.status_code, bought.json())
    assert quoted.status_code == 400


def test_oversized_quote_is_413(api: TestClient) -> None:
    big = {"customerName": "A" * 70_000, "items": [{"productId": 1, "quantity": 1}]}
    r = api.post(QUOTE, json=big)
    assert r.status_code == 413
    assert api.get("/openapi.json").json()["paths"][QUOTE]["post"]["responses"]["200"]
