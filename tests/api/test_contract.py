"""api.py's REST contract and validation, in process: the app under TestClient on SQLite and
on PostgreSQL (`database`, tests/databases.py): an empty shop for each test that changes
state, one per module for the rest."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from tests.api.helpers import SEED_PRODUCTS, SEED_STOCK, buy, orders, stock
from tests.databases import ModuleDatabase
from tests.inproc import api_app, api_on_fresh_database


@pytest.fixture
def api(database: ModuleDatabase) -> Iterator[TestClient]:
    """A fresh app on an empty database for each test that changes state."""
    with api_app(database.fresh()) as client:
        yield client


def test_seed_contract_exact_json(api: TestClient, db_kind: str) -> None:
    assert api.get("/api/products").json() == SEED_PRODUCTS
    inv = api.get("/api/inventory").json()
    assert inv == [
        {"productId": p["id"], "quantity": SEED_STOCK[p["id"]], "product": p} for p in SEED_PRODUCTS
    ]
    assert orders(api) == []
    assert api.get("/healthz").json() == {"status": "ok", "database": db_kind}
    assert api.get("/docs").status_code == 200
    assert api.get("/redoc").status_code == 200
    spec = api.get("/openapi.json").json()
    assert {"/api/products", "/api/purchase", "/api/analytics/sales"} <= set(spec["paths"])


def test_purchase_flow(api: TestClient) -> None:
    r = buy(
        api,
        {
            "customerName": "  Alice  ",
            "items": [{"productId": 2, "quantity": 2}, {"productId": 3, "quantity": 3}],
        },
    )
    assert r.status_code == 200, r.text
    order = r.json()
    assert list(order) == ["customerName", "items", "id", "totalAmount", "orderDate"]
    assert order["customerName"] == "Alice"
    # the seed's fields, and next to them each product's name (session 17)
    assert order["items"] == [
        {"productId": 2, "quantity": 2, "name": "Pro Wireless Bluetooth Earbuds"},
        {"productId": 3, "quantity": 3, "name": "Portable Power Bank"},
    ]
    assert order["totalAmount"] == 2 * 899 + 3 * 299
    when = datetime.fromisoformat(order["orderDate"])
    assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - when).total_seconds()) < 60
    assert stock(api) == {1: 100, 2: 48, 3: 197, 4: 150}

    second = buy(api, {"customerName": "Bob", "items": [{"productId": 1, "quantity": 1}]}).json()
    assert [o["id"] for o in orders(api)] == [second["id"], order["id"]]  # newest first
    assert orders(api)[1] == order
    padded = {"customerName": f"  {'B' * 200}  ", "items": [{"productId": 1, "quantity": 1}]}
    assert buy(api, padded).json()["customerName"] == "B" * 200  # trimmed, then 1..200
    hidden = {"customerName": "\u200b Zoë\ufeff ", "items": [{"productId": 1, "quantity": 1}]}
    assert buy(api, hidden).json()["customerName"] == "Zoë"
    # and the orders are found by the name as it was given (review: the lookup only stripped)
    found = api.get("/api/orders", params={"customer": "zoë\u200b"}).json()
    assert [o["customerName"] for o in found] == ["Zoë"]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"customerName": "", "items": [{"productId": 1, "quantity": 1}]}, 400,
         "Invalid request: Missing customer name or items"),
        ({"customerName": "   ", "items": [{"productId": 1, "quantity": 1}]}, 400,
         "Invalid request: Missing customer name or items"),
        # invisible characters are no name either (found from outside: accepted)
        ({"customerName": "\u200b", "items": [{"productId": 1, "quantity": 1}]}, 400,
         "Invalid request: Missing customer name or items"),
        ({"customerName": " \ufeff\u2060 ", "items": [{"productId": 1, "quantity": 1}]}, 400,
         "Invalid request: Missing customer name or items"),
        ({"customerName": "\u200e\u3164\xad\u2800", "items": [{"productId": 1, "quantity": 1}]},
         400, "Invalid request: Missing customer name or items"),  # review: by category
        ({"customerName": "Al", "items": []}, 400,
         "Invalid request: Missing customer name or items"),
        ({"customerName": "Al", "items": [{"productId": 99, "quantity": 1}]}, 404,
         "Product ID 99 does not exist"),
        ({"customerName": "Al", "items": [{"productId": 2, "quantity": 51}]}, 400,
         "Insufficient stock for Pro Wireless Bluetooth Earbuds. Available: 50"),
        # The first item is fine, the second fails: the first must not be taken either.
        ({"customerName": "Al",
          "items": [{"productId": 1, "quantity": 5}, {"productId": 2, "quantity": 51}]}, 400,
         "Insufficient stock for Pro Wireless Bluetooth Earbuds. Available: 50"),
        ({"customerName": "Al",
          "items": [{"productId": 1, "quantity": 5}, {"productId": 77, "quantity": 1}]}, 404,
         "Product ID 77 does not exist"),
        # Repeats are merged before the stock check: 30 + 30 > 50.
        ({"customerName": "Al",
          "items": [{"productId": 2, "quantity": 30}, {"productId": 2, "quantity": 30}]}, 400,
         "Insufficient stock for Pro Wireless Bluetooth Earbuds. Available: 50"),
    ],
)  # fmt: skip
def test_seed_errors_change_nothing(api: TestClient, body: dict, status: int, detail: str) -> None:
    r = buy(api, body)
    assert r.status_code == status
    assert r.json() == {"detail": detail}
    assert stock(api) == SEED_STOCK
    assert orders(api) == []


BAD_BODIES = {
    "quantity zero": ({"customerName": "A", "items": [{"productId": 1, "quantity": 0}]},
                      ["body", "items", 0, "quantity"]),
    "quantity negative": ({"customerName": "A", "items": [{"productId": 1, "quantity": -5}]},
                          ["body", "items", 0, "quantity"]),
    "quantity too big": ({"customerName": "A", "items": [{"productId": 1, "quantity": 10001}]},
                         ["body", "items", 0, "quantity"]),
    "quantity string": ({"customerName": "A", "items": [{"productId": 1, "quantity": "5"}]},
                        ["body", "items", 0, "quantity"]),
    "quantity float": ({"customerName": "A", "items": [{"productId": 1, "quantity": 1.5}]},
                       ["body", "items", 0, "quantity"]),
    "quantity null": ({"customerName": "A", "items": [{"productId": 1, "quantity": None}]},
                      ["body", "items", 0, "quantity"]),
    "productId string": ({"customerName": "A", "items": [{"productId": "x", "quantity": 1}]},
                         ["body", "items", 0, "productId"]),
    "productId huge": ({"customerName": "A", "items": [{"productId": 2**40, "quantity": 1}]},
                       ["body", "items", 0, "productId"]),
    "merged quantity too big": ({"customerName": "A", "items": [
                                    {"productId": 1, "quantity": 6000}] * 2}, ["body", "items"]),
    "too many items": ({"customerName": "A",
                        "items": [{"productId": 1, "quantity": 1}] * 101}, ["body", "items"]),
    "name too long": ({"customerName": "x" * 201, "items": [{"productId": 1, "quantity": 1}]},
                      ["body", "customerName"]),
    "name with NUL": ({"customerName": "Al\x00ice", "items": [{"productId": 1, "quantity": 1}]},
                      ["body", "customerName"]),
    "name not a string": ({"customerName": 5, "items": [{"productId": 1, "quantity": 1}]},
                          ["body", "customerName"]),
    "missing name": ({"items": [{"productId": 1, "quantity": 1}]}, ["body", "customerName"]),
    "items not a list": ({"customerName": "A", "items": {"productId": 1}}, ["body", "items"]),
    "unknown field": ({"customerName": "A", "items": [{"productId": 1, "quantity": 1}],
                       "discount": 100}, ["body", "discount"]),
    "body not an object": ([1, 2, 3], ["body"]),
}  # fmt: skip


@pytest.fixture(scope="module")
def shared_api(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app for the tests that change nothing, on a database of its own."""
    tmp = tmp_path_factory.mktemp("shared")
    with api_on_fresh_database(db_kind, tmp, "contract_shared") as client:
        yield client


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_input_is_422_naming_the_field(shared_api: TestClient, case: str) -> None:
    body, loc = BAD_BODIES[case]
    before_stock, before_orders = stock(shared_api), orders(shared_api)
    r = buy(shared_api, body)
    assert r.status_code == 422, r.text
    assert any(err["loc"][: len(loc)] == loc for err in r.json()["detail"]), r.json()
    assert stock(shared_api) == before_stock
    assert orders(shared_api) == before_orders


