"""main.py as a process over HTTP (its real api.py: conftest.real): the banner naming every
tool and both endpoints, /healthz, Streamable HTTP resumption (a dropped stream resumed with
Last-Event-ID, without loss or repeat, never across sessions), foreign Host and Origin
refused, CORS for allowed origins only, and the process still serving after all that. The
tools as clients meet them: test_server.py.
"""

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.mcp_helpers import (
    ACCEPT,
    INIT,
    NEW_TOOLS,
    STREAM_ACCEPT,
    open_session,
    rpc,
    sse_events,
)
from tests.servers import Service
from tests.stack import Stack


@pytest.fixture(scope="module")
def server(real: Stack) -> Service:
    return real["mcp"]


# --- startup ------------------------------------------------------------------------------


def test_banner_lists_every_tool_and_both_endpoints(server: Service) -> None:
    log = server.log()
    assert "Starting Product MCP Server..." in log
    assert "Supported features:" in log
    for line in [
        "  - Get product list (get_products)",
        "  - Get inventory list (get_inventory)",
        "  - Get order list (get_orders)",
        "  - Create purchase order (create_purchase)",
    ]:
        assert line in log
    for name in NEW_TOOLS:
        assert f"({name})" in log
    assert f"{server.url}/mcp" in log and f"{server.url}/sse" in log


