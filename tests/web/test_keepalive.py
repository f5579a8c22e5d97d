"""web.py's MCP connections keep their TCP connection across tool calls (chat/keepalive.py).

The SDK closes each `tools/call` SSE reply at its result, before the server ends it; without
KeepAliveTransport every call opened a new connection. Counted the way the network sees it:
TCP connects (httpcore's trace), or the client ports the server saw (tests/mini_mcp.py). The hostile
side: a reply that never ends, or sends a lot after the point where the client stopped, is
closed as before, and the next request works on a new connection.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.responses import StreamingResponse

from product_mcp.chat.keepalive import DRAIN_MAX_BYTES, KeepAliveTransport
from product_mcp.core.aiohttp_transports import Httpx2Transport
from tests.inproc import web_app
from tests.mini_mcp import build_app, make_server
from tests.servers import ThreadServer
from tests.web_helpers import take_body

pytestmark = pytest.mark.anyio


class PortLog:
    """ASGI middleware noting the client port of every POST (one port = one connection)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.ports: list[int] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            self.ports.append(scope["client"][1])
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def mini() -> Iterator[tuple[ThreadServer, PortLog]]:
    """tests/mini_mcp.py's server in a thread, its POSTs' client ports noted."""
    log = PortLog(build_app(make_server()))
    with ThreadServer(log) as server:
        yield server, log


async def _connections_for_calls(
    mini: tuple[ThreadServer, PortLog], transport: httpx2.AsyncBaseTransport, calls: int
) -> int:
    """How many connections (client ports the server saw) `calls` tool calls came on."""
    server, log = mini
    async with (
        httpx2.AsyncClient(transport=transport) as http,
        Client(streamable_http_client(f"{server.url}/mcp", http_client=http), mode="legacy") as c,
    ):
        first = len(log.ports)
        for _ in range(calls):
            result = await c.call_tool("echo", {"text": "hi"})
            assert not result.is_error, result.content
        return len(set(log.ports[first:]))


async def test_the_sdk_needs_it(mini: tuple[ThreadServer, PortLog]) -> None:
    """Through the SDK's client alone, on httpx2's own transport: a connection per call as
    shipped, one with ours."""
    kept = await _connections_for_calls(mini, KeepAliveTransport(httpx2.AsyncHTTPTransport()), 6)
    plain = await _connections_for_calls(mini, httpx2.AsyncHTTPTransport(), 6)
    assert kept <= 2, f"{kept} new connections for 6 calls"  # calls + the GET stream
    assert plain >= 5, f"without KeepAliveTransport only {plain} connections: still needed?"


async def test_on_aiohttp_too(mini: tuple[ThreadServer, PortLog]) -> None:
    """On the aiohttp transport web.py uses, the calls share a connection as well (aiohttp
    keeps one whose reply's end was already received, which a quick server's usually is;
    the drain covers an end that comes a moment later)."""
    kept = await _connections_for_calls(mini, KeepAliveTransport(Httpx2Transport()), 6)
    assert kept <= 2, f"{kept} new connections for 6 calls"


def test_web_py_calls_share_one_connection(
    mini: tuple[ThreadServer, PortLog], tmp_path: Path
) -> None:
    server, log = mini
    with web_app(tmp_path, {"mini": {"url": f"{server.url}/mcp"}}) as web:
        body = {"server": "mini", "name": "echo", "args": {"text": "hi"}}
        assert web.post("/api/call-tool", json=body).json()["isError"] is False
        first = len(log.ports)
        for _ in range(6):
            assert web.post("/api/call-tool", json=body).json()["isError"] is False
        ports = set(log.ports[first:])
    # One connection; a second when a loaded machine delays a reply's end past the drain
    # window or web.py's ping overlaps a call. Without KeepAliveTransport: one per call.
    assert len(ports) <= 2, f"6 calls from web.py came on {len(ports)} connections"


# --- a server's replies after the point where the client stopped reading -------------------


async def _reply(send: Any, first: bytes, rest: AsyncIterator[bytes]) -> None:
    head = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/event-stream")],
    }
    await send(head)
    await send({"type": "http.response.body", "body": first, "more_body": True})
    async for chunk in rest:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _soon() -> AsyncIterator[bytes]:
    await asyncio.sleep(0.02)
    yield b"data: end\n\n"


