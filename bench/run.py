"""Benchmarks: the cost of every layer of product-mcp, side by side, in one run.

    uv run python bench/run.py            # full run (< 5 min), writes bench/results/latest.json
    uv run python bench/run.py --smoke    # tiny N, same rows and checks (what the tests run)

Everything runs on loopback against real processes on free ports (api.py, main.py in its
default, --json-response and --stateless modes, web.py with a zero-latency scripted LLM,
launch.py for cold start). Absolute times on a small machine are noisy, so every target is a
ratio to the direct API call measured in the same run: p50 and p95 over many calls after a
warm-up. Server CPU per call is read from /proc for each process involved.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import httpx2  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.sse import sse_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from bench.catalog import fill  # noqa: E402
from db import Shop, make_engine  # noqa: E402
from tests.servers import Service, free_port, start, wait_http  # noqa: E402

LLM_MESSAGE = "bench: what do you sell?"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
ACCEPT = "application/json, text/event-stream"
SEARCH_QUERIES = [
    "wireless earbuds",
    "smart watch",
    "laptop 16GB RAM",
    "noise cancellation headphones",
    "power bank fast charging",
    "4K camera",
    "mechanical keyboard",
    "waterproof speaker",
]
PREFERENCES = [
    ("lightweight laptop for travel", 1500.0),
    ("wireless earbuds with noise cancellation", 200.0),
    ("a gift for a runner", 100.0),
    ("4K monitor for a designer", 800.0),
    ("something to charge my phone fast", 50.0),
    ("drone with a good camera", 1000.0),
]


@dataclass(frozen=True)
class Sizes:
    """How much of everything; `smoke` keeps the same shape with tiny numbers."""

    products: int
    warmup: int
    calls: int
    per_connection_calls: int
    throughput_seconds: float
    sessions: tuple[int, ...]
    purchase_attempts: int
    search_calls: int
    chat_turns: int
    mem_sessions: int
    mem_sse: int
    cold_starts: int


FULL = Sizes(
    products=100_000,
    warmup=50,
    calls=400,
    per_connection_calls=40,
    throughput_seconds=4.0,
    sessions=(1, 8, 64),
    purchase_attempts=2_000,
    search_calls=120,
    chat_turns=60,
    mem_sessions=1_000,
    mem_sse=500,
    cold_starts=3,
)
SMOKE = Sizes(
    products=2_000,
    warmup=3,
    calls=15,
    per_connection_calls=3,
    throughput_seconds=0.5,
    sessions=(1, 8, 64),
    purchase_attempts=96,
    search_calls=8,
    chat_turns=3,
    mem_sessions=40,
    mem_sse=20,
    cold_starts=1,
)


# ---------------------------------------------------------------------------- measuring


def pct(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of samples in seconds, returned in ms."""
    s = sorted(samples)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k] * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB


@dataclass
class Row:
    """One line of the table (and one object in the JSON)."""

    key: str
    label: str
    n: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    per_s: float | None = None
    x_direct: float | None = None
    cpu_ms: dict[str, float] = field(default_factory=dict)
    note: str = ""


