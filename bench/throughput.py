"""Row 4: calls per second with 1, 8 and 64 concurrent MCP sessions, against 8 direct clients,
to show how much of the API's throughput survives the MCP layer under load."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx

from bench.clients import SSL_CONTEXT, direct_products, mcp_client, tool
from bench.measure import Bench


async def throughput(b: Bench, api_url: str) -> None:
    """4: calls/s with 1, 8, 64 concurrent MCP sessions against 8 direct clients."""
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(timeout=60, verify=SSL_CONTEXT))
            for _ in range(8)
        ]
        await b.throughput(
            "direct_8",
            "direct GET /api/products, 8 clients",
            [direct_products(c, api_url) for c in clients],
            ["api"],
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
