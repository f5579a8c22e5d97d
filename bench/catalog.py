"""A deterministic product catalog for benchmarks: the same N products on every machine.

`rows(n)` yields (name, price_cents, description, stock) tuples from a fixed seed, so search
results and timings are comparable between runs; `fill(shop, n)` writes them with
`Shop.add_products` in batches (after the four seed products that `Shop.init` creates).

    uv run python -m bench.catalog --database-url sqlite:///big.db --products 100000

(from the repo root).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Iterator

from product_mcp.shop import Shop, make_engine

SEED = 20260728
BATCH = 5_000

BRANDS = (
    "Acme Aurora Nimbus Vertex Zenith Orion Pulse Echo Nova Atlas Lumen Quartz Helix Cobalt "
    "Summit Vector Polar Ember Tidal Falcon"
).split()
CATEGORIES: dict[str, tuple[int, int, list[str]]] = {
    # category: (min price, max price in cents, features)
    "Smart Watch": (4_900, 89_900, ["heart rate", "GPS", "sleep tracking", "AMOLED display"]),
    "Wireless Earbuds": (1_900, 49_900, ["noise cancellation", "30-hour battery", "IPX7"]),
    "Power Bank": (990, 14_900, ["20000mAh", "fast charging", "USB-C PD", "lightweight"]),
    "Laptop": (39_900, 399_900, ["14-inch display", "16GB RAM", "1TB SSD", "backlit keyboard"]),
    "Headphones": (2_900, 59_900, ["over-ear", "noise cancellation", "40mm drivers", "foldable"]),
    "Smartphone": (9_900, 199_900, ["OLED screen", "triple camera", "5G", "128GB storage"]),
    "Tablet": (12_900, 149_900, ["11-inch screen", "stylus support", "LTE", "all-day battery"]),
    "Bluetooth Speaker": (1_500, 39_900, ["waterproof", "360 sound", "bass boost", "portable"]),
    "Monitor": (9_900, 129_900, ["27-inch", "4K", "144Hz", "HDR", "USB-C"]),
    "Keyboard": (1_900, 24_900, ["mechanical", "wireless", "RGB backlight", "hot-swappable"]),
    "Mouse": (990, 14_900, ["ergonomic", "wireless", "16000 DPI", "silent clicks"]),
    "Camera": (29_900, 349_900, ["24MP sensor", "4K video", "image stabilization", "WiFi"]),
    "Fitness Band": (1_900, 19_900, ["step counter", "heart rate", "waterproof", "7-day battery"]),
    "Charger": (590, 7_900, ["65W", "GaN", "USB-C", "foldable plug", "travel"]),
    "Router": (2_900, 59_900, ["WiFi 6", "mesh", "gigabit ports", "parental controls"]),
    "Drone": (19_900, 249_900, ["4K camera", "GPS return", "obstacle avoidance", "foldable"]),
}
ADJECTIVES = (
    "Pro Max Lite Mini Ultra Air Plus Sport Classic Neo Prime Edge Go Studio Active".split()
)
EXTRAS = [
    "premium aluminium body",
    "two-year warranty",
    "eco-friendly packaging",
    "gift-ready box",
    "ideal for travel",
    "great for students",
    "designed for gamers",
    "built for professionals",
    "long battery life",
    "works with iOS and Android",
]


def rows(n: int, seed: int = SEED) -> Iterator[tuple[str, int, str, int]]:
    """n products as (name, price_cents, description, stock); one in ten is out of stock."""
    rnd = random.Random(seed)
    cats = list(CATEGORIES)
    for i in range(n):
        cat = cats[rnd.randrange(len(cats))]
        low, high, features = CATEGORIES[cat]
        name = f"{rnd.choice(BRANDS)} {cat} {rnd.choice(ADJECTIVES)} {100 + i % 900}"
        chosen = rnd.sample(features, k=min(len(features), rnd.randint(2, 3)))
        description = ", ".join(chosen) + "; " + rnd.choice(EXTRAS)
        price = rnd.randint(low // 10, high // 10) * 10
        stock = 0 if rnd.random() < 0.1 else rnd.randint(1, 500)
        yield name, price, description, stock


def fill(shop: Shop, n: int, seed: int = SEED) -> None:
    """Create the schema and seed if needed, then add n generated products in batches."""
    shop.init()
    batch: list[tuple[str, int, str, int]] = []
    for row in rows(n, seed):
        batch.append(row)
        if len(batch) == BATCH:
            shop.add_products(batch)
            batch = []
    if batch:
        shop.add_products(batch)


def main() -> None:
    p = argparse.ArgumentParser(description="write a deterministic benchmark catalog")
    p.add_argument("--database-url", required=True, help="e.g. sqlite:///bench.db")
    p.add_argument("--products", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=SEED)
    a = p.parse_args()
    engine = make_engine(a.database_url, sqlite_synchronous="NORMAL")
    start = time.perf_counter()
    fill(Shop(engine), a.products, a.seed)
    engine.dispose()
    print(f"{a.products} products written in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