class Bench:
    def __init__(self, sizes: Sizes, smoke: bool) -> None:
        self.sizes = sizes
        self.smoke = smoke
        self.rows: list[Row] = []
        self.checks: dict[str, Any] = {}
        self.memory: dict[str, Any] = {}
        self.cold: dict[str, Any] = {}
        self.procs: dict[str, Service] = {}
        self.direct_p50: float | None = None

    def add(self, row: Row) -> Row:
        sequential = row.key != "direct_1" and not row.key.startswith(("purchases", "mcp_sessions"))
        if self.direct_p50 and row.p50_ms is not None and sequential and row.key != "direct_8":
            row.x_direct = round(row.p50_ms / self.direct_p50, 2)
        self.rows.append(row)
        print(f"  {format_row(row)}", flush=True)
        return row

    def row(self, key: str) -> Row:
        return next(r for r in self.rows if r.key == key)

    @contextmanager
    def cpu(self, row_cpu: dict[str, float], names: list[str], calls: int) -> Iterator[None]:
        """Record each named server's CPU milliseconds per call over the block."""
        before = {n: cpu_seconds(self.procs[n].proc.pid) for n in names}
        yield
        for n in names:
            used = cpu_seconds(self.procs[n].proc.pid) - before[n]
            row_cpu[n] = round(used * 1000 / max(calls, 1), 2)

    async def latency(
        self,
        key: str,
        label: str,
        call: Callable[[], Awaitable[Any]],
        servers: list[str],
        *,
        n: int | None = None,
        warmup: int | None = None,
        note: str = "",
    ) -> Row:
        """Sequential calls: warm up, then time each; p50/p95 and server CPU per call."""
        n = n or self.sizes.calls
        for _ in range(self.sizes.warmup if warmup is None else warmup):
            await call()
        row = Row(key, label, n=n, note=note)
        samples: list[float] = []
        with self.cpu(row.cpu_ms, servers, n):
            t_all = time.perf_counter()
            for _ in range(n):
                t = time.perf_counter()
                await call()
                samples.append(time.perf_counter() - t)
            elapsed = time.perf_counter() - t_all
        row.p50_ms, row.p95_ms = round(pct(samples, 50), 2), round(pct(samples, 95), 2)
        row.per_s = round(n / elapsed, 1)
        return self.add(row)

    async def interleaved(
        self,
        specs: list[tuple[str, str, Callable[[], Awaitable[Any]], list[str], str]],
        rounds: int = 8,
    ) -> list[Row]:
        """Like `latency` for several paths at once, taking turns in rounds, so a change of
        background load on the machine hits every path alike and their ratios stay fair."""
        n = self.sizes.calls
        per_round = max(1, n // rounds)
        for _, _, call, _, _ in specs:
            for _ in range(self.sizes.warmup):
                await call()
        samples: dict[str, list[float]] = {key: [] for key, *_ in specs}
        cpu: dict[str, dict[str, float]] = {key: {} for key, *_ in specs}
        busy: dict[str, float] = dict.fromkeys(samples, 0.0)
        for _ in range(rounds):
            for key, _, call, servers, _ in specs:
                before = {s: cpu_seconds(self.procs[s].proc.pid) for s in servers}
                t_all = time.perf_counter()
                for _ in range(per_round):
                    t = time.perf_counter()
                    await call()
                    samples[key].append(time.perf_counter() - t)
                busy[key] += time.perf_counter() - t_all
                for s in servers:
                    used = cpu_seconds(self.procs[s].proc.pid) - before[s]
                    cpu[key][s] = cpu[key].get(s, 0.0) + used
        rows = []
        for key, label, _, servers, note in specs:
            done = len(samples[key])
            row = Row(key, label, n=done, note=note)
            row.cpu_ms = {s: round(cpu[key][s] * 1000 / done, 2) for s in servers}
            row.p50_ms = round(pct(samples[key], 50), 2)
            row.p95_ms = round(pct(samples[key], 95), 2)
            row.per_s = round(done / busy[key], 1)
            if key == "direct_1":
                self.direct_p50 = row.p50_ms
            rows.append(self.add(row))
        return rows

    async def throughput(
        self,
        key: str,
        label: str,
        workers: list[Callable[[], Awaitable[Any]]],
        servers: list[str],
        note: str = "",
    ) -> Row:
        """Each worker calls in a loop for a fixed time; calls/s over all of them."""
        seconds = self.sizes.throughput_seconds
        for w in workers:  # warm every connection
            await w()
        count = 0
        samples: list[float] = []
        stop = time.perf_counter() + seconds
        row = Row(key, label, note=note)
        client_cpu = time.process_time()

        async def loop(w: Callable[[], Awaitable[Any]]) -> None:
            nonlocal count
            while time.perf_counter() < stop:
                t = time.perf_counter()
                await w()
                samples.append(time.perf_counter() - t)
                count += 1

        with self.cpu(row.cpu_ms, servers, 1):
            t0 = time.perf_counter()
            await asyncio.gather(*(loop(w) for w in workers))
            elapsed = time.perf_counter() - t0
        for name in servers:  # CPU per call, and how busy each process was
            row.cpu_ms[name] = round(row.cpu_ms[name] / max(count, 1), 2)
        row.cpu_ms["bench-client"] = round(
            (time.process_time() - client_cpu) * 1000 / max(count, 1), 2
        )
        row.n = count
        row.per_s = round(count / elapsed, 1)
        row.p50_ms, row.p95_ms = round(pct(samples, 50), 2), round(pct(samples, 95), 2)
        return self.add(row)


def format_row(r: Row) -> str:
    def f(v: float | None, spec: str = ".2f") -> str:
        return "-" if v is None else format(v, spec)

    cpu = " ".join(f"{k}={v:g}" for k, v in r.cpu_ms.items())
    return (
        f"{r.label:<46} {r.n:>6} {f(r.p50_ms):>8} {f(r.p95_ms):>8} {f(r.per_s, '.0f'):>7} "
        f"{f(r.x_direct):>7}  {cpu}  {r.note}"
    ).rstrip()


HEADER = (
    f"{'path':<46} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'/s':>7} {'x direct':>7}  "
    "server CPU ms/call  notes"
)


# ---------------------------------------------------------------------------- MCP clients


@asynccontextmanager
async def mcp_client(kind: str, base: str) -> Any:
    """kind: legacy (2025-11-25 session), modern (2026-07-28, no session) or sse."""
    if kind == "sse":  # SSE clients (the tutorial's) speak the handshake era
        async with Client(sse_client(f"{base}/sse"), mode="legacy") as client:
            yield client
        return
    async with httpx2.AsyncClient(timeout=30) as http:
        transport = streamable_http_client(f"{base}/mcp", http_client=http)
        mode = "legacy" if kind == "legacy" else "auto"
        async with Client(transport, mode=mode) as client:
            yield client


async def tool(client: Client, name: str, args: dict[str, Any] | None = None) -> Any:
    result = await client.call_tool(name, args or {})
    if result.is_error:
        raise RuntimeError(f"{name} failed: {result.content}")
    return result


# ---------------------------------------------------------------------------- setup


def make_db(path: Path, products: int, extra: list[tuple[str, int, str, int]]) -> None:
    engine = make_engine(f"sqlite:///{path}", sqlite_synchronous="NORMAL")
    shop = Shop(engine)
    if products:
        fill(shop, products)
    else:
        shop.init()
    if extra:
        shop.add_products(extra)
    engine.dispose()


def start_many(specs: dict[str, tuple[list[str], int, dict[str, str], str | None]]) -> dict:
    """Start several services at once (their start-up overlaps), then wait for each."""
    out: dict[str, Service] = {}
    for name, (args, port, env, _health) in specs.items():
        out[name] = start(args, port=port, env=env, health_path=None)
    try:
        for name, (_, _, _, health) in specs.items():
            if health is not None:
                wait_http(out[name].url + health, out[name].proc, timeout=60)
    except Exception:
        for svc in out.values():
            svc.stop()
        raise
    return out


# ---------------------------------------------------------------------------- the run


async def run(b: Bench, work: Path) -> None:
    s = b.sizes
    print(f"setting up in {work} ...", flush=True)

    # 8. cold start first, while nothing else runs
    cold_start(b, work)

    t = time.perf_counter()
    seed_db, big_db = work / "seed.db", work / "big.db"
    stock = s.purchase_attempts * 3 // 4
    widget = [("Bench Widget", 100, "the purchase benchmark's product", stock)]
    make_db(seed_db, 0, widget)
    normal_db = work / "normal.db"
    make_db(normal_db, 0, widget)
    make_db(big_db, s.products, [])
    print(f"databases ready in {time.perf_counter() - t:.1f}s ({s.products} products)")

    names = ("api", "normal", "big", "mcp", "json", "stateless", "mcpbig", "mem")
    ports = {n: free_port() for n in names}
    ports |= {"web": free_port(), "llm": free_port()}
    api_url = f"http://127.0.0.1:{ports['api']}"
    big_url = f"http://127.0.0.1:{ports['big']}"
    mcp_cfg = work / "mcp.json"
    mcp_cfg.write_text(
        json.dumps({"mcpServers": {"product-mcp": {"url": f"http://127.0.0.1:{ports['mcp']}/mcp"}}})
    )

    def api(port: int, db: Path, sync: str = "FULL") -> tuple[list[str], int, dict[str, str], str]:
        args = ["api.py", "--host", "127.0.0.1", "--port", str(port)]
        env = {"DATABASE_URL": f"sqlite:///{db}", "SQLITE_SYNCHRONOUS": sync}
        return args, port, env, "/healthz"

    def mcp(port: int, upstream: str, *flags: str) -> tuple[list[str], int, dict[str, str], str]:
        args = ["main.py", "--host", "127.0.0.1", "--port", str(port), *flags]
        return args, port, {"PRODUCT_API_URL": f"{upstream}/api"}, "/healthz"

    t = time.perf_counter()
    b.procs = start_many(
        {
            "api": api(ports["api"], seed_db),
            "normal": api(ports["normal"], normal_db, "NORMAL"),
            "big": api(ports["big"], big_db),
            "llm": (
                ["bench/llm.py", "--port", str(ports["llm"])],
                ports["llm"],
                {},
                "/v1/chat/completions",
            ),
        }
    )
    b.procs |= start_many(
        {
            "mcp": mcp(ports["mcp"], api_url),
            "json": mcp(ports["json"], api_url, "--json-response"),
            "stateless": mcp(ports["stateless"], api_url, "--stateless"),
            "mcpbig": mcp(ports["mcpbig"], big_url),
            "mem": mcp(ports["mem"], api_url),
        }
    )
    b.procs |= start_many(
        {
            "web": (
                ["web.py", "--host", "127.0.0.1", "--port", str(ports["web"])],
                ports["web"],
                {
                    "MCP_CONFIG_PATH": str(mcp_cfg),
                    "OPENAI_API_KEY": "bench",
                    "OPENAI_API_BASE": f"http://127.0.0.1:{ports['llm']}/v1",
                    "LLM_MODEL": "fake-model",
                    "TOOL_APPROVAL": "auto",
                    "CORS_ORIGINS": "",
                    "LLM_MAX_RETRIES": "0",
                },
                "/healthz",
            )
        }
    )
    await wait_web_connected(b.procs["web"].url)
    print(f"services up in {time.perf_counter() - t:.1f}s\n", flush=True)
    print(HEADER)

    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=60, limits=limits))
        await layers(b, http, api_url)
        await throughput(b, api_url)
        await purchases(b, http, "api", seed_db, stock)
        await purchases(b, http, "normal", normal_db, stock)
        await search(b, http, big_url)
        await memory(b)
    # Lines the table would not show: the consistency checks.
    for k, v in b.checks.items():
        print(f"  check {k}: {v}")


