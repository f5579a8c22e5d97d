"""api.py where the process is the point: several uvicorn workers buying the last items at
once, and orders and stock surviving a restart or a kill -9 (real processes, tests/stack.py)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import SEED_PRODUCTS, buy, orders, stock
from tests.stack import Stack


async def _storm(url: str, n: int) -> list[int]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        rs = await asyncio.gather(
            *[
                c.post(
                    "/api/purchase",
                    json={"customerName": f"c{i}", "items": [{"productId": 2, "quantity": 1}]},
                )
                for i in range(n)
            ]
        )
    return [r.status_code for r in rs]


@pytest.mark.parametrize("workers", [1, 2])
def test_no_oversell_under_concurrency(tmp_path: Path, workers: int) -> None:
    with (
        Stack(tmp_path) as s,
        httpx.Client(base_url=s.api(extra=["--workers", str(workers)]).url) as http,
    ):
        svc = s["api"]
        codes = asyncio.run(_storm(svc.url, 200))
        assert codes.count(200) == 50
        assert codes.count(400) == 150
        with httpx.Client(base_url=svc.url) as http:
            assert stock(http)[2] == 0
            placed = orders(http)
        assert len(placed) == 50
        assert len({o["id"] for o in placed}) == 50
        if workers == 2:
            pids = {
                line.split("[")[1].split("]")[0]
                for line in svc.log().splitlines()
                if "Started server process" in line
            }
            assert len(pids) == 2, svc.log()


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
