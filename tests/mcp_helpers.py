"""Shared bits of the MCP server tests: connect the SDK's own client over each transport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

# "modern": protocol 2026-07-28 (per-request envelope, what `Client(url)` negotiates now);
# "legacy": the initialize handshake with a session; "sse": the tutorial's transport.
Kind = Literal["modern", "legacy", "sse"]
KINDS: list[Kind] = ["modern", "legacy", "sse"]

SEED_TOOLS = {
    "get_products": "Retrieve a list of all products.",
    "get_inventory": "Retrieve inventory list, including product details.",
    "get_orders": "Retrieve order list, sorted by date in descending order.",
    "create_purchase": "Create a new purchase order.",
}
NEW_TOOLS = ["get_product", "search_products", "recommend_products", "analyze_sales"]
READ_ONLY = [t for t in [*SEED_TOOLS, *NEW_TOOLS] if t != "create_purchase"]


@asynccontextmanager
async def connect(
    kind: Kind, base_url: str, headers: dict[str, str] | None = None, **kw: Any
) -> AsyncIterator[Client]:
    """An initialized `mcp.Client` to main.py at base_url over the given transport."""
    if kind == "sse":
        async with Client(sse_client(f"{base_url}/sse", headers=headers), **kw) as client:
            yield client
        return
    mode = "legacy" if kind == "legacy" else "auto"
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(f"{base_url}/mcp", http_client=http)
        async with Client(transport, mode=mode, **kw) as client:
            yield client


def text_of(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content)


# --- raw Streamable HTTP, for what the SDK client hides (headers, event ids, replays) --------

ACCEPT = "application/json, text/event-stream"
# A client asking for every reply as a resumable stream, even one main.py could answer at once
# as JSON (mcp_server/quick_replies.py).
STREAM_ACCEPT = "text/event-stream, application/json;q=0.5"
PROTOCOL_VERSION = "2025-11-25"  # of a legacy session (the initialize handshake)


def rpc(method: str, params: dict[str, Any] | None = None, id: int | None = 1) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    if id is not None:
        msg["id"] = id
    return msg


INIT = rpc(
    "initialize",
    {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "0"},
    },
)


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parse an SSE body into {id, event, data, retry} dicts, data JSON-decoded when present."""
    event: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if event:
                if "data" in event:
                    event["data"] = json.loads(event["data"]) if event["data"] else None
                yield event
                event = {}
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data" and "data" in event:
            event["data"] += "\n" + value
        elif name:
            event[name] = value


def session_headers(sid: str) -> dict[str, str]:
    """The headers of a request in the legacy session `sid`, over raw Streamable HTTP."""
    return {"Accept": ACCEPT, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": PROTOCOL_VERSION}


def open_session(client: httpx.Client, url: str) -> str:
    """Initialize a legacy session over raw HTTP; returns its Mcp-Session-Id."""
    r = client.post(url, json=INIT, headers={"Accept": ACCEPT})
    r.raise_for_status()
    sid = r.headers["mcp-session-id"]
    headers = session_headers(sid)
    r = client.post(url, json=rpc("notifications/initialized", id=None), headers=headers)
    assert r.status_code == 202, r.text
    return sid
