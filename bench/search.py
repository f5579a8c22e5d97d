"""Row 6: search and recommendations on the generated 100k-product catalogue, straight from
the API and as MCP tools, since these are the calls whose cost grows with the catalogue."""

from __future__ import annotations

import httpx

from bench.clients import mcp_client, tool
from bench.measure import Bench

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
) -> None:
    """The two API rows on `server` (keys search_api, recommend_api + `suffix`)."""
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
    await b.latency(
        f"search_api{suffix}",
        f"search GET /api/products?q=, {products}",
        direct_search,
        [server],
        n=n,
    )
    await b.latency(
        f"recommend_api{suffix}",
        f"recommend GET /api/recommendations, {products}",
        direct_rec,
        [server],
        n=n,
    )


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