async def _never() -> AsyncIterator[bytes]:
    while True:
        await asyncio.sleep(0.01)
        yield b": still here\n\n"


async def _flood() -> AsyncIterator[bytes]:
    for _ in range(4 * DRAIN_MAX_BYTES // 1024):
        yield b"x" * 1024


async def tail_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/soon` ends 20 ms after its first event, `/never` never ends, `/flood` sends 256 KiB
    more; each reply's first event names the client port (one port = one connection)."""
    if scope["type"] != "http":
        return
    first = f"data: {scope['client'][1]}\n\n".encode()
    tails = {"/soon": _soon, "/never": _never, "/flood": _flood}
    await _reply(send, first, tails[scope["path"]]())


@pytest.fixture(scope="module")
def tails() -> Iterator[ThreadServer]:
    with ThreadServer(tail_app) as server:
        yield server


async def _first_event(http: httpx2.AsyncClient, method: str, url: str) -> str:
    """The client port the server saw, read from the first event; the reply closed there."""
    async with http.stream(method, url) as response:
        async for line in response.aiter_lines():
            return line.removeprefix("data: ")
    raise AssertionError("no event")


@pytest.mark.parametrize(
    ("method", "path", "kept"),
    [
        ("POST", "/soon", True),
        ("POST", "/never", False),
        ("POST", "/flood", False),
        ("GET", "/soon", False),
    ],
)
async def test_a_reply_closed_early(
    tails: ThreadServer, method: str, path: str, kept: bool
) -> None:
    """Kept only when the rest is small and comes at once, and only for POST (a GET is an
    event stream); otherwise closed, and the next request works on a new connection."""
    async with httpx2.AsyncClient(
        transport=KeepAliveTransport(httpx2.AsyncHTTPTransport())
    ) as http:
        with anyio.fail_after(10):  # a hang guard, not a timing check
            first = await _first_event(http, method, tails.url + path)
            second = await _first_event(http, method, tails.url + path)
    assert (first == second) is kept, (first, second)


# --- a call web.py gave up on: its reply is not read on -----------------------------------


class DeafFlood:
    """ASGI middleware: a `tools/call` of `slow` is answered with log notifications for ever,
    whatever the client says (a server deaf to `notifications/cancelled`); `gone` is set once
    the client has closed that reply. Everything else goes to the mini server."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.gone = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body, again = await take_body(receive)
        if b'"tools/call"' not in body or b'"slow"' not in body:
            return await self.app(scope, again, send)
        note = {"jsonrpc": "2.0", "method": "notifications/message",
                "params": {"level": "info", "data": "x" * 2000}}  # fmt: skip

        async def forever() -> AsyncIterator[str]:
            try:
                while True:
                    yield f"event: message\ndata: {json.dumps(note)}\n\n"
                    await asyncio.sleep(0.005)
            finally:
                self.gone.set()

        response = StreamingResponse(forever(), media_type="text/event-stream")
        await response(scope, receive, send)


def test_a_call_given_up_on_stops_reading_its_reply(tmp_path: Path) -> None:
    """Found from outside: a tool that streams progress and never answers got its 504 at
    TOOL_CALL_TIMEOUT, but web.py went on reading its reply (2 MB/s, for good; two such calls
    kept web.py at 67 % CPU). The reply of a call given up on (timed out, or stopped) is now
    closed, and not resumed."""
    app = DeafFlood(build_app(make_server()))
    with (
        ThreadServer(app) as served,
        web_app(tmp_path, {"mini": {"url": f"{served.url}/mcp"}}, TOOL_CALL_TIMEOUT="1") as web,
    ):
        r = web.post(
            "/api/call-tool", json={"server": "mini", "name": "slow", "args": {"seconds": 1}}
        )
        assert r.status_code == 504, r.text[:300]
        assert app.gone.wait(15), "web.py kept reading the reply of a call it gave up on"
        # the server is still usable
        echo = {"server": "mini", "name": "echo", "args": {"text": "a"}}
        r = web.post("/api/call-tool", json=echo)
        assert r.status_code == 200 and r.json()["isError"] is False, r.text[:300]
