"""Row 6: search and recommendations on the generated 100k-product catalogue, straight from
the API and as MCP tools, since these are the calls whose cost grows with the catalogue.

    uv run python -m bench.search [--smoke]    # these rows alone, SQLite and PostgreSQL

On PostgreSQL the work is in the server's processes, not api.py's: their CPU per call is
read too (column "postgres"), from the backends serving the benchmark's database.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import suppress
from pathlib import Path

import httpx
import psycopg
from sqlalchemy.engine import make_url

from bench.clients import mcp_client, tool
from bench.measure import Bench, run_alone
from bench.procs import api_spec, cpu_seconds, make_db, make_shop, mcp_spec, start_many
from bench.stats import format_row
from tests.servers import free_port

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


class Picker:
    """The next query or preference, from one counter shared by all four rows."""

    def __init__(self) -> None:
        self.counter = iter(range(10**9))

    def q(self) -> str:
        return SEARCH_QUERIES[next(self.counter) % len(SEARCH_QUERIES)]

    def pref(self) -> tuple[str, float]:
        return PREFERENCES[next(self.counter) % len(PREFERENCES)]


async def search(b: Bench, http: httpx.AsyncClient, big_url: str) -> None:
    """6: search and recommendations on the generated catalog, direct and as MCP tools."""
    pick = Picker()
    await search_api(b, http, big_url, pick)
    await search_mcp(b, pick)


async def search_api(
    b: Bench,
    http: httpx.AsyncClient,
    big_url: str,
    pick: Picker,
    server: str = "big",
    suffix: str = "",
    where: str = "",
    pg_url: str | None = None,
) -> None:
    """The two API rows on `server` (keys search_api, recommend_api + `suffix`); with
    `pg_url`, the PostgreSQL backends' CPU per call for that database as well."""
    n = b.sizes.search_calls

    async def direct_search() -> None:
        r = await http.get(f"{big_url}/api/products", params={"q": pick.q(), "limit": 10})
        r.raise_for_status()

    async def direct_rec() -> None:
        text, budget = pick.pref()
        r = await http.get(
            f"{big_url}/api/recommendations",
            params={"preferences": text, "budget": budget, "limit": 5},
        )
        r.raise_for_status()

    products = f"{b.sizes.products:,} products{where}"
    for key, label, call in [
        ("search_api", f"search GET /api/products?q=, {products}", direct_search),
        ("recommend_api", f"recommend GET /api/recommendations, {products}", direct_rec),
    ]:
        for _ in range(b.sizes.warmup):  # here, so the backends' CPU below is the timed calls'
            await call()
        before = _postgres_cpu(pg_url) if pg_url else 0.0
        row = await b.latency(key + suffix, label, call, [server], n=n, warmup=0)
        if pg_url:
            row.cpu_ms["postgres"] = round((_postgres_cpu(pg_url) - before) * 1000 / n, 2)
            print(f"  {format_row(row)}  (with the PostgreSQL backends' CPU)", flush=True)


def _postgres_cpu(url: str) -> float:
    """CPU seconds used so far by the server processes serving queries on `url`'s database
    (client backends and their parallel workers; not autovacuum, which a freshly written
    catalogue sets off)."""
    database = make_url(url).database
    admin = make_url(url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s"
            " AND backend_type IN ('client backend', 'parallel worker')",
            (database,),
        ).fetchall()
    total = 0.0
    for (pid,) in pids:
        with suppress(OSError):  # ended meanwhile, or the server is on another host
            total += cpu_seconds(pid)
    return total


async def search_mcp(b: Bench, pick: Picker) -> None:
    n = b.sizes.search_calls
    async with mcp_client("modern", b.procs["mcpbig"].url) as client:
        await b.latency(
            "search_mcp",
            "search_products tool (2026-07-28)",
            lambda: tool(client, "search_products", {"query": pick.q(), "limit": 10}),
            ["mcpbig", "big"],
            n=n,
        )

        async def rec() -> None:
            text, budget = pick.pref()
            await tool(
                client, "recommend_products", {"preferences": text, "budget": budget, "limit": 5}
            )

        await b.latency(
            "recommend_mcp", "recommend_products tool (2026-07-28)", rec, ["mcpbig", "big"], n=n
        )


async def alone(b: Bench) -> None:
    """These rows by themselves: the big catalogue in SQLite (API and MCP rows) and, where
    the server is reachable, in PostgreSQL (API rows), each written just before."""
    from bench.scale import POSTGRES, pg_database  # bench.scale imports this module

    with tempfile.TemporaryDirectory(prefix="product-mcp-search-") as tmp:
        t = time.perf_counter()
        big = Path(tmp) / "big.db"
        make_db(big, b.sizes.products, [])
        ports = {name: free_port() for name in ("big", "mcpbig", "pgbig")}
        b.procs |= start_many({"big": api_spec(ports["big"], big)})
        big_url = b.procs["big"].url
        b.procs |= start_many({"mcpbig": mcp_spec(ports["mcpbig"], big_url)})
        print(f"  SQLite catalogue and services ready in {time.perf_counter() - t:.1f}s")
        async with httpx.AsyncClient(timeout=60) as http:
            await search(b, http, big_url)
            try:
                psycopg.connect(f"{POSTGRES}/postgres", connect_timeout=3).close()
            except psycopg.Error as e:
                print(f"  (PostgreSQL rows skipped: {e})")
                return
            with pg_database("search") as pg:
                make_shop(pg, b.sizes.products, [])
                args = ["api.py", "--host", "127.0.0.1", "--port", str(ports["pgbig"])]
                spec = (args, ports["pgbig"], {"DATABASE_URL": pg}, "/healthz")
                b.procs |= start_many({"pgbig": spec})
                url = b.procs["pgbig"].url
                await search_api(b, http, url, Picker(), "pgbig", "_pg", ", PG", pg_url=pg)
                b.procs.pop("pgbig").stop()  # before its database is dropped


def main() -> None:
    run_alone(alone, "the search and recommendation rows of the bench alone")


if __name__ == "__main__":
    main()
