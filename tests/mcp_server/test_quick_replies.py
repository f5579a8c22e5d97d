"""Quick replies (mcp_server/quick_replies.py): over raw Streamable HTTP, a request whose answer
is its only message gets it as one JSON body; a request that reports progress, one that runs
longer than QUICK_REPLY and one from a client that prefers the stream get the SSE reply as
before, priming event first, nothing lost. Elicitation through a stream: test_confirm.py and
tests/e2e/test_browser.py; a session ended mid-call: tests/faults/test_mcp_abuse.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import anyio
import httpx
import pytest
from mcp.server.streamable_http import EventMessage, StreamableHTTPServerTransport

from product_mcp.mcp_server.quick_replies import QUICK_REPLY, QuickReply, prefers_stream
from tests.mcp_helpers import (
    ACCEPT,
    STREAM_ACCEPT,
    open_session,
    rpc,
    session_headers,
    sse_events,
)
from tests.servers import Service
from tests.stack import Stack

# The server's MCP_QUICK_REPLY: above the default, so a quick answer on a loaded machine (one
# took over 0.2 s while other tests ran) is still quick; the streamed ones are held longer.
QUICK = 0.5
SLOW = 2.0  # seconds the proxy holds back /api/analytics and /api/orders answers
assert SLOW > 3 * QUICK


@pytest.fixture(scope="module")
def server(api: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """main.py whose analytics and order calls take SLOW seconds (the rest go at once)."""
    with Stack(tmp_path_factory.mktemp("quick")) as s:
        proxy = s.slow_api(api, {"/api/analytics": SLOW, "/api/orders": SLOW})
        yield s.mcp(proxy.url, env={"MCP_QUICK_REPLY": str(QUICK)})


@pytest.fixture
def session(server: Service) -> Iterator[tuple[httpx.Client, str, dict[str, str]]]:
    with httpx.Client(base_url=server.url, timeout=15) as http:
        sid = open_session(http, f"{server.url}/mcp")
        headers = session_headers(sid)
        yield http, sid, headers
        http.delete("/mcp", headers=headers)


def _post(http: httpx.Client, headers: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    with http.stream("POST", "/mcp", json=body, headers=headers) as r:
        r.read()
        return r


def test_a_quick_answer_is_one_json_body(session: tuple[httpx.Client, str, dict[str, str]]) -> None:
    http, sid, headers = session
    for i, body in enumerate(
        [
            rpc("tools/call", {"name": "get_products", "arguments": {}}, id=5),
            rpc("tools/list", {}, id=6),
            rpc("tools/call", {"name": "get_product", "arguments": {"productId": 999}}, id=7),
        ]
    ):
        r = _post(http, headers, body)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/json"
        assert r.headers["mcp-session-id"] == sid
        answer = r.json()
        assert answer["id"] == 5 + i and answer["jsonrpc"] == "2.0"
    products = _post(http, headers, rpc("tools/call", {"name": "get_products"}, id=8)).json()
    assert products["result"]["structuredContent"]["result"][0]["name"] == "Galaxy Smart Watch"


def _stream(r: httpx.Response, request_id: int) -> list[dict[str, Any]]:
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = list(sse_events(r))
    assert events[0]["data"] is None and events[0]["id"]  # the priming event: resumable
    answers = [e for e in events if isinstance(e.get("data"), dict) and "id" in e["data"]]
    assert [a["data"]["id"] for a in answers] == [request_id] and events[-1] is answers[0]
    assert "result" in answers[0]["data"]
    return events


def test_progress_is_streamed_before_the_answer(
    session: tuple[httpx.Client, str, dict[str, str]],
) -> None:
    http, _, headers = session
    meta = {"progressToken": "p"}
    params = {"name": "analyze_sales", "arguments": {"groupBy": "day"}, "_meta": meta}
    events = _stream(_post(http, headers, rpc("tools/call", params, id=11)), 11)
    said = [e["data"] for e in events[1:-1]]
    progress = [m["params"]["progress"] for m in said if m["method"] == "notifications/progress"]
    assert progress == [0, 1, 2, 3]  # every report, in order, none lost to the JSON wait
    assert [m["method"] for m in said].count("notifications/message") == 1  # and the log line


def test_a_slow_silent_answer_is_streamed(
    session: tuple[httpx.Client, str, dict[str, str]],
) -> None:
    """No progress asked for, so nothing comes before the answer; still, the client gets the
    stream's head (and a resumable priming event) once QUICK_REPLY has passed."""
    http, _, headers = session
    body = rpc("tools/call", {"name": "get_orders", "arguments": {}}, id=12)
    events = _stream(_post(http, headers, body), 12)
    assert len(events) == 2