async def wait_web_connected(url: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as c:
        while time.monotonic() < deadline:
            body = (await c.get(f"{url}/healthz")).json()
            if body["servers"]["connected"] >= 1:
                return
            await asyncio.sleep(0.1)
    raise TimeoutError("web.py never connected to main.py")


async def layers(b: Bench, http: httpx.AsyncClient, api_url: str) -> None:
    """1-3: one call through each layer, sequentially (the paths take turns, see interleaved)."""
    products_url = f"{api_url}/api/products"
    params = {"limit": 50, "offset": 0}  # exactly what the get_products tool asks the API

    async def direct() -> None:
        r = await http.get(products_url, params=params)
        r.raise_for_status()

    url = {k: b.procs[k].url for k in ("mcp", "json", "stateless", "web", "llm")}
    specs: list[tuple[str, str, Callable[[], Awaitable[Any]], list[str], str]] = [
        ("direct_1", "direct GET /api/products (1 client)", direct, ["api"], "")
    ]
    variants = [
        ("mcp_modern", "MCP 2026-07-28 (no session), /mcp", "modern", "mcp"),
        ("mcp_legacy", "MCP 2025-11-25 session, /mcp (SSE replies)", "legacy", "mcp"),
        ("mcp_sse", "MCP over SSE transport, /sse", "sse", "mcp"),
        ("mcp_json_legacy", "MCP session, --json-response", "legacy", "json"),
        ("mcp_json_modern", "MCP 2026-07-28, --json-response", "modern", "json"),
        ("mcp_stateless", "MCP --stateless (handshake client)", "legacy", "stateless"),
    ]
    body = {"server": "product-mcp", "name": "get_products", "args": {}}

    async def call_tool() -> None:
        r = await http.post(f"{url['web']}/api/call-tool", json=body)
        r.raise_for_status()
        if r.json()["isError"]:
            raise RuntimeError(r.text)

    async with AsyncExitStack() as stack:
        for key, label, kind, server in variants:
            client = await stack.enter_async_context(mcp_client(kind, url[server]))
            call = functools.partial(tool, client, "get_products")
            note = f"protocol {client.protocol_version}"
            specs.append((key, label, call, [server, "api"], note))
        web = ["web", "mcp", "api"]
        specs.append(("web_call_tool", "web.py POST /api/call-tool", call_tool, web, ""))
        await b.interleaved(specs)

    async def new_sse_session() -> None:  # the tutorial's web client: connect per call
        async with mcp_client("sse", url["mcp"]) as client:
            await tool(client, "get_products")

    await b.latency(
        "mcp_sse_per_call",
        "MCP new SSE connection per call (tutorial)",
        new_sse_session,
        ["mcp", "api"],
        n=b.sizes.per_connection_calls,
        warmup=2,
    )

    # 3b. a chat turn: LLM asks for get_products, then answers; LLM time measured alone
    chat = {"message": LLM_MESSAGE, "history": []}

    async def chat_turn() -> None:
        r = await http.post(f"{url['web']}/api/chat", json=chat)
        r.raise_for_status()
        if len(r.json().get("toolCalls", [])) != 1:
            raise RuntimeError(f"chat turn did not call the tool: {r.text[:300]}")

    turn = await b.latency(
        "chat_turn",
        "web.py POST /api/chat (1 tool round)",
        chat_turn,
        ["web", "mcp", "api", "llm"],
        n=b.sizes.chat_turns,
        warmup=3,
    )
    llm_ms = await llm_alone(b, http, url["llm"], url["web"])
    turn.note = (
        f"2 LLM requests alone {llm_ms:.2f} ms; web overhead p50 {turn.p50_ms - llm_ms:.2f} ms"
    )
    b.checks["chat_web_overhead_p50_ms"] = round(turn.p50_ms - llm_ms, 2)  # type: ignore[operator]


async def llm_alone(b: Bench, http: httpx.AsyncClient, llm_url: str, web_url: str) -> float:
    """p50 of the turn's two streamed LLM requests sent straight to the fake, summed."""
    tools = (await http.get(f"{web_url}/api/tools")).json()["tools"]
    functions = [
        {
            "type": "function",
            "function": {
                "name": t["function"],
                "description": f"[{t['server']}] {t['description']}",
                "parameters": t["input_schema"],
            },
        }
        for t in tools
    ]
    products = (await http.get(f"{b.procs['api'].url}/api/products?limit=50")).text
    system = {"role": "system", "content": "You are a shopping assistant." * 20}
    user = {"role": "user", "content": LLM_MESSAGE}
    first = {"model": "fake-model", "stream": True, "messages": [system, user], "tools": functions}
    call = {"id": "c1", "type": "function", "function": {"name": "get_products", "arguments": ""}}
    second = {
        **first,
        "messages": [
            system,
            user,
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": products},
        ],
    }
    totals: list[float] = []
    for i in range(b.sizes.chat_turns + 3):
        t = time.perf_counter()
        for body in (first, second):
            async with http.stream("POST", f"{llm_url}/chat/completions", json=body) as r:
                async for _ in r.aiter_bytes():
                    pass
        if i >= 3:
            totals.append(time.perf_counter() - t)
    return pct(totals, 50)


async def throughput(b: Bench, api_url: str) -> None:
    """4: calls/s with 1, 8, 64 concurrent MCP sessions against 8 direct clients."""
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(httpx.AsyncClient(timeout=60)) for _ in range(8)]

        def direct(c: httpx.AsyncClient) -> Callable[[], Awaitable[Any]]:
            async def call() -> None:
                r = await c.get(f"{api_url}/api/products", params={"limit": 50, "offset": 0})
                r.raise_for_status()

            return call

        await b.throughput(
            "direct_8", "direct GET /api/products, 8 clients", [direct(c) for c in clients], ["api"]
        )
    for n in b.sizes.sessions:
        async with AsyncExitStack() as stack:
            sessions = []
            for _ in range(n):
                sessions.append(
                    await stack.enter_async_context(mcp_client("legacy", b.procs["mcp"].url))
                )
            await b.throughput(
                f"mcp_sessions_{n}",
                f"MCP tools/call, {n} concurrent sessions",
                [lambda c=c: tool(c, "get_products") for c in sessions],
                ["mcp", "api"],
            )


