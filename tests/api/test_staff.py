"""Issue 13, the owner's catalogue: staff routes behind ADMIN_TOKEN, in process on SQLite and on
PostgreSQL (`database`, tests/databases.py): adding, editing, archiving and restocking
products, each refusal a sentence naming the field or the reason, and stock that never goes
below zero when restocks and purchases race."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from starlette.testclient import TestClient

from tests.api.helpers import buy, orders, stock
from tests.databases import ModuleDatabase
from tests.inproc import api_app

TOKEN = "staff-token-for-tests"
STAFF = {"Authorization": f"Bearer {TOKEN}"}
LAMP = {"name": "Brass Desk Lamp", "description": "Warm light, heavy base", "price": 45.5,
        "stock": 6, "sku": "LAMP-1"}  # fmt: skip


@pytest.fixture
def api(database: ModuleDatabase) -> Iterator[TestClient]:
    with api_app(database.fresh(), admin_token=TOKEN) as client:
        yield client


def test_staff_routes_need_the_token(database: ModuleDatabase) -> None:
    with api_app(database.fresh(), admin_token="") as off:
        r = off.post("/api/products", json=LAMP, headers=STAFF)
        assert r.status_code == 503
        assert r.json()["detail"].startswith("Staff routes are off: set ADMIN_TOKEN")
        assert off.get("/api/products").status_code == 200  # public routes stay open
    with api_app(database.fresh(), admin_token=TOKEN) as api:
        missing = api.post("/api/products", json=LAMP)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert "needs the staff token" in missing.json()["detail"]
        for wrong in ("Bearer nope", f"Bearer {TOKEN}x", f"Basic {TOKEN}", "Bearer"):
            r = api.patch(
                "/api/inventory/1", json={"quantity": 0}, headers={"Authorization": wrong}
            )
            assert r.status_code in (401, 403), (wrong, r.text)
        assert api.delete("/api/products/1", headers={"Authorization": "Bearer x"}).json() == {
            "detail": "The staff token is wrong"
        }
        assert stock(api)[1] == 100 and len(api.get("/api/products").json()) == 4
        spec = api.get("/openapi.json").json()
        assert "HTTPBearer" in spec["components"]["securitySchemes"]
        assert set(spec["paths"]["/api/products/{product_id}"]) == {"get", "patch", "delete"}


def test_create_edit_and_find(api: TestClient) -> None:
    r = api.post("/api/products", json=LAMP, headers=STAFF)
    assert r.status_code == 201, r.text
    assert r.json() == {"id": 5, **LAMP}
    assert api.get("/api/products/5").json() == {
        "id": 5, "name": LAMP["name"], "price": 45.5, "description": LAMP["description"]
    }  # fmt: skip
    assert stock(api)[5] == 6
    assert [p["id"] for p in api.get("/api/products", params={"q": "lamp"}).json()] == [5]
    again = api.post("/api/products", json={**LAMP, "name": "Other"}, headers=STAFF)
    assert again.status_code == 409
    assert again.json()["detail"] == "SKU LAMP-1 is already product ID 5"
    plain = api.post("/api/products", json={"name": " Mug ", "price": 3}, headers=STAFF).json()
    assert plain == {"id": 6, "name": "Mug", "price": 3.0, "description": "", "sku": None,
                     "stock": 0}  # fmt: skip

    edited = api.patch("/api/products/5", json={"name": "Copper Lamp", "price": 39}, headers=STAFF)
    assert edited.json() == {**LAMP, "id": 5, "name": "Copper Lamp", "price": 39.0}
    assert [p["id"] for p in api.get("/api/products", params={"q": "copper"}).json()] == [5]
    assert api.get("/api/products", params={"q": "brass"}).json() == []  # index follows edits
    order = buy(api, {"customerName": "Al", "items": [{"productId": 5, "quantity": 2}]}).json()
    assert order["totalAmount"] == 78.0
    assert api.patch("/api/products/77", json={"price": 1}, headers=STAFF).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "loc"),
    [
        ("post", "/api/products", {**LAMP, "price": 1.234}, ["body", "price"]),
        ("post", "/api/products", {**LAMP, "price": -1}, ["body", "price"]),
        ("post", "/api/products", {**LAMP, "name": "   "}, ["body", "name"]),
        ("post", "/api/products", {**LAMP, "name": "a\nb"}, ["body", "name"]),
        ("post", "/api/products", {**LAMP, "description": "x\x00"}, ["body", "description"]),
        ("post", "/api/products", {**LAMP, "stock": -1}, ["body", "stock"]),
        ("post", "/api/products", {**LAMP, "stock": "3"}, ["body", "stock"]),
        ("post", "/api/products", {**LAMP, "sku": "has space"}, ["body", "sku"]),
        ("post", "/api/products", {**LAMP, "colour": "red"}, ["body", "colour"]),
        ("patch", "/api/products/1", {}, ["body"]),
        ("patch", "/api/products/1", {"name": None}, ["body"]),
        ("patch", "/api/products/1", {"stock": 3}, ["body", "stock"]),
        ("patch", "/api/inventory/1", {}, ["body"]),
        ("patch", "/api/inventory/1", {"quantity": 1, "delta": 1}, ["body"]),
        ("patch", "/api/inventory/1", {"delta": 2_000_000_000}, ["body", "delta"]),
        ("patch", "/api/inventory/1", {"quantity": 1.5}, ["body", "quantity"]),
    ],
)
def test_bad_staff_input_is_422_and_changes_nothing(
    api: TestClient, method: str, path: str, body: dict, loc: list
) -> None:
    r = api.request(method, path, json=body, headers=STAFF)
    assert r.status_code == 422, r.text
    error = r.json()["detail"][0]
    assert error["loc"] == loc and error["msg"]
    assert len(api.get("/api/products").json()) == 4
    assert stock(api) == {1: 100, 2: 50, 3: 200, 4: 150}
    assert api.get("/api/products/1").json()["price"] == 1299.0


def test_a_string_says_which_kind_of_number_the_field_wants(api: TestClient) -> None:
    """A price is any number (a string's error said "integer"); a stock count an integer."""
    for body, field, kind in (
        ({"name": "Lamp", "price": "abc"}, "price", "must be a JSON number"),
        ({"name": "Lamp", "price": 5, "stock": "5"}, "stock", "must be a JSON integer"),
    ):
        r = api.post("/api/products", json=body, headers=STAFF)
        assert r.status_code == 422, r.text
        [error] = r.json()["detail"]
        assert error["loc"] == ["body", field] and kind in error["msg"], error


def test_archive_hides_but_keeps_history(api: TestClient) -> None:
    buy(api, {"customerName": "Bo", "items": [{"productId": 2, "quantity": 1}]})
    r = api.delete("/api/products/2", headers=STAFF)
    assert r.status_code == 200 and r.json()["id"] == 2
    assert [p["id"] for p in api.get("/api/products").json()] == [1, 3, 4]
    assert api.get("/api/products", params={"q": "earbuds"}).json() == []
    assert 2 not in stock(api)
    recs = api.get("/api/recommendations", params={"preferences": "wireless earbuds"}).json()
    assert 2 not in [x["product"]["id"] for x in recs]
    gone = api.get("/api/products/2")
    assert gone.status_code == 404 and "archived" in gone.json()["detail"]
    refused = buy(api, {"customerName": "Cy", "items": [{"productId": 2, "quantity": 1}]})
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "Pro Wireless Bluetooth Earbuds (product ID 2) was archived and can no longer be bought"
    )
    quote = api.post(
        "/api/purchase/quote",
        json={"customerName": "Cy", "items": [{"productId": 2, "quantity": 1}]},
    )
    assert (quote.status_code, quote.json()) == (409, refused.json())  # the quote refuses alike
    assert [o["items"] for o in orders(api)] == [
        [{"productId": 2, "quantity": 1, "name": "Pro Wireless Bluetooth Earbuds"}]
    ]
    sales = api.get("/api/analytics/sales").json()
    assert [g["key"] for g in sales["groups"]] == ["2"]
    for method, path, body in [
        ("delete", "/api/products/2", None),
        ("patch", "/api/products/2", {"price": 1}),
        ("patch", "/api/inventory/2", {"delta": 5}),
    ]:
        r = api.request(method, path, json=body, headers=STAFF)
        assert r.status_code == 409 and "archived" in r.json()["detail"], r.text


