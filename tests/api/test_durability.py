"""api.py where the process is the point: several uvicorn workers buying the last items at
once (on SQLite, and on PostgreSQL with API_WORKERS=4), and orders and stock surviving a
restart or a kill -9 (real processes, tests/stack.py)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import SEED_PRODUCTS, buy, orders, stock
from tests.databases import fresh_database
from tests.servers import wait_workers
from tests.stack import Stack


async def _storm(
    url: str, n: int, product: int = 2, key: str | None = None
) -> list[httpx.Response]:
    """n purchases of one unit at once; with `key`, all the same request under that key."""
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    headers = {"Idempotency-Key": key} if key else {}
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        return await asyncio.gather(
            *[
                c.post(
                    "/api/purchase",
                    json={
                        "customerName": key or f"c{i}",
                        "items": [{"productId": product, "quantity": 1}],
                    },
                    headers=headers,
                )
                for i in range(n)
            ]
        )


@pytest.mark.parametrize(("kind", "workers"), [("sqlite", 1), ("sqlite", 2), ("postgresql", 4)])
def test_no_oversell_under_concurrency(tmp_path: Path, kind: str, workers: int) -> None:
    """200 buyers for the 50 earbuds: 50 orders, stock 0; then one Idempotency-Key sent 20
    times at once: one order. The workers start together on a new database: one migrates and
    seeds it, the others wait for its lock (SQLite's write lock, a PostgreSQL advisory lock)."""
    with fresh_database(kind, tmp_path, "durability") as url, Stack(tmp_path) as s:
        svc = s.api(database_url=url, env={"API_WORKERS": str(workers)})
        codes = [r.status_code for r in asyncio.run(_storm(svc.url, 200))]
        assert codes.count(200) == 50
        assert codes.count(400) == 150
        with httpx.Client(base_url=svc.url) as http:
            assert stock(http)[2] == 0
            placed = orders(http)
        assert len(placed) == 50
        assert len({o["id"] for o in placed}) == 50

        same = asyncio.run(_storm(svc.url, 20, product=3, key="one-key"))
        assert {r.status_code for r in same} == {200}, [r.text for r in same]
        assert len({r.json()["id"] for r in same}) == 1
        with httpx.Client(base_url=svc.url) as http:
            assert stock(http)[3] == 199
            assert len(orders(http)) == 51

        assert len(wait_workers(svc, workers)) == workers, svc.log()
        assert svc.log().count("database schema upgraded from no revision to") == 1, svc.log()
        assert "Traceback" not in svc.log()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_orders_and_stock_survive_restart(tmp_path: Path, sig: int) -> None:
    with Stack(tmp_path) as s:
        with httpx.Client(base_url=s.api().url) as http:
            placed = [
                buy(
                    http, {"customerName": f"p{i}", "items": [{"productId": 3, "quantity": i}]}
                ).json()
                for i in range(1, 6)
            ]
        with httpx.Client(base_url=s.restart("api", sig).url) as http:
            assert stock(http)[3] == 200 - 15
            assert sorted(orders(http), key=lambda o: o["id"]) == placed
            # Restart does not re-seed or duplicate anything.
            assert http.get("/api/products").json() == SEED_PRODUCTS
    with sqlite3.connect(s.db()) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