def test_non_json_and_oversized_bodies(shared_api: TestClient) -> None:
    before = stock(shared_api)
    url = "/api/purchase"
    r = shared_api.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "json_invalid"
    big = {"customerName": "A" * 70_000, "items": [{"productId": 1, "quantity": 1}]}
    r = shared_api.post(url, json=big)
    assert r.status_code == 413
    assert "exceeds" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield b'{"customerName": "'
        for _ in range(80):
            yield b"A" * 1024
        yield b'", "items": [{"productId": 1, "quantity": 1}]}'

    r = shared_api.post(url, content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert stock(shared_api) == before


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("/api/products?limit=0", ["query", "limit"]),
        ("/api/products?min_price=-1", ["query", "min_price"]),
        ("/api/products?max_price=nan", ["query", "max_price"]),
        ("/api/products/99999999999", ["path", "product_id"]),
        ("/api/products/abc", ["path", "product_id"]),
        ("/api/orders?since=yesterday", ["query", "since"]),
        ("/api/orders?since=0001-01-01T00:00:00%2B05:00", ["query", "since"]),
        ("/api/analytics/sales?since=9999-12-31T23:59:59-05:00", ["query", "since"]),
        ("/api/orders?limit=100000", ["query", "limit"]),
        ("/api/recommendations", ["query", "preferences"]),
        ("/api/analytics/sales?group_by=planet", ["query", "group_by"]),
        ("/api/inventory?offset=-1", ["query", "offset"]),
    ],
)
def test_bad_queries_are_422(shared_api: TestClient, path: str, loc: list) -> None:
    r = shared_api.get(path)
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == loc
    if "%2B05" in path or "-05:00" in path:  # valid ISO-8601: said so (found from outside)
        assert r.json()["detail"][0]["msg"] == (
            "is out of range: in UTC it falls outside the years 1 to 9999"
        )


