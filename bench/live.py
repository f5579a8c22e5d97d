"""Rows of issue #13, live inventory: how soon a purchase made through api.py reaches an MCP
client subscribed to it and the stock shown in a page (bench/live_page.py), how long one change
takes to reach 500 subscribed sessions, and how many change-feed events per second api.py
streams during the 32-client purchase run.

Why its own processes (one api.py on SQLite, one main.py allowing 1000 sessions from one
address): the sessions held open here would weigh on every other row's numbers, so these run
last, alone. Sessions are raw Streamable HTTP (2025-11-25): initialize, open the GET stream,
`resources/subscribe`; a notification's arrival is the moment its line is read off that stream.
Latency includes main.py's coalescing window (live.WINDOW, 100 ms): the notification is sent
once the window after the first change of a burst closes, so p50 sits just above it.

    uv run python -m bench.live [--smoke]    # this section alone, no JSON written
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

import httpx

from bench.live_page import page_latency
from bench.measure import Bench, run_alone
from bench.procs import api_spec, make_db, mcp_spec, start_many
from bench.purchases import purchases
from bench.stats import Row, pct
from tests.mcp_helpers import ACCEPT, INIT, rpc
from tests.servers import free_port

GADGET = 6  # the product bought for the latency and fan-out rows (after the widget, 5)
URI = f"shop://products/{GADGET}"
WAIT = 30  # seconds: a notification not here by then is a failure, not a sample
UPDATED = "notifications/resources/updated"


class Watcher:
    """One subscribed session and the moments its notifications arrived."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.heard: list[float] = []
        self.new = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        r = await self.http.post("/mcp", json=INIT, headers={"Accept": ACCEPT})
        r.raise_for_status()
        h = {"Accept": ACCEPT, "Mcp-Session-Id": r.headers["mcp-session-id"]}
        h["Mcp-Protocol-Version"] = "2025-11-25"
        r = await self.http.post("/mcp", json=rpc("notifications/initialized", id=None), headers=h)
        r.raise_for_status()
        ready = asyncio.Event()
        self.task = asyncio.create_task(self._listen(h, ready))
        await asyncio.wait_for(ready.wait(), WAIT)
        r = await self.http.post("/mcp", json=rpc("resources/subscribe", {"uri": URI}), headers=h)
        if r.status_code != 200 or '"result"' not in r.text:
            raise RuntimeError(f"subscribe: {r.status_code} {r.text[:200]}")

    async def _listen(self, headers: dict[str, str], ready: asyncio.Event) -> None:
        async with self.http.stream("GET", "/mcp", headers=headers) as r:
            r.raise_for_status()
            ready.set()
            async for line in r.aiter_lines():
                if UPDATED in line:
                    self.heard.append(time.perf_counter())
                    self.new.set()

    async def after(self, count: int) -> float:
        """The arrival time of notification number count + 1."""
        async with asyncio.timeout(WAIT):
            while len(self.heard) <= count:
                self.new.clear()
                await self.new.wait()
        return self.heard[count]

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()


async def buy(http: httpx.AsyncClient, api_url: str) -> None:
    body = {"customerName": "bench-live", "items": [{"productId": GADGET, "quantity": 1}]}
    r = await http.post(f"{api_url}/api/purchase", json=body)
    r.raise_for_status()


async def change_reaches(http: httpx.AsyncClient, api_url: str, watchers: list[Watcher]) -> float:
    """One purchase; seconds until the last watcher heard of it."""
    counts = [len(w.heard) for w in watchers]
    t0 = time.perf_counter()
    await buy(http, api_url)
    arrived = await asyncio.gather(*(w.after(c) for w, c in zip(watchers, counts, strict=True)))
    return max(arrived) - t0


async def open_watchers(mcp_url: str, n: int, stack: contextlib.AsyncExitStack) -> list[Watcher]:
    limits = httpx.Limits(max_connections=n + 32, max_keepalive_connections=n + 32)
    timeout = httpx.Timeout(30, read=None)
    http = await stack.enter_async_context(
        httpx.AsyncClient(base_url=mcp_url, timeout=timeout, limits=limits)
    )
    watchers = [Watcher(http) for _ in range(n)]
    stack.callback(lambda: [w.close() for w in watchers])
    sem = asyncio.Semaphore(16)

    async def open_one(w: Watcher) -> None:
        async with sem:
            await w.open()

    await asyncio.gather(*(open_one(w) for w in watchers))
    return watchers


