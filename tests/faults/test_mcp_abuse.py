"""Issue 7: main.py under protocol abuse.

Abuse goes over raw HTTP (what the SDK client would never send) on both transports while a
well-behaved SDK client keeps calling tools: every bad request gets the protocol's error, and
the healthy client sees no failure. Arguments the API would reject are tool errors naming the
field on every transport; a session ended while its own calls run never gets a server error.
Stream resumption under cuts: test_mcp_resume.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.mcp_helpers import ACCEPT, INIT, KINDS, Kind, connect, rpc, sse_events, text_of
from tests.servers import Service
from tests.stack import Stack

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server(api: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Stack(tmp_path_factory.mktemp("server")) as s:
        yield s.mcp(api)


# --- a healthy client running alongside -------------------------------------------------


@asynccontextmanager
async def healthy_client(server: Service, kind: Kind = "modern") -> AsyncIterator[dict[str, int]]:
    """Calls get_product in a loop until the block ends; the test then checks `failed == 0`."""
    stats = {"ok": 0, "failed": 0}
    stop = anyio.Event()

    async def loop() -> None:
        async with connect(kind, server.url) as client:
            while not stop.is_set():
                try:
                    result = await client.call_tool("get_product", {"productId": 1})
                    ok = not result.is_error and result.structured_content["id"] == 1  # type: ignore[index]
                except Exception:
                    ok = False
                stats["ok" if ok else "failed"] += 1
                await anyio.sleep(0.01)

    task = asyncio.create_task(loop())
    try:
        yield stats
    finally:
        # let it run a little past the abuse too, then stop
        await anyio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(task, 30)
    assert stats["failed"] == 0, stats
    assert stats["ok"] > 0, stats


def messages_of(r: httpx.Response) -> list[dict[str, Any]]:
    """JSON-RPC messages of a POST answer, whether JSON or an SSE body."""
    if r.headers.get("content-type", "").startswith("application/json"):
        body = r.json()
        return body if isinstance(body, list) else [body]
    return [
        json.loads(line[5:].strip())
        for line in r.text.splitlines()
        if line.startswith("data:") and line[5:].strip()
    ]


# --- Streamable HTTP (/mcp) ---------------------------------------------------------------


async def test_streamable_http_abuse_gets_protocol_errors(server: Service) -> None:
    url = f"{server.url}/mcp"
    plain = {"Accept": ACCEPT, "Content-Type": "application/json"}
    async with healthy_client(server), httpx.AsyncClient(timeout=30) as http:
        r = await http.post(url, json=INIT, headers=plain)
        sid = r.headers["mcp-session-id"]
        h = {**plain, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
        r = await http.post(url, json=rpc("notifications/initialized", id=None), headers=h)
        assert r.status_code == 202

        for headers in (plain, h):  # before and inside a session
            await _bad_bodies_are_refused(http, url, headers)
        await _bad_requests_are_errors(http, url, h)
        await _oversized_bodies_are_refused(http, url, h)
        await _only_live_sessions_serve(http, url, h)


async def _bad_bodies_are_refused(http: httpx.AsyncClient, url: str, headers: dict) -> None:
    """Not JSON, a batch, an empty batch, not JSON-RPC: 400 with the protocol's error."""
    r = await http.post(url, content=b'{"jsonrpc": "2.0", "id": 1, "meth', headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700  # parse error

    batch = [rpc("tools/list", id=1), rpc("ping", id=2)]
    r = await http.post(url, json=batch, headers=headers)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32600  # Invalid Request, not "invalid params"
    assert "batch" in r.json()["error"]["message"]
    r = await http.post(url, content=b"  \n[]", headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32600

    # Not JSON-RPC: Invalid Request in a sentence (found from outside: -32602 and a page of
    # pydantic's "validation errors for union[JSONRPCRequest, ...]")
    for body in (
        {"hello": "world"},
        {"id": 7, "method": "tools/list"},
        {"jsonrpc": "1.0", "id": 7, "method": "tools/list"},
        "just a string",
        42,
        None,
    ):
        r = await http.post(url, content=json.dumps(body).encode(), headers=headers)
        error = r.json()["error"]
        assert r.status_code == 400 and error["code"] == -32600, (body, r.text)
        assert "validation error" not in error["message"] and "JSON" in error["message"], body


async def _bad_requests_are_errors(http: httpx.AsyncClient, url: str, h: dict) -> None:
    """Inside the session: unknown method, no tool name, bad arguments, unknown tool."""
    r = await http.post(url, json=rpc("shop/steal", id=3), headers=h)
    [msg] = messages_of(r)
    assert msg["id"] == 3 and msg["error"]["code"] == -32601

    r = await http.post(url, json=rpc("tools/call", {"arguments": {}}, id=4), headers=h)
    [msg] = messages_of(r)
    assert msg["id"] == 4 and msg["error"]["code"] == -32602  # no tool name

    call = rpc("tools/call", {"name": "get_product", "arguments": {"productId": "one"}}, id=5)
    [msg] = messages_of(await http.post(url, json=call, headers=h))
    assert msg["result"]["isError"] is True and "productId" in msg["result"]["content"][0]["text"]

    call = rpc("tools/call", {"name": "create_purchase", "arguments": {"items": []}}, id=6)
    [msg] = messages_of(await http.post(url, json=call, headers=h))
    text = msg["result"]["content"][0]["text"]
    assert msg["result"]["isError"] is True and "customerName" in text and "items" in text

    call = rpc("tools/call", {"name": "no_such_tool", "arguments": {}}, id=7)
    [msg] = messages_of(await http.post(url, json=call, headers=h))
    assert (
        msg["result"]["isError"] is True and "no_such_tool" in msg["result"]["content"][0]["text"]
    )


async def _oversized_bodies_are_refused(http: httpx.AsyncClient, url: str, h: dict) -> None:
    """Over the 4 MiB body limit: refused before anything parses it, declared or chunked."""
    huge = rpc("tools/call", {"name": "search_products", "arguments": {"query": "x" * (5 << 20)}})
    r = await http.post(url, json=huge, headers=h)
    assert r.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"jsonrpc": "2.0", "id": 8, "method": "ping", "params": {"pad": "'
        for _ in range(80):
            yield b"x" * 65536
        yield b'"}}'

    r = await http.post(url, content=chunks(), headers=h)
    assert r.status_code == 413


async def _only_live_sessions_serve(http: httpx.AsyncClient, url: str, h: dict) -> None:
    """Made-up session ids are refused; the abused session still works, then ends, and
    afterwards its id is refused everywhere."""
    for bogus in ("not-a-session", "0" * 32):
        r = await http.post(
            url, json=rpc("tools/list", id=9), headers={**h, "Mcp-Session-Id": bogus}
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == -32600

    [msg] = messages_of(await http.post(url, json=rpc("tools/list", id=10), headers=h))
    assert len(msg["result"]["tools"]) == 8
    assert (await http.delete(url, headers=h)).status_code == 200
    r = await http.post(url, json=rpc("tools/list", id=11), headers=h)
    assert r.status_code == 404 and r.json()["error"]["message"] == "Session not found"
    r = await http.get(url, headers={**h, "Accept": "text/event-stream"})
    assert r.status_code == 404
    assert (await http.delete(url, headers=h)).status_code == 404


# --- SSE (/sse + /messages/) --------------------------------------------------------------


async def test_sse_abuse_gets_http_errors_and_the_session_survives(server: Service) -> None:
    events: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def read(http: httpx.AsyncClient) -> None:
        async with http.stream("GET", f"{server.url}/sse") as r:
            event: dict[str, str] = {}
            async for line in r.aiter_lines():
                if not line:
                    if event:
                        await events.put(event)
                    event = {}
                    continue
                k, _, v = line.partition(":")
                event[k] = v.removeprefix(" ")

    async def answer(id: int | str) -> dict[str, Any]:
        while True:
            event = await asyncio.wait_for(events.get(), 15)
            msg = json.loads(event["data"])
            if msg.get("id") == id:
                return msg

    async with healthy_client(server, "sse"), httpx.AsyncClient(timeout=30) as http:
        reader = asyncio.create_task(read(http))
        try:
            endpoint = await asyncio.wait_for(events.get(), 15)
            assert endpoint["event"] == "endpoint"
            url = server.url + endpoint["data"]
            js = {"Content-Type": "application/json"}
            messages = f"{server.url}/messages/"

            # no, malformed or unknown session ids
            assert (await http.post(messages, json=rpc("ping"))).status_code == 400
            r = await http.post(f"{messages}?session_id=zzz", json=rpc("ping"))
            assert r.status_code == 400
            r = await http.post(f"{messages}?session_id={'0' * 32}", json=rpc("ping"))
            assert r.status_code == 404

            # bad bodies on a live session
            assert (await http.post(url, content=b'{"jsonrpc": "2.', headers=js)).status_code == 400
            r = await http.post(url, json=[rpc("ping", id=1), rpc("ping", id=2)])
            assert r.status_code == 400
            assert (await http.post(url, json={"hello": 1})).status_code == 400
            huge = rpc("tools/call", {"name": "get_products", "arguments": {"x": "y" * (5 << 20)}})
            assert (await http.post(url, json=huge)).status_code == 413
            # requests the SDK refuses on the POST (params not an object, a method not a
            # string) are owed nothing on the stream: 40 of them once locked the session out
            # ("32 requests of this session are unanswered"; found from outside)
            for i in range(40):
                bad = {"jsonrpc": "2.0", "id": 100 + i, "method": "tools/list", "params": [1]}
                if i % 2:
                    bad["method"] = 7
                assert (await http.post(url, json=bad)).status_code == 400

            # the same session still serves: handshake, unknown method, wrong types, tools
            assert (await http.post(url, json=INIT)).status_code == 202
            assert (await answer(1))["result"]["serverInfo"]["name"] == "Product MCP Server"
            await http.post(url, json=rpc("notifications/initialized", id=None))
            await http.post(url, json=rpc("shop/steal", id=2))
            assert (await answer(2))["error"]["code"] == -32601
            call = {"name": "get_product", "arguments": {"productId": [1]}}
            await http.post(url, json=rpc("tools/call", call, id=3))
            result = (await answer(3))["result"]
            assert result["isError"] is True and "productId" in result["content"][0]["text"]
            await http.post(url, json=rpc("tools/list", id=4))
            assert len((await answer(4))["result"]["tools"]) == 8
            # ids of the allowed length are struck once answered, however long they are once
            # serialised (found from outside: 110 CJK characters, or 200 quotes, were never
            # struck, and after 32 such the session was refused for good with a 429)
            for i in range(40):
                rid = f"{'商' * 110 if i % 2 else chr(34) * 200}{i}"
                assert (await http.post(url, json=rpc("ping", id=rid))).status_code == 202
                assert (await answer(rid))["result"] == {}
            assert (await http.post(url, json=rpc("ping", id="after"))).status_code == 202
        finally:
            reader.cancel()


# --- arguments the API would reject: isError naming the field, on every transport ---------

BAD_ARGS = [
    ("search_products", {"query": "x", "minPrice": -1}, "minPrice"),
    ("search_products", {"query": ""}, "query"),
    ("get_products", {"limit": 0}, "limit"),
    # JSON types, as productId's (found from outside: "5", true and "yes" were taken)
    ("get_products", {"limit": "5"}, "limit"),
    ("get_products", {"limit": True}, "limit"),
    ("get_orders", {"offset": "1"}, "offset"),
    ("search_products", {"query": "x", "inStockOnly": "yes"}, "inStockOnly"),
    ("search_products", {"query": "x", "maxPrice": "500"}, "maxPrice"),
    ("recommend_products", {"preferences": "x", "limit": True}, "limit"),
    ("analyze_sales", {"top": "3"}, "top"),
    ("get_orders", {"offset": -1}, "offset"),
    ("get_orders", {"since": "yesterday"}, "since"),
    ("get_orders", {"since": "2025-13-45"}, "since"),
    ("recommend_products", {"preferences": "x", "budget": 0}, "budget"),
    ("analyze_sales", {"groupBy": "week"}, "groupBy"),
    ("get_product", {"productId": 0}, "productId"),
    ("create_purchase", {"customerName": "A", "items": [{"productId": 1}]}, "quantity"),
    (
        "create_purchase",
        {"customerName": "A", "items": [{"productId": 1, "quantity": 1e9}]},
        "quantity",
    ),
    (
        "create_purchase",
        {"customerName": "x" * 201, "items": [{"productId": 1, "quantity": 1}]},
        "customerName",
    ),
]


@pytest.mark.parametrize("kind", KINDS)
async def test_rejected_arguments_name_the_field(server: Service, api: Service, kind: Kind) -> None:
    orders = f"{api.url}/api/orders"
    async with httpx.AsyncClient(timeout=10) as http:
        before = (await http.get(orders)).json()
    async with connect(kind, server.url) as client:
        for tool, args, field in BAD_ARGS:
            result = await client.call_tool(tool, args)
            assert result.is_error, (tool, args)
            assert field in text_of(result), (tool, args, text_of(result))
        # and the session goes on
        assert not (await client.call_tool("get_product", {"productId": 2})).is_error
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await http.get(orders)).json() == before


# --- a session ended while its own requests are in flight --------------------------------


async def _calls_racing_a_delete(
    client: httpx.AsyncClient, calls: int, first_id: int = 1
) -> list[httpx.Response | BaseException]:
    """A new session, `calls` get_products calls in it and its DELETE, all at once; the
    answers in that order (the DELETE's last)."""
    r = await client.post("/mcp", json=INIT, headers={"accept": ACCEPT})
    h = {
        "accept": ACCEPT,
        "mcp-session-id": r.headers["mcp-session-id"],
        "mcp-protocol-version": "2025-11-25",
    }
    await client.post("/mcp", json=rpc("notifications/initialized", id=None), headers=h)
    call = rpc("tools/call", {"name": "get_products", "arguments": {}})
    ids = range(first_id, first_id + calls)
    return await asyncio.gather(
        *(client.post("/mcp", json={**call, "id": i}, headers=h) for i in ids),
        client.delete("/mcp", headers=h),
        return_exceptions=True,
    )


async def test_calls_racing_the_delete_of_their_session_never_get_a_500(server: Service) -> None:
    """A client that ends its session while its calls are still running (a tab closed, a
    retry loop gone wrong) gets answers or "session ended" errors, never a server error or a
    reply cut off mid-stream (the SDK's transport left those half-sent, and logged each with a
    rich traceback costing ~0.3 s of CPU)."""
    statuses: list[int | str] = []
    ended = 0
    async with httpx.AsyncClient(base_url=server.url, timeout=15) as client:
        for _ in range(40):
            answers = await _calls_racing_a_delete(client, 5)
            statuses += [getattr(a, "status_code", type(a).__name__) for a in answers]
            for i, a in enumerate(answers[:5], 1):
                if isinstance(a, httpx.Response) and a.status_code == 200:
                    # The reply, the error, or (the stream closed before either) nothing but
                    # the priming event: then resuming it gets 404 for the ended session.
                    said = [e["data"] for e in sse_events(a) if e.get("data")]
                    assert len(said) <= 1 and all(m["id"] == i for m in said), said
                    ended += not said or "error" in said[0]
    assert all(isinstance(s, int) and s < 500 for s in statuses), sorted(set(map(str, statuses)))
    assert ended > 0  # the race was met: some calls ended with their session


async def test_a_reply_whose_head_never_went_out_is_answered_whole() -> None:
    """The SDK swallows a failed send (here: its `http.response.start` cancelled as main.py
    shuts down) and returns. FinishResponses then finished the reply with a body alone, and
    uvicorn raised "Expected ASGI message 'http.response.start', but got 'http.response.body'"
    (seen in the rolling-restart run). A head that never went out is not a started reply."""
    from product_mcp.mcp_server.middleware import FinishResponses

    sent: list[dict[str, Any]] = []
    refuse_first = [True]

    async def server_send(message: Any) -> None:
        if refuse_first.pop() if refuse_first else False:
            raise OSError("cancelled before it went out")
        if not sent and message["type"] != "http.response.start":
            raise RuntimeError(f"Expected 'http.response.start', got {message['type']!r}")
        sent.append(message)

    async def sdk(scope: Any, receive: Any, send: Any) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
        except OSError:
            return  # what the SDK's transport does: log and return

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": []}
    await FinishResponses(sdk, "peeked")(scope, receive, server_send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 404 and b"Session ended" in sent[1]["body"]


async def test_a_client_going_away_is_one_log_line_not_a_traceback(
    api: Service, tmp_path: Path
) -> None:
    """A client that drops a POST mid-body, or deletes its session while its calls stream, is
    client behaviour: the SDK logged each with a 15- to 40-line traceback (a client could fill
    the log with them). Each is now one line naming what happened."""
    with Stack(tmp_path) as s:
        mcp = s.mcp(api)
        async with httpx.AsyncClient(base_url=mcp.url, timeout=15) as client:
            for _ in range(10):
                await _calls_racing_a_delete(client, 8, first_id=0)
            r = await client.post("/mcp", json=INIT, headers={"accept": ACCEPT})
            sid = r.headers["mcp-session-id"]
        _, writer = await asyncio.open_connection("127.0.0.1", mcp.port)
        head = (
            f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{mcp.port}\r\n"
            f"Content-Type: application/json\r\nAccept: {ACCEPT}\r\nMcp-Session-Id: {sid}\r\n"
            "MCP-Protocol-Version: 2025-11-25\r\nContent-Length: 1000\r\n\r\n"
        )
        writer.write(head.encode() + b'{"jsonrpc": "2.0", ')
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()
        log = ""
        for _ in range(50):
            await asyncio.sleep(0.1)
            log = mcp.log()
            if "Error handling POST request" in log:
                break
        assert "Error handling POST request" in log, log[-3000:]  # the drop was seen
        assert "SSE response error" in log, log[-3000:]  # and the race was met
        assert "Traceback" not in log, log[-4000:]