def test_idempotent_retry(api: TestClient) -> None:
    body = {"customerName": "Carol", "items": [{"productId": 4, "quantity": 2}]}
    first = buy(api, body, headers={"Idempotency-Key": "k-1"})
    again = buy(api, body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert stock(api)[4] == 148
    assert len(orders(api)) == 1

    other = {"customerName": "Carol", "items": [{"productId": 4, "quantity": 3}]}
    conflict = buy(api, other, headers={"Idempotency-Key": "k-1"})
    assert conflict.status_code == 409
    assert "Idempotency-Key" in conflict.json()["detail"]
    assert stock(api)[4] == 148

    # A failed request does not burn its key: after restocking would succeed, same key works.
    assert buy(api, other, headers={"Idempotency-Key": "k-2"}).status_code == 200
    assert len(orders(api)) == 2


def test_idempotent_retries_racing(api: TestClient) -> None:
    body = {"customerName": "Dan", "items": [{"productId": 1, "quantity": 1}]}

    async def go() -> list[httpx.Response]:
        # Concurrent requests into the same app: its sync routes race in the thread pool.
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url=str(api.base_url)) as c:
            return await asyncio.gather(
                *[
                    c.post("/api/purchase", json=body, headers={"Idempotency-Key": "same"})
                    for _ in range(20)
                ]
            )

    rs = asyncio.run(go())
    assert {r.status_code for r in rs} == {200}
    assert len({r.json()["id"] for r in rs}) == 1
    assert stock(api)[1] == 99


def test_idempotent_retries_racing_for_the_last_unit(api: TestClient) -> None:
    """Retries of one purchase of the last unit: every one gets the first order. On
    PostgreSQL a retry that missed the first's key (not yet committed) waited on the stock row,
    found it empty and answered "Insufficient stock" for a purchase that had succeeded."""
    assert api.post("/api/purchase", json={"customerName": "Eve", "items": [
        {"productId": 1, "quantity": stock(api)[1] - 1}]}).status_code == 200  # fmt: skip
    body = {"customerName": "Dan", "items": [{"productId": 1, "quantity": 1}]}

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url=str(api.base_url)) as c:
            headers = {"Idempotency-Key": "last-unit"}
            return await asyncio.gather(
                *[c.post("/api/purchase", json=body, headers=headers) for _ in range(20)]
            )

    rs = asyncio.run(go())
    assert {r.status_code for r in rs} == {200}, [r.text for r in rs if r.status_code != 200]
    assert len({r.json()["id"] for r in rs}) == 1
    assert stock(api)[1] == 0