async def purchases(b: Bench, http: httpx.AsyncClient, server: str, db: Path, stock: int) -> None:
    """5: 32 clients buy one unit each until attempts run out; stock < attempts."""
    api_url = b.procs[server].url
    attempts = b.sizes.purchase_attempts
    product_id = 5  # the bench product, right after the four seed products
    queue = iter(range(attempts))
    ok: list[int] = []
    refused = 0
    other: list[str] = []
    samples: list[float] = []

    async def client(k: int) -> None:
        nonlocal refused
        for i in queue:
            t = time.perf_counter()
            r = await http.post(
                f"{api_url}/api/purchase",
                json={
                    "customerName": f"bench-{k}",
                    "items": [{"productId": product_id, "quantity": 1}],
                },
                headers={"Idempotency-Key": f"bench-{i}"},
            )
            samples.append(time.perf_counter() - t)
            if r.status_code == 200:
                ok.append(r.json()["id"])
            elif r.status_code == 400 and "Insufficient stock" in r.text:
                refused += 1
            else:
                other.append(f"{r.status_code} {r.text[:100]}")

    normal = server == "normal"
    row = Row(
        "purchases_32_normal" if normal else "purchases_32",
        "POST /api/purchase, 32 clients" + (", SQLITE_SYNCHRONOUS=NORMAL" if normal else ""),
    )
    client_cpu = time.process_time()
    with b.cpu(row.cpu_ms, [server], attempts):
        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(32)))
        elapsed = time.perf_counter() - t0
    row.cpu_ms["bench-client"] = round((time.process_time() - client_cpu) * 1000 / attempts, 2)
    with sqlite3.connect(db) as conn:
        left = conn.execute(
            "SELECT quantity FROM inventory WHERE product_id = ?", (product_id,)
        ).fetchone()[0]
        rows = conn.execute(
            "SELECT COUNT(DISTINCT o.id), COALESCE(SUM(i.quantity), 0) FROM orders o "
            "JOIN order_items i ON i.order_id = o.id WHERE i.product_id = ?",
            (product_id,),
        ).fetchone()
    row.n = attempts
    row.per_s = round(len(ok) / elapsed, 1)
    row.p50_ms, row.p95_ms = round(pct(samples, 50), 2), round(pct(samples, 95), 2)
    row.note = f"{len(ok)} bought, {refused} refused (stock {stock})"
    b.add(row)
    b.checks["purchase_normal" if normal else "purchase"] = {
        "attempts": attempts,
        "initial_stock": stock,
        "succeeded": len(ok),
        "refused_insufficient_stock": refused,
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


async def search(b: Bench, http: httpx.AsyncClient, big_url: str) -> None:
    """6: search and recommendations on the generated catalog, direct and as MCP tools."""
    n = b.sizes.search_calls
    counter = iter(range(10**9))

    def q() -> str:
        return SEARCH_QUERIES[next(counter) % len(SEARCH_QUERIES)]

    def pref() -> tuple[str, float]:
        return PREFERENCES[next(counter) % len(PREFERENCES)]

    async def direct_search() -> None:
        r = await http.get(f"{big_url}/api/products", params={"q": q(), "limit": 10})
        r.raise_for_status()

    async def direct_rec() -> None:
        text, budget = pref()
        r = await http.get(
            f"{big_url}/api/recommendations",
            params={"preferences": text, "budget": budget, "limit": 5},
        )
        r.raise_for_status()

    products = f"{b.sizes.products:,} products"
    await b.latency(
        "search_api", f"search GET /api/products?q=, {products}", direct_search, ["big"], n=n
    )
    await b.latency(
        "recommend_api", f"recommend GET /api/recommendations, {products}", direct_rec, ["big"], n=n
    )
    async with mcp_client("modern", b.procs["mcpbig"].url) as client:
        await b.latency(
            "search_mcp",
            "search_products tool (2026-07-28)",
            lambda: tool(client, "search_products", {"query": q(), "limit": 10}),
            ["mcpbig", "big"],
            n=n,
        )

        async def rec() -> None:
            text, budget = pref()
            await tool(
                client, "recommend_products", {"preferences": text, "budget": budget, "limit": 5}
            )

        await b.latency(
            "recommend_mcp", "recommend_products tool (2026-07-28)", rec, ["mcpbig", "big"], n=n
        )


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

    # Streamable HTTP sessions, opened and closed over raw HTTP (as a client would)
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "0"},
        },
    }
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    sids: list[str] = []
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        sem = asyncio.Semaphore(16)

        async def open_one() -> None:
            async with sem:
                r = await http.post("/mcp", json=init, headers={"Accept": ACCEPT})
                r.raise_for_status()
                sid = r.headers["mcp-session-id"]
                h = {"Accept": ACCEPT, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
                r = await http.post("/mcp", json=note, headers=h)
                if r.status_code != 202:
                    raise RuntimeError(f"initialized: {r.status_code}")
                sids.append(sid)

        async def close_one(sid: str) -> None:
            async with sem:
                h = {"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
                await http.delete("/mcp", headers=h)

        n = b.sizes.mem_sessions
        await asyncio.gather(*(open_one() for _ in range(n)))
        m["sessions"] = len(sids)
        m["with_sessions_kib"] = await settle(pid)
        m["per_session_kib"] = round((m["with_sessions_kib"] - idle) / max(len(sids), 1), 1)
        await asyncio.gather(*(close_one(s) for s in sids))
        m["after_sessions_closed_kib"] = await settle(pid)
        # A second round: memory the first round kept is reused, not added to, if nothing leaks.
        sids.clear()
        await asyncio.gather(*(open_one() for _ in range(n)))
        await asyncio.gather(*(close_one(s) for s in sids))
        m["after_second_round_kib"] = await settle(pid)
        m["second_round_growth_kib"] = m["after_second_round_kib"] - m["after_sessions_closed_kib"]

    # SSE streams: raw sockets, each reads its endpoint event and then just stays open
    host, port = "127.0.0.1", svc.port
    writers: list[asyncio.StreamWriter] = []

    async def open_sse() -> None:
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

    sem2 = asyncio.Semaphore(32)

    async def guarded() -> None:
        async with sem2:
            await open_sse()

    try:
        await asyncio.gather(*(guarded() for _ in range(b.sizes.mem_sse)))
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
    m["after_sse_closed_kib"] = await settle(pid, 5.0)
    m["after_close_vs_idle_pct"] = round((m["after_sse_closed_kib"] - idle) * 100 / idle, 1)
    b.memory = m
    for key, label, value, unit in [
        ("mem_idle", "main.py RSS idle", idle, ""),
        ("mem_sessions", f"RSS with {len(sids)} Streamable HTTP sessions", m["with_sessions_kib"],
         f"{m['per_session_kib']} KiB/session"),
        ("mem_sessions_closed", "RSS after the sessions closed",
         m["after_sessions_closed_kib"], ""),
        ("mem_second_round", f"RSS after {len(sids)} more opened and closed",
         m["after_second_round_kib"], f"{m['second_round_growth_kib']:+} KiB vs first close"),
        ("mem_sse", f"RSS with {len(writers)} open SSE streams", m["with_sse_kib"],
         f"{m['per_sse_kib']} KiB/stream"),
        ("mem_after", "RSS after all closed", m["after_sse_closed_kib"],
         f"{m['after_close_vs_idle_pct']:+}% vs idle"),
    ]:  # fmt: skip
        b.add(Row(key, label, note=f"{value / 1024:.1f} MiB {unit}".rstrip()))


def cold_start(b: Bench, work: Path) -> None:
    """8: seconds from `python launch.py` to all three services answering /healthz."""
    times: list[float] = []
    connected: list[float] = []
    for i in range(b.sizes.cold_starts):
        ports = [free_port() for _ in range(3)]
        db = work / f"cold-{i}.db"
        args = [
            sys.executable,
            "launch.py",
            "--api-port",
            str(ports[0]),
            "--mcp-port",
            str(ports[1]),
            "--web-port",
            str(ports[2]),
            "--database-url",
            f"sqlite:///{db}",
        ]
        env = {**os.environ, "NO_COLOR": "1", "OPENAI_API_KEY": "", "MCP_CONFIG_PATH": ""}
        env.pop("MCP_CONFIG_PATH")
        log = (work / f"cold-{i}.log").open("wb")
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            pending = {p: f"http://127.0.0.1:{p}/healthz" for p in ports}
            deadline = time.monotonic() + 60
            with httpx.Client(timeout=1) as c:
                while pending and time.monotonic() < deadline:
                    if proc.poll() is not None:
                        raise RuntimeError(f"launch.py exited {proc.returncode}; see {log.name}")
                    for p, u in list(pending.items()):
                        with suppress(httpx.HTTPError):
                            if c.get(u).status_code == 200:
                                del pending[p]
                    time.sleep(0.02)
                if pending:
                    raise TimeoutError(f"launch.py: {sorted(pending)} did not answer in 60 s")
                times.append(time.perf_counter() - t0)
                while time.monotonic() < deadline:
                    body = c.get(f"http://127.0.0.1:{ports[2]}/healthz").json()
                    if body["servers"]["connected"] >= 1:
                        connected.append(time.perf_counter() - t0)
                        break
                    time.sleep(0.02)
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
            log.close()
    b.cold = {
        "runs": [round(t, 2) for t in times],
        "all_answer_s": round(statistics.median(times), 2),
        "web_connected_s": round(statistics.median(connected), 2) if connected else None,
    }
    note = f"runs {b.cold['runs']}; web connected to MCP at {b.cold['web_connected_s']} s"
    row = Row("cold_start", "cold start: launch.py to all three /healthz", n=len(times), note=note)
    row.p50_ms = round(statistics.median(times) * 1000, 0)
    b.rows.append(row)
    print(f"cold start: {b.cold}", flush=True)


# ---------------------------------------------------------------------------- targets


def targets(b: Bench) -> list[dict[str, Any]]:
    r = {row.key: row for row in b.rows}
    d = b.direct_p50 or float("nan")
    out: list[dict[str, Any]] = []

    def target(name: str, goal: str, value: float | None, ok: bool | None, unit: str) -> None:
        out.append({"target": name, "goal": goal, "value": value, "unit": unit, "met": ok})

    def at_most(v: float | None, limit: float) -> bool:
        return v is not None and v <= limit

    def x(key: str) -> float | None:
        row = r.get(key)
        return None if row is None or row.p50_ms is None else round(row.p50_ms / d, 2)

    v = x("mcp_modern")
    target("MCP call, 2026-07-28, p50 / direct p50", "<= 3", v, v is not None and v <= 3, "x")
    v = x("mcp_legacy")
    target("MCP call, 2025-11-25 session, p50 / direct p50", "<= 4", v, at_most(v, 4), "x")
    v = x("web_call_tool")
    target("web.py /api/call-tool p50 / direct p50", "<= 4", v, v is not None and v <= 4, "x")
    direct8 = r["direct_8"].per_s if "direct_8" in r else None
    mcp8 = r["mcp_sessions_8"].per_s if "mcp_sessions_8" in r else None
    v = round(mcp8 * 100 / direct8, 1) if mcp8 and direct8 else None
    target("8-session MCP throughput / 8-client direct", ">= 40", v, v is not None and v >= 40, "%")
    p = b.checks.get("purchase", {})
    v = r["purchases_32"].per_s if "purchases_32" in r else None
    ok = v is not None and v >= 300 and p.get("oversold") == 0 and p.get("lost") == 0
    target("purchases/s, 32 clients, SQLite, 0 oversell, 0 lost", ">= 300", v, ok, "/s")
    for key, name in [
        ("search_api", "search p50 (API)"),
        ("recommend_api", "recommend p50 (API)"),
        ("search_mcp", "search_products p50 (MCP tool)"),
        ("recommend_mcp", "recommend_products p50 (MCP tool)"),
    ]:
        v = r[key].p50_ms if key in r else None
        target(f"{name}, {b.sizes.products:,} products", "<= 20", v, at_most(v, 20), "ms")
    m = b.memory
    v = m.get("per_session_kib")
    target("RSS per idle Streamable HTTP session", "<= 60", v, v is not None and v <= 60, "KiB")
    v = m.get("after_close_vs_idle_pct")
    target("RSS after close vs idle", "<= +10", v, v is not None and v <= 10, "%")
    return out


def markdown(b: Bench, tg: list[dict[str, Any]]) -> str:
    """The table and the targets as Markdown, for the README."""

    def f(v: float | None, spec: str = ".2f") -> str:
        return "" if v is None else format(v, spec)

    lines = [
        "| path | n | p50 ms | p95 ms | per s | × direct | server CPU ms/call | notes |",
        "|---|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in b.rows:
        cpu = ", ".join(f"{k} {v:g}" for k, v in r.cpu_ms.items())
        lines.append(
            f"| {r.label} | {r.n or ''} | {f(r.p50_ms)} | {f(r.p95_ms)} | {f(r.per_s, '.0f')} "
            f"| {f(r.x_direct)} | {cpu} | {r.note} |"
        )
    lines += ["", "| target | goal | measured | met |", "|---|---|---|---|"]
    for t in tg:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['target']} | {t['goal']} {t['unit']} | {t['value']} | {met} |")
    return "\n".join(lines) + "\n"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "load_before": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="product-mcp benchmarks")
    p.add_argument("--smoke", action="store_true", help="tiny N: checks the bench runs")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON result path (default bench/results/latest.json; none for --smoke)",
    )
    a = p.parse_args(argv)
    sizes = SMOKE if a.smoke else FULL
    out = a.out or (None if a.smoke else ROOT / "bench" / "results" / "latest.json")
    b = Bench(sizes, a.smoke)
    info = machine()
    print(f"machine: {info}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="product-mcp-bench-") as tmp:
        try:
            asyncio.run(run(b, Path(tmp)))
        finally:
            for svc in b.procs.values():
                svc.stop()
    elapsed = time.perf_counter() - t0
    tg = targets(b)
    info["load_after"] = os.getloadavg()[0]
    print("\n" + HEADER)
    for row in b.rows:
        print(format_row(row))
    print("\ntargets:")
    for t in tg:
        mark = {True: "met", False: "MISSED", None: "-"}[t["met"]]
        print(f"  {mark:<7} {t['target']}: {t['value']} {t['unit']} (goal {t['goal']})")
    print(f"\nwhole run: {elapsed:.0f} s")
    result = {
        "smoke": a.smoke,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(elapsed, 1),
        "machine": info,
        "sizes": sizes.__dict__,
        "rows": [r.__dict__ for r in b.rows],
        "targets": tg,
        "checks": b.checks,
        "memory": b.memory,
        "cold_start": b.cold,
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        out.with_suffix(".md").write_text(markdown(b, tg))
        print(f"wrote {out} and {out.with_suffix('.md').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