def test_a_client_that_prefers_the_stream_gets_it(
    session: tuple[httpx.Client, str, dict[str, str]],
) -> None:
    http, _, headers = session
    body = rpc("tools/call", {"name": "get_products", "arguments": {}}, id=13)
    events = _stream(_post(http, {**headers, "Accept": STREAM_ACCEPT}, body), 13)
    assert len(events) == 2


@pytest.mark.parametrize(
    ("accept", "stream"),
    [
        (ACCEPT, False),
        ("text/event-stream, application/json", False),
        (STREAM_ACCEPT, True),
        ("application/json;q=0.1, text/event-stream;q=0.2", True),
        ("Application/JSON; Q=0.3 , Text/Event-Stream", True),
        ("application/json;q=0.9, text/event-stream;q=0.5", False),
        ("application/json;q=abc, text/event-stream;q=0.5", False),  # bad q ranks as 1
        ("application/json;q=2, text/event-stream;q=0.5", False),
        ("application/json;q=-1, text/event-stream;q=0.5", False),
        ("application/json;q=1e400, text/event-stream;q=0.5", False),
        ("application/json;q=nan, text/event-stream", False),
        # Wildcards rank a type as the most specific range that names it (found from outside:
        # `application/*;q=0.1` was taken as JSON at q=1).
        ("text/event-stream, application/*;q=0.1", True),
        ("text/event-stream, */*;q=0.1", True),
        ("application/json, text/*;q=0.5", False),
        ("application/json;q=0.5, text/*", True),
        ("application/json;q=0.5, */*;q=0.9", True),  # JSON named at 0.5, the stream 0.9
        ("text/event-stream;q=0.4, */*;q=0.9", False),  # the stream named at 0.4, JSON 0.9
        # One range twice: its higher q (found: the last one counted).
        ("application/json;q=0.5, text/event-stream;q=1, text/event-stream;q=0.1", True),
        ("*/*", False),
        ("", False),
    ],
)
def test_which_clients_prefer_the_stream(accept: str, stream: bool) -> None:
    scope = {"headers": [(b"accept", accept.encode())]}
    assert prefers_stream(scope) is stream


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_stream_closed_during_the_wait_still_gives_its_priming_event(
    anyio_backend: str,
) -> None:
    """A tool may close its request's stream to be polled (`ctx.close_sse_stream()`); ended
    within QUICK_REPLY, the reply is the priming event alone, which the client resumes from
    (found in review: an empty stream, nothing to resume from), and nothing is left behind."""
    transport = StreamableHTTPServerTransport(mcp_session_id="s")
    rid = "7"
    writer, content = anyio.create_memory_object_stream[Any](0)
    transport._sse_stream_writers[rid] = writer
    transport._request_streams[rid] = anyio.create_memory_object_stream[EventMessage](10)
    priming = {"id": "s/7-prime", "data": "", "retry": 1000}
    events = transport._request_streams[rid][1]
    sender = partial(transport._run_sse_writer, rid, writer, events, priming)
    reply = QuickReply(sender, content, {"Content-Type": "text/event-stream"}, {})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        await anyio.sleep_forever()
        raise AssertionError

    async def close_soon() -> None:
        await anyio.sleep(QUICK_REPLY / 4)
        transport.close_sse_stream(rid)

    scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": [(b"accept", b"*/*")]}
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(close_soon)
            await reply(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert b"id: s/7-prime" in body and b"retry: 1000" in body
    assert rid not in transport._request_streams and rid not in transport._sse_stream_writers


def test_mcp_quick_reply_sets_the_wait() -> None:
    """MCP_QUICK_REPLY reaches the wait (the module above runs its server with 0.5 s); 0 and
    more than 10 s are refused as settings."""
    from product_mcp.core.config import Settings
    from product_mcp.mcp_server import quick_replies
    from product_mcp.mcp_server.http_app import Config, build_app

    try:
        build_app(Config(quick_reply=0.7))
        assert quick_replies.QUICK_REPLY == 0.7
    finally:
        quick_replies.install_quick_replies(QUICK_REPLY)
    for bad in ("0", "11"):
        with pytest.raises(ValueError, match="MCP_QUICK_REPLY"):
            Settings(_env_file=None, MCP_QUICK_REPLY=bad)  # type: ignore[call-arg]