def test_search_ranking_and_filters(api: TestClient) -> None:
    def names(query: str) -> list[str]:
        r = api.get(f"/api/products?{query}")
        assert r.status_code == 200, r.text
        return [p["name"] for p in r.json()]

    assert names("q=wireless earbuds")[0] == "Pro Wireless Bluetooth Earbuds"
    assert names("q=charging") == ["Portable Power Bank"]
    # A name hit outranks a description-only hit.
    assert names("q=watch monitoring")[0] == "Galaxy Smart Watch"
    assert names("q=display")[0] == "Huawei MateBook X Pro"
    assert names("q=zzzz-nothing") == []
    assert names("q=%22%27%3B--") == []  # quotes and SQL-ish noise are inert
    assert names("min_price=500&max_price=1300") == [
        "Galaxy Smart Watch",
        "Pro Wireless Bluetooth Earbuds",
    ]
    assert names("limit=2&offset=1") == ["Pro Wireless Bluetooth Earbuds", "Portable Power Bank"]
    assert buy(api, {"customerName": "E", "items": [{"productId": 2, "quantity": 50}]}).is_success
    assert "Pro Wireless Bluetooth Earbuds" not in names("in_stock=true")
    assert names("in_stock=false") == ["Pro Wireless Bluetooth Earbuds"]
    assert api.get("/api/products/3").json() == SEED_PRODUCTS[2]
    assert api.get("/api/inventory/2").json() == {
        "productId": 2,
        "quantity": 0,
        "product": SEED_PRODUCTS[1],
    }
    assert api.get("/api/inventory/42").status_code == 404
    r = api.get("/api/products/42")
    assert r.status_code == 404
    assert r.json() == {"detail": "Product ID 42 does not exist"}


def test_recommendations(api: TestClient) -> None:
    def rec(query: str) -> list[dict]:
        r = api.get(f"/api/recommendations?{query}")
        assert r.status_code == 200, r.text
        return r.json()

    top = rec("preferences=I want waterproof earbuds for running&budget=1000")
    assert top[0]["product"]["id"] == 2
    assert set(top[0]["matchedTerms"]) == {"waterproof", "earbuds"}
    assert top[0]["stock"] == 50
    assert "waterproof" in top[0]["reason"] and "50 in stock" in top[0]["reason"]
    assert all(r["product"]["price"] <= 1000 for r in top)
    # Over budget and sold out are never recommended.
    assert all(r["product"]["id"] != 2 for r in rec("preferences=waterproof earbuds&budget=500"))
    assert buy(api, {"customerName": "F", "items": [{"productId": 2, "quantity": 50}]}).is_success
    assert all(r["product"]["id"] != 2 for r in rec("preferences=earbuds"))
    # Nothing matches: still something useful in stock within budget, marked as such.
    fallback = rec("preferences=a gift&budget=400")
    assert [r["product"]["id"] for r in fallback] == [3]
    assert fallback[0]["matchedTerms"] == []


