"""Issue 13, the page's side of live inventory, in process: web.py subscribes once to a
server's `shop://inventory` and fans each update out to every open `/api/events` stream.

The server is a small in-memory MCP server using main.py's own `Live` (the same
`resources/subscribe` handling and coalescing), whose `sell` tool changes stock and marks
the change as main.py's change-feed follower would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request

from product_mcp.chat.events import PageEvents
from product_mcp.core.errors import ProductMcpError
from product_mcp.mcp_server.live import INVENTORY_URI, Live
from tests.inproc import web_app

Data = dict[str, Any]


def stock_server() -> tuple[MCPServer[None], Live]:
    server: MCPServer[None] = MCPServer("stockshop")
    stock = {1: 10, 2: 5}
    live = Live(server)
    live.register()

    @server.resource(INVENTORY_URI, name="inventory", mime_type="application/json")
    async def inventory() -> str:
        return json.dumps([{"productId": p, "quantity": q} for p, q in stock.items()])

    @server.tool(description="Sell one unit.")
    async def sell(product_id: int) -> str:
        stock[product_id] -= 1
        live.handle({"seq": 1, "productId": product_id, "kind": "purchased"})
        return "sold"

    return server, live


def events(r: httpx.Response) -> Iterator[tuple[str, Data]]:
    kind = ""
    for line in r.iter_lines():
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind, json.loads(line[6:])


def until(stream: Iterator[tuple[str, Data]], want: Callable[[str, Data], bool]) -> Data:
    for kind, data in stream:  # the client's read timeout bounds the wait
        if want(kind, data):
            return data
    raise AssertionError("the stream ended first")


def test_one_subscription_fans_out_to_every_page(tmp_path: Path) -> None:
    server, live = stock_server()
    with (
        web_app(tmp_path, in_memory={"shop": server}) as web,
        web.stream("GET", "/api/events") as a,
        web.stream("GET", "/api/events") as b,
    ):
        assert a.status_code == b.status_code == 200
        assert a.headers["content-type"].startswith("text/event-stream")
        pages = [events(a), events(b)]
        for page in pages:
            until(page, lambda k, d: k == "live" and d == {"server": "shop", "on": True})
        sold = web.post(
            "/api/call-tool", json={"server": "shop", "name": "sell", "args": {"product_id": 1}}
        )
        assert sold.status_code == 200, sold.text
        for page in pages:
            data = until(
                page, lambda k, d: k == "stock" and {"productId": 1, "quantity": 9} in d["items"]
            )
            assert data["server"] == "shop"
        assert len(live.subscribers.sessions(INVENTORY_URI)) == 1  # one upstream, two pages


def test_page_streams_are_bounded_per_client_and_end_on_shutdown() -> None:
    hub = PageEvents(per_client=2)

    def req(host: str) -> Request:
        return Request({"type": "http", "client": (host, 1), "headers": []})

    first, _ = hub.open(req("10.0.0.1")), hub.open(req("10.0.0.1"))
    with pytest.raises(ProductMcpError) as refused:
        hub.open(req("10.0.0.1"))
    assert refused.value.status == 429 and "at most 2" in refused.value.message
    hub.open(req("10.0.0.2"))  # another client has its own allowance

    async def read_all() -> list[str]:
        chunks: list[str] = []
        hub.publish("live", {"server": "shop", "on": True})
        hub.close_soon()  # what uvicorn's shutdown calls
        async for chunk in first.body_iterator:
            chunks.append(str(chunk))
        return chunks

    chunks = asyncio.run(read_all())  # returns: the stream ended
    assert chunks[1] == 'event: live\ndata: {"server": "shop", "on": true}\n\n'
    with pytest.raises(ProductMcpError):
        hub.open(req("10.0.0.3"))  # shutting down: 503
