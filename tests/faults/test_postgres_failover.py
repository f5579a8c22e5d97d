"""PostgreSQL drops every connection of api.py (`pg_terminate_backend`, what a failover or a
server restart does to its clients) while clients buy: api.py reconnects by itself, a request
whose connection died under it gets 503 (retry: with its Idempotency-Key a retry cannot buy
twice), never a 500, and nothing a client saw succeed is lost (issue #12).

What this does not cover: a real failover to a standby (a new primary at another address,
transactions committed on the old primary but not yet replicated); see docs/scale.md.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy.engine import make_url

from tests.databases import _conninfo, fresh_database, need_postgres
from tests.faults.test_crash import assert_nothing_lost, inventory
from tests.inproc import api_on_fresh_database
from tests.servers import wait_workers
from tests.stack import Stack

CLIENTS = 8
KILLS = 3


def kill_connections(url: str) -> int:
    """pg_terminate_backend for every connection to `url`'s database (but this one)."""
    database = make_url(url).database
    with psycopg.connect(_conninfo("postgres"), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchall()
    return len(rows)


def assert_serves(url: str, path: str) -> None:
    """20 requests in a row answered 200: whatever connections the pool held were replaced."""
    with httpx.Client(base_url=url, timeout=10) as http:
        answers = [http.get(path).status_code for _ in range(20)]
    assert answers == [200] * 20


class Buyers:
    """Threads buying one or two units at a time; a purchase is sent again under the same
    Idempotency-Key while the API answers 503 or not at all. Every status is counted, every
    key sent kept (with the order it got, if any)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[int, dict[str, Any]] = {}
        self.statuses: Counter[int] = Counter()
        self.retried_ok = 0
        self.keys: dict[str, int | None] = {}  # Idempotency-Key -> the order id it answered
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._buy, args=(n,)) for n in range(CLIENTS)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _buy(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while not self._stop.is_set():
                item = {"productId": 5, "quantity": 1 + n % 2}
                body = {"customerName": f"Failover {n}", "items": [item]}
                self._until_answered(http, body, {"Idempotency-Key": str(uuid.uuid4())})

    def _until_answered(self, http: httpx.Client, body: Any, headers: dict[str, str]) -> None:
        key = headers["Idempotency-Key"]
        with self._lock:
            self.keys[key] = None
        for attempt in range(100):
            try:
                r = http.post("/api/purchase", json=body, headers=headers)
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            with self._lock:
                self.statuses[r.status_code] += 1
                if r.status_code == 200:
                    self.seen[r.json()["id"]] = r.json()
                    self.keys[key] = r.json()["id"]
                    self.retried_ok += attempt > 0
            if r.status_code != 503:
                return
            time.sleep(0.05)


def test_api_reconnects_after_postgres_kills_its_connections(tmp_path: Path) -> None:
    need_postgres()
    with fresh_database("postgresql", tmp_path, "failover") as url, Stack(tmp_path) as s:
        api = s.api(
            products=[("Failover widget", 100, "Plenty in stock", 1_000_000)],  # id 5
            database_url=url,
            env={"API_WORKERS": "2"},
        )
        assert len(wait_workers(api, 2)) == 2, api.log()
        initial = inventory(api.url)
        buyers = Buyers(api.url)
        killed = []
        try:
            for _ in range(KILLS):
                time.sleep(0.7)
                killed.append(kill_connections(url))
            time.sleep(0.7)
        finally:
            buyers.stop()
        statuses = buyers.statuses
        assert all(k > 0 for k in killed), killed  # the API had connections each time
        assert set(statuses) <= {200, 503}, statuses  # never a 500
        assert statuses[200] > 0 and len(buyers.seen) == statuses[200], statuses
        assert_nothing_lost(api.url, buyers.seen, initial)
        # Idle connections killed too: the next requests reconnect without an error.
        kill_connections(url)
        assert_serves(api.url, "/api/products/1")
    print(
        f"\n{KILLS} x pg_terminate_backend ({killed} connections) under {CLIENTS} buyers: "
        f"{dict(statuses)}, {buyers.retried_ok} answered on a retry"
    )


def test_a_server_that_turned_read_only_is_a_503_and_is_left(tmp_path: Path) -> None:
    """A failover through a name or a proxy can hand api.py's pool a server that refuses writes
    (a demoted primary, a standby): each purchase there is a 503 to retry, never a 500, and once
    writes are taken again the very next purchase succeeds, with no restart (the pool dropped
    the read-only connections instead of keeping them)."""
    need_postgres()
    with api_on_fresh_database("postgresql", tmp_path, "readonly") as api:
        database = make_url(str(api.app.state.shop.engine.url)).database
        buy = {"customerName": "Ro", "items": [{"productId": 1, "quantity": 1}]}
        assert api.post("/api/purchase", json=buy).status_code == 200
        admin = psycopg.connect(_conninfo("postgres"), autocommit=True)
        try:
            admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
            kill_connections(str(api.app.state.shop.engine.url))
            assert api.get("/api/products/1").status_code == 200  # reads still work there
            for _ in range(3):
                r = api.post("/api/purchase", json=buy)
                assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        finally:
            admin.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
            admin.close()
        assert api.post("/api/purchase", json=buy).status_code == 200
        orders = api.get("/api/orders", params={"customer": "Ro"}).json()
        assert len(orders) == 2  # the refused purchases left nothing behind