def test_set_and_adjust_stock(api: TestClient) -> None:
    assert api.patch("/api/inventory/1", json={"quantity": 7}, headers=STAFF).json()["stock"] == 7
    assert api.patch("/api/inventory/1", json={"delta": -7}, headers=STAFF).json()["stock"] == 0
    low = api.patch("/api/inventory/1", json={"delta": -1}, headers=STAFF)
    assert low.status_code == 409
    assert low.json()["detail"] == (
        "Stock of Galaxy Smart Watch cannot go below zero: 0 in stock, delta -1"
    )
    api.patch("/api/inventory/1", json={"quantity": 999_999_999}, headers=STAFF)
    high = api.patch("/api/inventory/1", json={"delta": 5}, headers=STAFF)
    assert high.status_code == 409 and "above 1000000000" in high.json()["detail"]
    assert api.patch("/api/inventory/99", json={"delta": 1}, headers=STAFF).status_code == 404
    assert stock(api)[1] == 999_999_999


def test_stock_never_negative_when_restocks_race_purchases(api: TestClient) -> None:
    """Takes of one unit by purchases and by negative deltas, with restocks, all at once: every
    unit is accounted for and the stock never goes below zero."""
    api.patch("/api/inventory/3", json={"quantity": 40}, headers=STAFF)

    def purchase(_: int) -> int:
        r = buy(api, {"customerName": "Race", "items": [{"productId": 3, "quantity": 1}]})
        assert r.status_code in (200, 400), r.text
        return 1 if r.status_code == 200 else 0

    def take(_: int) -> int:
        r = api.patch("/api/inventory/3", json={"delta": -1}, headers=STAFF)
        assert r.status_code in (200, 409), r.text
        return 1 if r.status_code == 200 else 0

    def restock(_: int) -> int:
        assert api.patch("/api/inventory/3", json={"delta": 2}, headers=STAFF).status_code == 200
        return 0

    with ThreadPoolExecutor(8) as pool:
        bought = pool.map(purchase, range(40))
        taken = pool.map(take, range(40))
        list(pool.map(restock, range(5)))
        purchases, takes = sum(bought), sum(taken)
    left = stock(api)[3]
    assert left >= 0
    assert purchases + takes + left == 40 + 10
    assert len(orders(api)) == purchases


def test_repeated_items_are_bounded_after_merging(api: TestClient) -> None:
    """Found by schemathesis once stock could be raised: two lines of one product, each within
    10,000 units, made an order line of 16,635 (over the documented maximum)."""
    api.patch("/api/inventory/1", json={"quantity": 30_000}, headers=STAFF)
    item = {"productId": 1, "quantity": 6000}
    r = buy(api, {"customerName": "Bulk", "items": [item, item]})
    assert r.status_code == 422
    error = r.json()["detail"][0]
    assert error["loc"] == ["body", "items"] and "at most 10000 of one product" in error["msg"]
    assert stock(api)[1] == 30_000 and orders(api) == []
    quote = api.post("/api/purchase/quote", json={"customerName": "Bulk", "items": [item, item]})
    assert (quote.status_code, quote.json()) == (422, r.json())
