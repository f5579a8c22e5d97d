"""The bench's clients: an MCP client of each kind, one tool call, one direct API call.

Shared by every module that calls through MCP or straight to the API, so each path is
called the same way wherever it is measured.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from bench.measure import Call

# The clients the bench opens up front share one SSL context. They speak plain HTTP on
# loopback, yet httpx builds a context from the CA bundle for every new client: 20-45 ms of
# CPU each, 9.6 s of the bench process's CPU for the ~210 clients of a smoke run's core half.
# (Not the SSE clients: the tutorial's client builds one per call, as its row measures.)
SSL_CONTEXT = httpx.create_ssl_context()


@asynccontextmanager
async def mcp_client(kind: str, base: str) -> AsyncIterator[Any]:
    """kind: legacy (2025-11-25 session), modern (2026-07-28, no session) or sse."""
    if kind == "sse":  # SSE clients (the tutorial's) speak the handshake era
        async with Client(sse_client(f"{base}/sse"), mode="legacy") as client:
            yield client
        return
    async with httpx2.AsyncClient(timeout=30, verify=SSL_CONTEXT) as http:
        transport = streamable_http_client(f"{base}/mcp", http_client=http)
        mode = "legacy" if kind == "legacy" else "auto"
        async with Client(transport, mode=mode) as client:
            yield client


async def tool(client: Client, name: str, args: dict[str, Any] | None = None) -> Any:
    result = await client.call_tool(name, args or {})
    if result.is_error:
        raise RuntimeError(f"{name} failed: {result.content}")
    return result


def direct_products(http: httpx.AsyncClient, api_url: str) -> Call:
    """GET /api/products straight from the API, exactly what the get_products tool asks it."""
    products_url = f"{api_url}/api/products"
    params = {"limit": 50, "offset": 0}

    async def call() -> None:
        r = await http.get(products_url, params=params)
        r.raise_for_status()

    return call
