"""The tutorial's four products: what a fresh database starts with."""

from __future__ import annotations

from sqlalchemy import Connection, insert

from product_mcp.shop.schema import inventory, products

SEED: list[tuple[int, str, int, str, int]] = [
    (1, "Galaxy Smart Watch", 129900,
     "Health monitoring, activity tracking, supports multiple apps", 100),
    (2, "Pro Wireless Bluetooth Earbuds", 89900,
     "Active noise cancellation, 30-hour battery life, IPX7 waterproof", 50),
    (3, "Portable Power Bank", 29900,
     "20000mAh capacity, fast charging, lightweight design", 200),
    (4, "Huawei MateBook X Pro", 159900,
     "14.2-inch full-screen display, 3:2 aspect ratio, 100% sRGB color gamut", 150),
]  # fmt: skip


def seed(conn: Connection) -> None:
    """Insert the seed catalogue (the caller checked that the table is empty)."""
    conn.execute(
        insert(products),
        [{"id": i, "name": n, "price_cents": p, "description": d} for i, n, p, d, _ in SEED],
    )
    conn.execute(insert(inventory), [{"product_id": i, "quantity": q} for i, *_, q in SEED])
