"""Row 7: main.py's resident memory idle, with many open Streamable HTTP sessions and SSE
streams, and after they close, to show what a session costs and that closing gives it back."""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from typing import Any

import httpx

from bench.clients import mcp_client, tool
from bench.measure import Bench
from bench.procs import rss_kib
from bench.stats import Row

ACCEPT = "application/json, text/event-stream"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


async def settle(pid: int, seconds: float = 3.0) -> int:
    """RSS once it stops falling (or after `seconds`)."""
    last = rss_kib(pid)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = rss_kib(pid)
        if abs(now - last) < 64:
            return now
        last = now
    return last


async def memory(b: Bench) -> None:
    """7: main.py RSS idle, with N open sessions, with M open SSE streams, after each closes."""
    svc = b.procs["mem"]
    pid, url = svc.proc.pid, svc.url
    async with mcp_client("legacy", url) as c:  # warm: imports, first session, first call
        await tool(c, "get_products")
    async with mcp_client("sse", url) as c:
        await tool(c, "get_products")
    idle = await settle(pid)
    m: dict[str, Any] = {"idle_kib": idle}
    sessions = await http_sessions(m, pid, url, b.sizes.mem_sessions)
    streams = await sse_streams(m, pid, svc.port, b.sizes.mem_sse)
    m["after_sse_closed_kib"] = await settle(pid, 5.0)
    m["after_close_vs_idle_pct"] = round((m["after_sse_closed_kib"] - idle) * 100 / idle, 1)
    b.memory = m
    add_rows(b, m, sessions, streams)


class Sessions:
    """Streamable HTTP sessions opened and closed over raw HTTP (as a client would)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.sem = asyncio.Semaphore(16)
        self.sids: list[str] = []

    async def open_one(self) -> None:
        async with self.sem:
            r = await self.http.post("/mcp", json=INIT, headers={"Accept": ACCEPT})
            r.raise_for_status()
            sid = r.headers["mcp-session-id"]
            h = {"Accept": ACCEPT, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
            r = await self.http.post("/mcp", json=INITIALIZED, headers=h)
            if r.status_code != 202:
                raise RuntimeError(f"initialized: {r.status_code}")
            self.sids.append(sid)

    async def close_one(self, sid: str) -> None:
        async with self.sem:
            h = {"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
            await self.http.delete("/mcp", headers=h)

    async def open_all(self, n: int) -> None:
        await asyncio.gather(*(self.open_one() for _ in range(n)))

    async def close_all(self) -> None:
        await asyncio.gather(*(self.close_one(s) for s in self.sids))


async def http_sessions(m: dict[str, Any], pid: int, url: str, n: int) -> int:
    """Open n sessions, close them, and again; returns how many the second round opened."""
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        s = Sessions(http)
        await s.open_all(n)
        m["sessions"] = len(s.sids)
        m["with_sessions_kib"] = await settle(pid)
        grown = m["with_sessions_kib"] - m["idle_kib"]
        m["per_session_kib"] = round(grown / max(len(s.sids), 1), 1)
        await s.close_all()
        m["after_sessions_closed_kib"] = await settle(pid)
        # A second round: memory the first round kept is reused, not added to, if nothing leaks.
        s.sids.clear()
        await s.open_all(n)
        await s.close_all()
        m["after_second_round_kib"] = await settle(pid)
        m["second_round_growth_kib"] = m["after_second_round_kib"] - m["after_sessions_closed_kib"]
        return len(s.sids)


async def open_sse(host: str, port: int, writers: list[asyncio.StreamWriter]) -> None:
    """One SSE stream on a raw socket: read its endpoint event, then just stay open."""
    reader, writer = await asyncio.open_connection(host, port)
    head = f"GET /sse HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
    writer.write(head.encode())
    await writer.drain()
    buf = b""
    while b"event: endpoint" not in buf or not buf.endswith(b"\r\n\r\n"):
        chunk = await asyncio.wait_for(reader.read(4096), 10)
        if not chunk:
            raise RuntimeError("SSE stream closed early")
        buf += chunk
    writers.append(writer)


async def sse_streams(m: dict[str, Any], pid: int, port: int, count: int) -> int:
    """Hold `count` SSE streams open, then close them all; returns how many opened."""
    host = "127.0.0.1"
    writers: list[asyncio.StreamWriter] = []
    sem = asyncio.Semaphore(32)

    async def guarded() -> None:
        async with sem:
            await open_sse(host, port, writers)

    try:
        await asyncio.gather(*(guarded() for _ in range(count)))
        m["sse_streams"] = len(writers)
        m["with_sse_kib"] = await settle(pid)
        grown = m["with_sse_kib"] - m["after_second_round_kib"]
        m["per_sse_kib"] = round(grown / len(writers), 1)
    finally:
        for w in writers:
            w.close()
        for w in writers:
            with suppress(Exception):
                await w.wait_closed()
    return len(writers)


def add_rows(b: Bench, m: dict[str, Any], sessions: int, streams: int) -> None:
    for key, label, value, unit in [
        ("mem_idle", "main.py RSS idle", m["idle_kib"], ""),
        ("mem_sessions", f"RSS with {sessions} Streamable HTTP sessions", m["with_sessions_kib"],
         f"{m['per_session_kib']} KiB/session"),
        ("mem_sessions_closed", "RSS after the sessions closed",
         m["after_sessions_closed_kib"], ""),
        ("mem_second_round", f"RSS after {sessions} more opened and closed",
         m["after_second_round_kib"], f"{m['second_round_growth_kib']:+} KiB vs first close"),
        ("mem_sse", f"RSS with {streams} open SSE streams", m["with_sse_kib"],
         f"{m['per_sse_kib']} KiB/stream"),
        ("mem_after", "RSS after all closed", m["after_sse_closed_kib"],
         f"{m['after_close_vs_idle_pct']:+}% vs idle"),
    ]:  # fmt: skip
        b.add(Row(key, label, note=f"{value / 1024:.1f} MiB {unit}".rstrip()))
