"""Issue 13, the page's side of live inventory, in process: web.py subscribes once to a
server's `shop://inventory` and fans each update out to every open `/api/events` stream.

The server is a small in-memory MCP server using main.py's own `Live` (the same
`resources/subscribe` handling and coalescing), whose `sell` tool changes stock and marks
the change as main.py's change-feed follower would."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from starlette.requests import Request

from product_mcp.chat.events import PageEvents
from product_mcp.core.errors import ProductMcpError
from product_mcp.mcp_server.bus import ShopBus
from product_mcp.mcp_server.live import INVENTORY_URI, Live
from tests.inproc import web_app

Data = dict[str, Any]
RO = ToolAnnotations(read_only_hint=True)


def stock_server() -> tuple[MCPServer[None], Live]:
    bus = ShopBus()
    server: MCPServer[None] = MCPServer("stockshop", subscriptions=bus)
    stock = {1: 10, 2: 5}
    live = Live(server, bus)
    live.register()

    @server.resource(INVENTORY_URI, name="inventory", mime_type="application/json")
    async def inventory() -> str:
        return json.dumps([{"productId": p, "quantity": q} for p, q in stock.items()])

    @server.tool(description="Sell one unit.")
    async def sell(product_id: int) -> str:
        stock[product_id] -= 1
        seq = (live.after or 0) + 1  # as the feed numbers them (a repeated seq is no news)
        live.handle({"seq": seq, "productId": product_id, "kind": "purchased"})
        return "sold"

    @server.tool(description="Stock of every product.", annotations=RO)
    async def get_inventory() -> list[dict[str, int]]:
        return [{"productId": p, "quantity": q} for p, q in stock.items()]

    return server, live


def events(r: httpx.Response, ids: list[str] | None = None) -> Iterator[tuple[str, Data]]:
    """(kind, data) of each event but the stream's heartbeat pings; each event's SSE id ("" if
    none) appended to `ids`."""
    kind, event_id = "", ""
    for line in r.iter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind == "ping":
            kind = ""
        elif line.startswith("data: "):
            if ids is not None:
                ids.append(event_id)
            yield kind, json.loads(line[6:])
            kind, event_id = "", ""


READ = 10  # seconds without a byte before a stream read fails (heartbeats come every 15 s)


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
        return Request({"type": "http", "client": (host, 1), "headers": [], "query_string": b""})

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
    # The first says the heartbeat period (the page takes 3 silent periods for a dead stream)
    # and where the stream began (a page that heard no stock event yet resumes from there).
    assert chunks[0] == (
        f'retry: 2000\n\nid: {hub.last_id}\nevent: ping\ndata: {{"heartbeat": 15.0}}\n\n'
    )
    assert chunks[1] == 'event: live\ndata: {"server": "shop", "on": true}\n\n'
    with pytest.raises(ProductMcpError):
        hub.open(req("10.0.0.3"))  # shutting down: 503


def _sell(web: Any, product_id: int) -> None:
    r = web.post(
        "/api/call-tool",
        json={"server": "shop", "name": "sell", "args": {"product_id": product_id}},
    )
    assert r.status_code == 200, r.text


def test_a_page_that_reconnects_gets_what_it_missed(tmp_path: Path) -> None:
    """Stock events carry an id; a stream opened with the last one (Last-Event-ID, or ?after=)
    first gets the stock that changed since, merged; an id web.py cannot answer for (another
    process's, or older than it keeps) gets the whole stock; no id, nothing."""
    server, _ = stock_server()
    want = lambda *lines: lambda k, d: k == "stock" and all(x in d["items"] for x in lines)  # noqa: E731
    with web_app(tmp_path, in_memory={"shop": server}) as web:
        ids: list[str] = []
        with web.stream("GET", "/api/events") as a:
            page = events(a, ids)
            until(page, lambda k, d: k == "live" and d["on"])
            _sell(web, 1)
            until(page, want({"productId": 1, "quantity": 9}))
        seen = ids[-1]
        assert seen.startswith(web.chat.events.epoch + ".")
        _sell(web, 2)
        _sell(web, 1)
        hub = web.chat.events
        heard = [{"productId": 1, "quantity": 8}, {"productId": 2, "quantity": 4}]
        for _ in range(400):  # until web.py has heard both sales (no page is listening)
            [(_, whole)] = hub.catch_up(None)
            if all(line in whole["items"] for line in heard):
                break
            time.sleep(0.05)
        for headers, url in (
            ({"Last-Event-ID": seen}, "/api/events"),
            ({}, f"/api/events?after={seen}"),
        ):
            ids.clear()
            with web.stream("GET", url, headers=headers, timeout=READ) as b:
                data = until(events(b, ids), lambda k, d: k == "stock")
            assert ids[-1] == hub.last_id != seen
            assert sorted(data["items"], key=str) == sorted(heard, key=str)
        for stale in ("0123abcd.1", "garbage"):  # not this web.py's: the whole stock
            stale_id = {"Last-Event-ID": stale}
            with web.stream("GET", "/api/events", headers=stale_id, timeout=READ) as c:
                data = until(events(c), lambda k, d: k == "stock")
            assert len(data["items"]) == 2
        # "²" passes str.isdigit() but not int(): it was a 500 that kept its stream slot (enough
        # of them locked the address out). Now: the whole stock, and the slot comes back.
        url = f"/api/events?after={hub.epoch}.%C2%B2"
        with web.stream("GET", url, timeout=READ) as c:
            assert c.status_code == 200
            data = until(events(c), lambda k, d: k == "stock")
        assert len(data["items"]) == 2
        for _ in range(100):  # its slot comes back once web.py sees it closed
            if not hub._clients:
                break
            time.sleep(0.05)
        assert hub._clients == {}  # per client address: streams counted against the bound
        with web.stream("GET", "/api/events", headers={"Last-Event-ID": hub.last_id}) as d:
            first = events(d)
            assert next(first)[0] == "live"  # up to date: nothing to catch up
            _sell(web, 2)
            assert until(first, want({"productId": 2, "quantity": 3}))


def test_a_stream_names_where_it_begins_unless_it_carries_what_was_missed() -> None:
    """The first ping's id lets a page that has heard no stock event yet resume; a page that
    is sent what it missed gets no id before those events (a cut right after the ping would
    have resumed past them; found in review)."""
    hub = PageEvents(per_client=10)

    def req(after: str) -> Request:
        query = f"after={after}".encode() if after else b""
        return Request({"type": "http", "client": ("10.0.0.9", 1), "headers": [],
                        "query_string": query})  # fmt: skip

    async def first_chunk(stream: Any) -> str:
        async for chunk in stream.body_iterator:
            return str(chunk)
        return ""

    hub.publish("stock", {"server": "shop", "items": []}, keep=True)
    seen = hub.last_id
    hub.publish("stock", {"server": "shop", "items": []}, keep=True)
    fresh = asyncio.run(first_chunk(hub.open(req(""))))
    assert f"id: {hub.last_id}\nevent: ping" in fresh
    behind = asyncio.run(first_chunk(hub.open(req(seen))))
    assert "id:" not in behind and "event: ping" in behind
    level = asyncio.run(first_chunk(hub.open(req(hub.last_id))))
    assert f"id: {hub.last_id}\nevent: ping" in level