def test_orders_filters_and_sales_analytics(api: TestClient) -> None:
    placed = [
        ("Ann", [(1, 2), (3, 1)]),
        ("Ben", [(3, 4)]),
        ("ann", [(2, 1)]),
        ("Cy", [(4, 1), (1, 1)]),
    ]
    for name, items in placed:
        body = {"customerName": name, "items": [{"productId": p, "quantity": q} for p, q in items]}
        assert buy(api, body).status_code == 200

    def get(path: str) -> object:
        r = api.get(path)
        assert r.status_code == 200, r.text
        return r.json()

    assert [o["customerName"] for o in get("/api/orders?customer=ANN")] == ["ann", "Ann"]
    assert len(get("/api/orders?limit=2")) == 2
    today = datetime.now(UTC).date().isoformat()
    assert len(get(f"/api/orders?since={today}&until={today}")) == 4
    assert get("/api/orders?since=2999-01-01") == []
    assert get("/api/orders?until=2000-01-01T00:00:00Z") == []
    # the calendar's last day is a date like any other (it was refused as not a date)
    assert len(get("/api/orders?until=9999-12-31")) == len(get("/api/orders"))
    assert get("/api/analytics/sales?until=9999-12-31")["totals"]["orders"] >= 4

    by_product = get("/api/analytics/sales?group_by=product")
    expected = {
        "1": (3, 3 * 1299.0, 2),
        "2": (1, 899.0, 1),
        "3": (5, 5 * 299.0, 2),
        "4": (1, 1599.0, 1),
    }
    got = {g["key"]: (g["units"], g["revenue"], g["orders"]) for g in by_product["groups"]}
    assert got == expected
    revenues = [g["revenue"] for g in by_product["groups"]]
    assert revenues == sorted(revenues, reverse=True)
    assert by_product["groups"][0]["label"] == "Galaxy Smart Watch"
    total = 3 * 1299 + 899 + 5 * 299 + 1599
    assert by_product["totals"] == {"units": 10, "revenue": float(total), "orders": 4}
    assert total == sum(o["totalAmount"] for o in get("/api/orders"))

    by_customer = get("/api/analytics/sales?group_by=customer&top=1")
    assert [g["key"] for g in by_customer["groups"]] == ["Cy"]  # 1599 + 1299 = 2898 is the top
    assert by_customer["totals"]["orders"] == 4
    by_day = get("/api/analytics/sales?group_by=day")
    assert by_day["groups"] == [
        {"key": today, "label": today, "units": 10, "revenue": float(total), "orders": 4}
    ]
    empty = get("/api/analytics/sales?since=2999-01-01")
    assert empty["groups"] == [] and empty["totals"] == {"units": 0, "revenue": 0.0, "orders": 0}


def test_idempotency_key_header_bounds(shared_api: TestClient) -> None:
    body = {"customerName": "G", "items": [{"productId": 1, "quantity": 1}]}
    r = buy(shared_api, body, headers={"Idempotency-Key": "k" * 300})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["header", "idempotency-key"]


def test_openapi_documents_new_routes(shared_api: TestClient) -> None:
    spec = shared_api.get("/openapi.json").json()
    params = {p["name"] for p in spec["paths"]["/api/products"]["get"]["parameters"]}
    assert params == {"q", "min_price", "max_price", "in_stock", "limit", "offset"}
    assert json.dumps(spec)  # serialisable, no surprises


def test_health_check_keeps_the_database_address_to_the_log(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Found from outside: with PostgreSQL refusing connections, /healthz (no token needed)
    answered the driver's own words, with the database's host, port and name."""
    from sqlalchemy.exc import OperationalError

    from product_mcp.shop import Shop

    said = 'connection to server at "db.internal" (10.0.0.5), port 5432 failed: refused\nDETAIL: x'

    def refused(self: Shop) -> None:
        raise OperationalError("SELECT 1", {}, Exception(said))

    with api_app(tmp_path / "shop.db") as api:
        assert api.get("/healthz").status_code == 200
        monkeypatch.setattr(Shop, "ping", refused)
        r = api.get("/healthz")
        assert api.get("/healthz").status_code == 503  # asked again: logged once
        monkeypatch.undo()
        assert api.get("/healthz").status_code == 200
    assert r.status_code == 503
    assert r.json() == {"detail": "database unavailable (OperationalError): api.py's log says why"}
    logged = [m for m in caplog.messages if "health check" in m]
    assert len(logged) == 2, logged
    assert "db.internal" in logged[0] and "\n" not in logged[0]
    assert logged[1] == "health check: the database answers again"


def test_an_idempotency_key_is_the_header_value_without_spaces(
    shared_api: TestClient,
) -> None:
    """RFC 9110: whitespace around a header's value is not part of it. `zz` and `zz ` were two
    keys, so a retry through anything that trims headers bought twice (found from outside)."""
    key = uuid.uuid4().hex
    body = {"customerName": f"Trim {key[:6]}", "items": [{"productId": 1, "quantity": 1}]}
    first = buy(shared_api, body, headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    for variant in (f"{key} ", f"{key}\t", f" {key}", f"\t{key}  "):
        again = buy(shared_api, body, headers={"Idempotency-Key": variant})
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"], variant
    blank = buy(shared_api, body, headers={"Idempotency-Key": "   "})
    assert blank.status_code == 422, blank.text
    assert blank.json()["detail"][0]["loc"] == ["header", "idempotency-key"]
