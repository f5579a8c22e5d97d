"""What the API tests share: the seed catalogue as the API returns it, short calls, the
schema revision and tables the migration tests expect, and a Shop that ranks every match."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from product_mcp.shop import Shop, make_engine

SEED_PRODUCTS = [
    {
        "id": 1,
        "name": "Galaxy Smart Watch",
        "price": 1299.0,
        "description": "Health monitoring, activity tracking, supports multiple apps",
    },
    {
        "id": 2,
        "name": "Pro Wireless Bluetooth Earbuds",
        "price": 899.0,
        "description": "Active noise cancellation, 30-hour battery life, IPX7 waterproof",
    },
    {
        "id": 3,
        "name": "Portable Power Bank",
        "price": 299.0,
        "description": "20000mAh capacity, fast charging, lightweight design",
    },
    {
        "id": 4,
        "name": "Huawei MateBook X Pro",
        "price": 1599.0,
        "description": "14.2-inch full-screen display, 3:2 aspect ratio, 100% sRGB color gamut",
    },
]
SEED_STOCK = {1: 100, 2: 50, 3: 200, 4: 150}


def stock(api: httpx.Client) -> dict[int, int]:
    return {i["productId"]: i["quantity"] for i in api.get("/api/inventory").json()}


def orders(api: httpx.Client) -> list[dict]:
    return api.get("/api/orders").json()


def buy(api: httpx.Client, body: object, **kw: object) -> httpx.Response:
    return api.post("/api/purchase", json=body, **kw)  # type: ignore[arg-type]


# --- schema migrations (test_migrations*.py) -----------------------------------------------

HEAD = "0006_order_totals"  # a new revision: update HEAD and add its upgrade test
TABLES = {
    "products",
    "inventory",
    "orders",
    "order_items",
    "idempotency_keys",
    "product_changes",
    "change_feed",
}


@contextmanager
def shop_on(url: str) -> Iterator[Shop]:
    """A Shop on the database at `url`, not initialised (the test migrates it), SQLite without
    fsync; its engine disposed of at the end."""
    shop = Shop(make_engine(url, sqlite_synchronous="OFF"))
    try:
        yield shop
    finally:
        shop.engine.dispose()


class FullRanking(Shop):
    """A Shop that ranks every text match (no `top` pre-ranking, no shortcut): the answer the
    faster paths must give."""

    def _top(
        self, terms: list[str], limit: int | None, offset: int, in_stock: bool | None = None
    ) -> int | None:
        return None