async def feed_rate(b: Bench, http: httpx.AsyncClient, api_url: str, db: Path, stock: int) -> None:
    """Events/s an SSE follower of GET /api/changes receives during the 32-client run."""
    head = int((await http.get(f"{api_url}/api/changes", params={"limit": 1})).headers[
        "x-change-head"
    ])  # fmt: skip
    seen: list[float] = []
    ready, more = asyncio.Event(), asyncio.Event()

    async def follow() -> None:
        h = {"Accept": "text/event-stream", "Last-Event-ID": str(head)}
        async with http.stream("GET", f"{api_url}/api/changes", headers=h) as r:
            ready.set()
            async for line in r.aiter_lines():
                if line.startswith("id:"):
                    seen.append(time.perf_counter())
                    more.set()

    task = asyncio.create_task(follow())
    await asyncio.wait_for(ready.wait(), WAIT)
    t0 = time.perf_counter()
    label = "POST /api/purchase, 32 clients, feed followed by main.py and an SSE client"
    await purchases(b, "liveapi", db, stock, "purchases_32_live", label)
    bought = b.checks["purchase_live"]["succeeded"]
    async with asyncio.timeout(WAIT):
        while len(seen) < bought:
            more.clear()
            await more.wait()
    task.cancel()
    elapsed = seen[-1] - t0
    row = Row("live_feed_rate", "change feed events/s during the 32-client purchase run")
    row.n, row.per_s = len(seen), round(len(seen) / elapsed, 1)
    row.note = f"{len(seen)} events for {bought} purchases, first purchase to last event"
    b.add(row)
    b.checks["live_feed"] = {"events": len(seen), "purchases": bought}


async def live(b: Bench) -> None:
    """Every row of this module, on its own api.py and main.py."""
    s = b.sizes
    changes = s.live_changes
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        db = Path(tmp) / "live.db"
        stock = s.purchase_attempts * 3 // 4
        make_db(
            db,
            0,
            [
                ("Bench Widget", 100, "the purchase benchmark's product", stock),
                ("Live Gadget", 10, "bought for the live-inventory rows", 1_000_000),
            ],
        )
        api_port, mcp_port = free_port(), free_port()
        b.procs |= start_many({"liveapi": api_spec(api_port, db)})
        api_url = b.procs["liveapi"].url
        args, port, env, health = mcp_spec(mcp_port, api_url)
        env |= {"MCP_MAX_SESSIONS_PER_CLIENT": str(s.live_sessions + 10)}
        b.procs |= start_many({"livemcp": (args, port, env, health)})
        mcp_url = b.procs["livemcp"].url
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        timeout = httpx.Timeout(60, read=None)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
            await feed_rate(b, http, api_url, db, stock)
            async with contextlib.AsyncExitStack() as stack:
                [one] = await open_watchers(mcp_url, 1, stack)
                samples = [await change_reaches(http, api_url, [one]) for _ in range(changes)]
            row = Row("live_latency", "purchase via API -> notifications/resources/updated")
            row.n = len(samples)
            row.p50_ms, row.p95_ms = round(pct(samples, 50), 2), round(pct(samples, 95), 2)
            row.note = "1 legacy session; includes the 100 ms coalescing window"
            b.add(row)
            await page_latency(b, mcp_url, GADGET, lambda: buy(http, api_url))
            async with contextlib.AsyncExitStack() as stack:
                t = time.perf_counter()
                many = await open_watchers(mcp_url, s.live_sessions, stack)
                opened = time.perf_counter() - t
                samples = [await change_reaches(http, api_url, many) for _ in range(s.live_fanouts)]
            row = Row("live_fanout", f"one change -> the last of {s.live_sessions} sessions")
            row.n = len(samples)
            row.p50_ms, row.p95_ms = round(pct(samples, 50), 2), round(pct(samples, 95), 2)
            row.note = f"{s.live_sessions} sessions opened in {opened:.1f}s; p95 of {len(samples)}"
            b.add(row)


def main() -> None:
    run_alone(live, "the live-inventory rows of the bench alone")


if __name__ == "__main__":
    main()