def test_healthz(server: Service) -> None:
    r = httpx.get(f"{server.url}/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"


# --- resumability -------------------------------------------------------------------------


def test_dropped_stream_resumes_without_loss_or_repeat(server: Service) -> None:
    """Read one event of a tool call's stream, drop it, and reconnect with Last-Event-ID."""
    url = f"{server.url}/mcp"
    call = rpc(
        "tools/call",
        {"name": "analyze_sales", "arguments": {"groupBy": "day"}, "_meta": {"progressToken": 9}},
        id=42,
    )
    with httpx.Client(timeout=10) as http:
        sid = open_session(http, url)
        headers = {"Accept": ACCEPT, "Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
        before: list[dict[str, Any]] = []
        with http.stream("POST", url, json=call, headers=headers) as resp:
            for event in sse_events(resp):
                before.append(event)
                if event.get("data"):  # the priming event has no data: stop after a real one
                    break
        assert before[0]["data"] is None and before[0]["retry"] == "1000"  # priming + retry hint
        after: list[dict[str, Any]] = []
        replay_headers = {**headers, "Last-Event-ID": before[-1]["id"]}
        with http.stream("GET", url, headers=replay_headers) as resp:
            assert resp.status_code == 200
            for event in sse_events(resp):
                after.append(event)
                if event.get("data") and event["data"].get("id") == 42:
                    break
        http.delete(url, headers=headers)

    messages = [e["data"] for e in before + after if e.get("data")]
    ids = [e["id"] for e in before + after]
    assert len(ids) == len(set(ids)), "an event was repeated"
    progress = [
        m["params"]["progress"] for m in messages if m.get("method") == "notifications/progress"
    ]
    assert progress == [0, 1, 2, 3], "a progress event was lost or repeated"
    responses = [m for m in messages if m.get("id") == 42]
    assert len(responses) == 1 and responses[0]["result"]["isError"] is False


def test_unknown_last_event_id_is_not_replayed(server: Service) -> None:
    url = f"{server.url}/mcp"
    with httpx.Client(timeout=5) as http:
        sid = open_session(http, url)
        headers = {
            "Accept": "text/event-stream",
            "Mcp-Session-Id": sid,
            "Mcp-Protocol-Version": "2025-11-25",
            "Last-Event-ID": "00000000-1",
        }
        with http.stream("GET", url, headers=headers) as resp:
            # Nothing to replay: the stream ends (or is refused), never someone else's events.
            assert all(not e.get("data") for e in sse_events(resp))
        http.delete(url, headers={**headers, "Accept": ACCEPT})


def test_resumption_never_crosses_sessions(server: Service) -> None:
    """Request ids repeat across sessions (every client counts from 1), so a replay keyed by
    stream id alone would hand one customer another session's results. It must not."""
    url = f"{server.url}/mcp"
    base = {"Mcp-Protocol-Version": "2025-11-25"}

    def call(http: httpx.Client, sid: str, customer: str) -> list[dict[str, Any]]:
        # A quick answer comes as JSON unless the client prefers the (resumable) stream.
        headers = {**base, "Accept": STREAM_ACCEPT, "Mcp-Session-Id": sid}
        body = rpc("tools/call", {"name": "get_orders", "arguments": {"customer": customer}}, 7)
        with http.stream("POST", url, json=body, headers=headers) as resp:
            return list(sse_events(resp))

    def replay(http: httpx.Client, sid: str, last: str) -> list[dict[str, Any]]:
        """Whatever a resuming GET delivers within 2 s (the stream may stay open)."""
        headers = {**base, "Accept": "text/event-stream", "Mcp-Session-Id": sid}
        got: list[dict[str, Any]] = []
        try:
            with http.stream(
                "GET", url, headers={**headers, "Last-Event-ID": last}, timeout=2
            ) as resp:
                if resp.is_success:
                    got.extend(e for e in sse_events(resp) if e.get("data"))
        except httpx.ReadTimeout:
            pass
        return got

    with httpx.Client(timeout=10) as http:
        alice, bob = open_session(http, url), open_session(http, url)
        alice_events = call(http, alice, "alice")
        alice_prime = alice_events[0]["id"]
        alice_last = [e for e in alice_events if e.get("data")][-1]["id"]
        bob_events = call(http, bob, "bob")  # the same request id 7, in another session
        bob_ids = {e["id"] for e in bob_events}

        after_answer = replay(http, alice, alice_last)
        assert not bob_ids & {e["id"] for e in after_answer}, "bob's events replayed to alice"
        assert after_answer == []
        from_start = replay(http, alice, alice_prime)
        assert [e["id"] for e in from_start] == [alice_last]  # alice's own answer, once
        assert replay(http, bob, alice_prime) == [], "alice's event id replayed into bob's session"
        for sid in (alice, bob):
            http.delete(url, headers={**base, "Accept": ACCEPT, "Mcp-Session-Id": sid})


# --- HTTP security ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/mcp", "/sse"])
def test_foreign_host_and_origin_refused(server: Service, path: str) -> None:
    def hit(headers: dict[str, str]) -> httpx.Response:
        h = {"Accept": ACCEPT, **headers}
        if path == "/mcp":
            return httpx.post(server.url + path, json=INIT, headers=h, timeout=5)
        with httpx.stream("GET", server.url + path, headers=h, timeout=5) as r:
            return r

    assert hit({"Host": "evil.example.com"}).status_code == 421
    assert hit({"Host": f"evil.example.com:{server.port}"}).status_code == 421
    assert hit({"Origin": "http://evil.example.com"}).status_code == 403
    assert hit({"Origin": f"http://localhost:{server.port}"}).status_code == 200
    assert hit({"Host": f"localhost:{server.port}"}).status_code == 200
    # Host names are case-insensitive (found from outside: 421 for these).
    assert hit({"Host": f"LocalHost:{server.port}"}).status_code == 200
    assert hit({"Host": f"LOCALHOST:{server.port}"}).status_code == 200
    assert hit({"Origin": f"HTTP://LocalHost:{server.port}"}).status_code == 200
    assert hit({"Host": "EVIL.example.com"}).status_code == 421


def test_cors_preflight_for_allowed_origin_only(server: Service) -> None:
    origin = f"http://localhost:{server.port}"
    r = httpx.options(
        f"{server.url}/mcp",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "mcp-session-id, mcp-protocol-version, last-event-id",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == origin
    allowed = r.headers["access-control-allow-headers"].lower()
    for h in ("mcp-session-id", "mcp-protocol-version", "last-event-id"):
        assert h in allowed
    r = httpx.post(
        f"{server.url}/mcp",
        json=INIT,
        headers={"Origin": origin, "Accept": ACCEPT},
    )
    assert "mcp-session-id" in r.headers["access-control-expose-headers"].lower()
    r = httpx.options(
        f"{server.url}/mcp",
        headers={"Origin": "http://evil.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in r.headers


def test_no_auth_needed_without_token(server: Service) -> None:
    with httpx.Client(timeout=5) as http:
        assert open_session(http, f"{server.url}/mcp")


def test_server_keeps_serving(server: Service) -> None:
    """After all the errors above the process is still up and answering."""
    assert server.proc.poll() is None
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_stopping_with_sse_clients_attached_is_clean(real: Stack, tmp_path: Path) -> None:
    """SIGTERM while SSE clients are attached: their streams end, main.py exits, and its log
    holds no error (the SDK's /sse route sent a second response once its stream had ended:
    uvicorn logged "Exception in ASGI application" for every open stream at each stop)."""
    with Stack(tmp_path) as s:
        mcp = s.mcp(real["api"])
        with httpx.Client(timeout=10) as http, http.stream("GET", f"{mcp.url}/sse") as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            assert next(line for line in lines if line) == "event: endpoint"
            # a client that keeps reading, as every SSE client does, till the stream ends
            reader = threading.Thread(target=lambda: [*lines])
            reader.start()
            mcp.stop()  # SIGTERM (uvicorn exits by the same signal, once shut down)
            reader.join(10)
        assert "Shutting down" in mcp.log() and "Finished server process" in mcp.log()
    assert "Exception in ASGI application" not in mcp.log(), mcp.log()[-3000:]
    assert "Traceback" not in mcp.log(), mcp.log()[-3000:]
