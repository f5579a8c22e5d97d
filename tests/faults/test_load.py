"""Issue 7: load on one main.py. 200 concurrent MCP sessions (legacy Streamable HTTP with a
session id, SSE, and 2026-07-28 per-request) call tools for a while: zero failed calls, and the
server's memory comes back after the sessions close (two rounds: the second must not grow it).
The same for 200 SSE connections opened and dropped without a goodbye.

Default run (kept short for CI): 100 sessions x 2 s, and 200 SSE connections. `LONG_TESTS=1`:
200 sessions x 30 s, the figures docs/reliability.md quotes (printed with `-s`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.sse import sse_client

from tests.mcp_helpers import INIT, Kind, connect, text_of
from tests.servers import Service
from tests.stack import Stack

# serial: these load main.py and measure its memory, so no other serial test (load or memory)
# runs beside them on another worker.
pytestmark = [pytest.mark.anyio, pytest.mark.serial]
LONG = os.environ.get("LONG_TESTS") == "1"
SESSIONS = 200 if LONG else 100
SECONDS = 30.0 if LONG else 2.0
SSE_CONNECTIONS = 200
# Memory the server may keep after a round (allocator arenas, caches): generous for the first
# round, tight for the second, which must not grow it again if nothing leaks.
FIRST_ROUND_MB = 80
NEXT_ROUND_MB = 25 if LONG else 15
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("get_product", {"productId": 2}),
    ("search_products", {"query": "wireless", "limit": 5}),
    ("get_inventory", {"limit": 4}),
    ("recommend_products", {"preferences": "travel battery", "limit": 3}),
]
KIND_MIX: list[Kind] = ["legacy", "sse", "modern", "legacy"]


@pytest.fixture
def server(api: Service, tmp_path: Path) -> Iterator[Service]:
    with Stack(tmp_path) as s:
        yield s.mcp(api)


def rss_mb(svc: Service) -> float:
    for line in Path(f"/proc/{svc.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def cpu_s(svc: Service) -> float:
    """User + system CPU seconds the process has used so far."""
    fields = Path(f"/proc/{svc.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settle(svc: Service, seconds: float = 1.5) -> float:
    await asyncio.sleep(seconds)
    return rss_mb(svc)


async def session_round(server: Service, sessions: int, seconds: float) -> dict[str, Any]:
    """`sessions` clients at once, each calling tools in turn until `seconds` have passed."""
    stats: dict[str, Any] = {"calls": 0, "failed": [], "latency": []}
    ready = asyncio.Event()
    opened = 0
    # Sessions open 25 at a time: this one test process plays all 200 clients, and opening them
    # in the same instant starves its own event loop past the SDK's 5 s SSE client timeout.
    opening = asyncio.Semaphore(25)

    async def one(n: int) -> None:
        nonlocal opened
        kind = KIND_MIX[n % len(KIND_MIX)]
        try:
            async with AsyncExitStack() as stack:
                async with opening:
                    client = await stack.enter_async_context(open_client(kind, server))
                opened += 1
                if opened == sessions:
                    ready.set()
                await asyncio.wait_for(ready.wait(), 120)  # all open at once, then call
                end = time.monotonic() + seconds
                i = n
                while time.monotonic() < end:
                    tool, args = CALLS[i % len(CALLS)]
                    i += 1
                    t0 = time.monotonic()
                    result = await client.call_tool(tool, args)
                    stats["latency"].append(time.monotonic() - t0)
                    stats["calls"] += 1
                    if result.is_error:
                        stats["failed"].append(f"{kind} {tool}: {text_of(result)[:200]}")
        except Exception as e:
            ready.set()  # do not leave the others waiting
            stats["failed"].append(f"{kind} session {n}: {type(e).__name__}: {e}"[:300])

    t0 = time.monotonic()
    await asyncio.gather(*(one(n) for n in range(sessions)))
    stats["wall"] = time.monotonic() - t0
    return stats


@asynccontextmanager
async def open_client(kind: Kind, server: Service) -> AsyncIterator[Client]:
    """Like mcp_helpers.connect, with 30 s HTTP timeouts for SSE too."""
    if kind != "sse":
        async with connect(kind, server.url) as client:
            yield client
        return
    async with Client(sse_client(f"{server.url}/sse", timeout=30)) as client:
        yield client


def _report(label: str, stats: dict[str, Any]) -> str:
    lat = sorted(stats["latency"]) or [0.0]
    return (
        f"{label}: {stats['calls']} calls, {len(stats['failed'])} failed, "
        f"{stats['calls'] / max(stats['wall'], 1e-9):.0f} calls/s, "
        f"p50 {lat[len(lat) // 2] * 1000:.0f} ms, p99 {lat[int(len(lat) * 0.99)] * 1000:.0f} ms"
    )


async def test_200_sessions_calling_tools(server: Service) -> None:
    await session_round(server, 10, 0.5)  # warm up imports, pools and caches
    start = await settle(server)
    cpu0 = cpu_s(server)
    first = await session_round(server, SESSIONS, SECONDS)
    cpu1 = cpu_s(server)
    assert first["failed"] == [], first["failed"][:5]
    after_first = await settle(server)
    second = await session_round(server, SESSIONS, SECONDS)
    assert second["failed"] == [], second["failed"][:5]
    after_second = await settle(server)
    print(
        f"\n{SESSIONS} sessions x {SECONDS:.0f} s: {_report('round 1', first)}; "
        f"{_report('round 2', second)}; main.py used {cpu1 - cpu0:.1f} CPU s in the "
        f"{first['wall']:.1f} s of round 1; main.py RSS {start:.0f} MB at start, "
        f"{after_first:.0f} MB after round 1, {after_second:.0f} MB after round 2"
    )
    assert first["calls"] >= SESSIONS and second["calls"] >= SESSIONS
    assert after_first - start < FIRST_ROUND_MB
    assert after_second - after_first < NEXT_ROUND_MB, "memory grew again: a session leak?"
    # every legacy session was ended on the server (DELETE on close)
    legacy = sum(KIND_MIX[n % len(KIND_MIX)] == "legacy" for n in range(SESSIONS))
    assert server.log().count("Terminating session") >= 2 * legacy
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.url}/healthz")).status_code == 200


async def sse_round(server: Service, connections: int) -> dict[str, int]:
    """Open `connections` SSE streams at once, initialize half of them, then drop them all."""
    stats = {"opened": 0, "answered": 0}
    limits = httpx.Limits(max_connections=connections * 2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        streams: list[tuple[Any, Any]] = []
        try:
            for _ in range(connections):
                cm = http.stream("GET", f"{server.url}/sse")
                resp = await cm.__aenter__()
                streams.append((cm, resp))
                lines = resp.aiter_lines()
                async for line in lines:
                    if line.startswith("data:"):
                        endpoint = line[5:].strip()
                        break
                stats["opened"] += 1
                if len(streams) % 2:
                    r = await http.post(server.url + endpoint, json=INIT)
                    assert r.status_code == 202
                    async for line in lines:
                        if line.startswith("data:") and '"serverInfo"' in line:
                            stats["answered"] += 1
                            break
        finally:
            for cm, _ in streams:  # drop: close the sockets, no DELETE, no goodbye
                await cm.__aexit__(None, None, None)
    return stats


async def test_200_sse_connections_opened_and_dropped(server: Service) -> None:
    await sse_round(server, 10)
    start = await settle(server)
    rounds = 3 if LONG else 2
    sizes = []
    for _ in range(rounds):
        stats = await sse_round(server, SSE_CONNECTIONS)
        assert stats["opened"] == SSE_CONNECTIONS and stats["answered"] == SSE_CONNECTIONS // 2
        sizes.append(await settle(server))
    print(
        f"\n{SSE_CONNECTIONS} SSE connections x {rounds} rounds opened and dropped: main.py RSS "
        f"{start:.0f} MB at start, after each round " + ", ".join(f"{s:.0f} MB" for s in sizes)
    )
    assert sizes[0] - start < FIRST_ROUND_MB
    assert sizes[-1] - sizes[0] < NEXT_ROUND_MB, "memory grew with every round: a leak?"
    # and the server still serves a real client
    async with connect("sse", server.url) as client:
        assert not (await client.call_tool("get_product", {"productId": 1})).is_error
