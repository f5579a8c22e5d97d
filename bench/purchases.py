"""Row 5: 32 clients buying the last units of one product at once, and a check in the
database afterwards that nothing was oversold or lost (with SQLite FULL and NORMAL sync; on
PostgreSQL with 1 and 4 API workers, bench/scale.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from bench.clients import SSL_CONTEXT
from bench.measure import Bench
from bench.stats import Row, pct

PRODUCT_ID = 5  # the bench product, right after the four seed products
CLIENTS = 32


@dataclass
class Tally:
    """What the clients were answered, and how long each purchase took."""

    ok: list[int] = field(default_factory=list)
    refused: int = 0
    other: list[str] = field(default_factory=list)
    samples: list[float] = field(default_factory=list)


async def buyer(
    http: httpx.AsyncClient, api_url: str, k: int, queue: Iterator[int], tally: Tally
) -> None:
    """Client k: one unit per attempt, until the shared attempts run out."""
    for i in queue:
        t = time.perf_counter()
        r = await http.post(
            f"{api_url}/api/purchase",
            json={
                "customerName": f"bench-{k}",
                "items": [{"productId": PRODUCT_ID, "quantity": 1}],
            },
            headers={"Idempotency-Key": f"bench-{i}"},
        )
        tally.samples.append(time.perf_counter() - t)
        if r.status_code == 200:
            tally.ok.append(r.json()["id"])
        elif r.status_code == 400 and "Insufficient stock" in r.text:
            tally.refused += 1
        else:
            tally.other.append(f"{r.status_code} {r.text[:100]}")


def in_db(db: Path | str) -> tuple[int, tuple[int, int]]:
    """The product's stock left, and (orders, units) of it the database holds (a SQLite
    file or a database URL)."""
    engine = create_engine(f"sqlite:///{db}" if isinstance(db, Path) else db)
    try:
        with engine.connect() as conn:
            product = {"p": PRODUCT_ID}
            left = conn.execute(
                text("SELECT quantity FROM inventory WHERE product_id = :p"), product
            ).scalar_one()
            found = conn.execute(
                text(
                    "SELECT COUNT(DISTINCT o.id), COALESCE(SUM(i.quantity), 0) FROM orders o "
                    "JOIN order_items i ON i.order_id = o.id WHERE i.product_id = :p"
                ),
                product,
            ).one()
    finally:
        engine.dispose()
    return int(left), (int(found[0]), int(found[1]))


def check(attempts: int, stock: int, tally: Tally, db: Path | str) -> dict[str, Any]:
    """The consistency check: answers against what the database holds."""
    left, rows = in_db(db)
    ok, other = tally.ok, tally.other
    return {
        "attempts": attempts,
        "initial_stock": stock,
        "succeeded": len(ok),
        "refused_insufficient_stock": tally.refused,
        "other_errors": other[:5],
        "final_stock": left,
        "orders_in_db": rows[0],
        "units_in_db": rows[1],
        "oversold": max(0, rows[1] - stock) + max(0, -left),
        "lost": len(set(ok)) - rows[0],
        "consistent": (
            left == stock - len(ok) and rows[0] == len(ok) == rows[1] and left >= 0 and not other
        ),
    }


async def purchases(
    b: Bench, server: str, db: Path | str, stock: int, key: str = "", label: str = ""
) -> None:
    """5: 32 clients buy one unit each until attempts run out; stock < attempts. The row
    and check are `key` (default by server: purchases_32, purchases_32_normal).

    Each client has an httpx client of its own (one keep-alive connection, as 32 real
    clients), opened here before the clock starts, so every purchase row (the full run's,
    bench.purchase_rows', the live and PostgreSQL ones) starts alike whatever the process ran
    before. Not one pool for all 32: httpcore's pool hands every request queued at a moment to
    the same idle connection, and all but one then retry (3-4 retries per purchase, counted;
    the pool's scans were 30-43 % of the bench's samples), more the slower its event loop."""
    api_url = b.procs[server].url
    attempts = b.sizes.purchase_attempts
    queue = iter(range(attempts))
    tally = Tally()
    normal = server == "normal"
    key = key or ("purchases_32_normal" if normal else "purchases_32")
    label = label or (
        "POST /api/purchase, 32 clients" + (", SQLITE_SYNCHRONOUS=NORMAL" if normal else "")
    )
    row = Row(key, label)
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(timeout=60, verify=SSL_CONTEXT))
            for _ in range(CLIENTS)
        ]
        client_cpu = time.process_time()
        with b.cpu(row.cpu_ms, [server], attempts):
            t0 = time.perf_counter()
            await asyncio.gather(
                *(buyer(http, api_url, k, queue, tally) for k, http in enumerate(clients))
            )
            elapsed = time.perf_counter() - t0
        row.cpu_ms["bench-client"] = round((time.process_time() - client_cpu) * 1000 / attempts, 2)
    checked = check(attempts, stock, tally, db)
    row.n = attempts
    row.per_s = round(len(tally.ok) / elapsed, 1)
    row.p50_ms, row.p95_ms = round(pct(tally.samples, 50), 2), round(pct(tally.samples, 95), 2)
    row.note = f"{len(tally.ok)} bought, {tally.refused} refused (stock {stock})"
    b.add(row)
    b.checks[key.replace("purchases_32", "purchase")] = checked
