"""main.py's other modes: API failures, stateless, JSON responses, bearer auth, SSE-only, stdio,
and DNS-rebinding protection when bound to every interface."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPDeprecationWarning
from starlette.testclient import TestClient

from main import Config, build_app, security_settings
from product_mcp.mcp_server.http_app import handshake_required
from product_mcp.mcp_server.live import INVENTORY_URI as INVENTORY
from tests.mcp_helpers import ACCEPT, INIT, KINDS, Kind, connect, open_session, rpc, text_of
from tests.servers import ROOT, Service, dead_port
from tests.stack import Stack

pytestmark = pytest.mark.anyio


# --- the API failing in every way ---------------------------------------------------------


class _Upstream(BaseHTTPRequestHandler):
    """A broken product API: 500 with a detail, 502 with HTML, and one route that hangs."""

    def do_GET(self) -> None:
        if self.path.startswith("/api/products"):
            self._send(500, json.dumps({"detail": "database exploded"}), "application/json")
        elif self.path.startswith("/api/orders"):
            self._send(502, "<html>Bad Gateway</html>", "text/html")
        elif self.path.startswith("/api/inventory"):
            time.sleep(3)  # longer than main.py's PRODUCT_API_TIMEOUT below
            self._send(200, "[]", "application/json")
        else:
            self._send(404, json.dumps({"detail": "Not Found"}), "application/json")

    def _send(self, code: int, body: str, ctype: str) -> None:
        data = body.encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def broken_api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Stack(tmp_path_factory.mktemp("broken")) as s:
        upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
        upstream.daemon_threads = True
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        s.on_close(upstream.shutdown)
        url = f"http://127.0.0.1:{upstream.server_address[1]}"
        yield s.mcp(url, env={"PRODUCT_API_TIMEOUT": "1"})


@pytest.mark.parametrize("kind", KINDS)
async def test_api_failures_are_tool_errors_with_the_reason(
    broken_api_server: Service, kind: Kind
) -> None:
    async with connect(kind, broken_api_server.url) as client:
        result = await client.call_tool("get_products", {})
        assert result.is_error
        assert "Failed to call product service (500): database exploded" in text_of(result)

        result = await client.call_tool("get_orders", {})
        assert result.is_error
        assert "Failed to call order service (502): <html>Bad Gateway</html>" in text_of(result)

        # The upstream answers after 3 s; PRODUCT_API_TIMEOUT=1 must cut it short.
        result = await client.call_tool("get_inventory", {})
        assert result.is_error
        assert "Error requesting inventory service: ReadTimeout" in text_of(result)

        result = await client.call_tool("search_products", {"query": "x"})
        assert result.is_error and "product service (500)" in text_of(result)
        # The server is still there for the next request.
        assert len((await client.list_tools()).tools) == 8


# --- bearer token, against an API that is not even running --------------------------------

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with dead_port() as port, Stack(tmp_path_factory.mktemp("auth")) as s:
        dead_api = f"http://shop:api-password@127.0.0.1:{port}"
        yield s.mcp(dead_api, env={"MCP_AUTH_TOKEN": TOKEN})


def test_auth_required_on_every_mcp_endpoint(auth_server: Service) -> None:
    url = auth_server.url
    assert httpx.get(f"{url}/healthz").status_code == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        h = {"Accept": ACCEPT, **headers}
        r = httpx.post(f"{url}/mcp", json=INIT, headers=h)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert httpx.get(f"{url}/sse", headers=h).status_code == 401
        assert httpx.post(f"{url}/messages/?session_id=x", json=INIT, headers=h).status_code == 401
    for scheme in ("Bearer", "bearer", "BEARER"):  # the scheme is case-insensitive
        with httpx.Client(headers={"Authorization": f"{scheme} {TOKEN}"}, timeout=5) as http:
            assert open_session(http, f"{url}/mcp")


def test_open_health_check_and_banner_leak_no_secret(auth_server: Service) -> None:
    assert httpx.get(f"{auth_server.url}/healthz").json() == {"status": "ok"}
    log = auth_server.log()
    assert "api-password" not in log and TOKEN not in log
    assert "shop:***@127.0.0.1" in log and "MCP_AUTH_TOKEN = (set)" in log


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MCP_TRANSPORT": "Stdio"}, "MCP_TRANSPORT must be one of"),
        ({"MCP_PORT": "abc"}, "MCP_PORT must be an integer, got 'abc'"),
    ],
)
def test_bad_settings_stop_with_a_sentence(env: dict[str, str], message: str) -> None:
    run = subprocess.run(
        [sys.executable, "main.py"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert message in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize("kind", KINDS)
async def test_auth_with_token_and_api_down(auth_server: Service, kind: Kind) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with connect(kind, auth_server.url, headers=headers) as client:
        result = await client.call_tool("get_products", {})
    assert result.is_error
    assert "Error requesting product service: " in text_of(result)
    async with connect(kind, auth_server.url, headers=headers) as client:
        result = await client.call_tool(
            "create_purchase", {"customerName": "A", "items": [{"productId": 1, "quantity": 1}]}
        )
    assert result.is_error
    assert "Error requesting purchase order creation: " in text_of(result)


# --- stateless and JSON-response modes ----------------------------------------------------


@pytest.fixture(scope="module")
def stateless_server(api: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Stack(tmp_path_factory.mktemp("stateless_server")) as s:
        yield s.mcp(api, extra=["--stateless", "--transport", "streamable-http"])


def test_stateless_has_no_session_and_no_sse(stateless_server: Service) -> None:
    r = httpx.post(f"{stateless_server.url}/mcp", json=INIT, headers={"Accept": ACCEPT})
    assert r.status_code == 200 and "mcp-session-id" not in r.headers
    # streamable-http only: no SSE endpoint in this mode.
    assert httpx.get(f"{stateless_server.url}/sse").status_code == 404


@pytest.mark.parametrize("kind", ["modern", "legacy"])
async def test_stateless(stateless_server: Service, kind: Kind) -> None:
    async with connect(kind, stateless_server.url) as client:
        result = await client.call_tool("get_product", {"productId": 1})
        assert not result.is_error and result.structured_content["stock"] == 100  # type: ignore[index]
        result = await client.call_tool("analyze_sales", {"groupBy": "day"})
        assert not result.is_error


@pytest.fixture(scope="module")
def json_server(api: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Stack(tmp_path_factory.mktemp("json_server")) as s:
        yield s.mcp(api, extra=["--json-response"])


def test_json_response_raw(json_server: Service) -> None:
    r = httpx.post(f"{json_server.url}/mcp", json=INIT, headers={"Accept": ACCEPT})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["result"]["serverInfo"]["name"] == "Product MCP Server"


@pytest.mark.parametrize("kind", KINDS)
async def test_json_response(json_server: Service, kind: Kind) -> None:
    async with connect(kind, json_server.url) as client:
        result = await client.call_tool("get_products", {"limit": 1})
        assert not result.is_error
        assert result.structured_content["result"][0]["id"] == 1  # type: ignore[index]


# --- SSE only, and stdio ------------------------------------------------------------------


@pytest.fixture(scope="module")
def sse_server(api: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Stack(tmp_path_factory.mktemp("sse_server")) as s:
        yield s.mcp(api, extra=["--transport", "sse"])


def test_sse_only_has_no_mcp_endpoint(sse_server: Service) -> None:
    r = httpx.post(f"{sse_server.url}/mcp", json=INIT, headers={"Accept": ACCEPT})
    assert r.status_code == 404
    assert "Streamable HTTP:" not in sse_server.log() and "/sse" in sse_server.log()


async def test_sse_only_transport(sse_server: Service) -> None:
    async with connect("sse", sse_server.url) as client:
        result = await client.call_tool("get_inventory", {})
    assert not result.is_error and len(result.structured_content["result"]) == 4  # type: ignore[index]


async def test_stdio_transport(api: Service) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["main.py", "--transport", "stdio"],
        cwd=ROOT,
        # A token guards HTTP only; stdio is the local user's own process.
        env={**os.environ, "PRODUCT_API_URL": f"{api.url}/api", "MCP_AUTH_TOKEN": "x"},
    )
    inventory_updated = anyio.Event()

    async def heard(message: Any) -> None:
        method = getattr(message, "method", None)
        if method == "notifications/resources/updated" and message.params.uri == INVENTORY:
            inventory_updated.set()

    async with Client(params, mode="legacy", message_handler=heard) as client:
        names = [t.name for t in (await client.list_tools()).tools]
        assert "create_purchase" in names and len(names) == 8
        result = await client.call_tool("get_products", {})
        assert not result.is_error and len(result.content) == 4
        result = await client.call_tool("get_product", {"productId": 999})
        assert result.is_error and "Product ID 999 does not exist" in text_of(result)
        # Live stock over stdio too: the process follows api.py's change feed as the HTTP app
        # does (it did not: subscribed, a stdio client heard nothing while web.py said "live").
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.subscribe_resource(INVENTORY)
        buy = {"customerName": "Stdio", "items": [{"productId": 2, "quantity": 1}]}
        async with httpx.AsyncClient() as http:
            assert (await http.post(f"{api.url}/api/purchase", json=buy)).status_code == 200
        with anyio.fail_after(20):  # a bound, not a speed check
            await inventory_updated.wait()
    async with Client(params) as client:  # the 2026-07-28 era over stdio too
        result = await client.call_tool("search_products", {"query": "power bank"})
        assert not result.is_error and result.structured_content["result"][0]["id"] == 3  # type: ignore[index]


# --- DNS-rebinding protection stays on off loopback (in-process: nothing binds 0.0.0.0) -----


def test_security_settings_for_every_interface() -> None:
    s = security_settings(Config(host="0.0.0.0", port=9000, allowed_hosts=["shop.example.com"]))
    assert s.enable_dns_rebinding_protection
    assert "localhost:9000" in s.allowed_hosts and "127.0.0.1:9000" in s.allowed_hosts
    assert "shop.example.com" in s.allowed_hosts and "shop.example.com:9000" in s.allowed_hosts
    assert "https://shop.example.com" in s.allowed_origins
    assert not any("*" in h for h in s.allowed_hosts + s.allowed_origins)


def test_bound_to_every_interface_still_refuses_foreign_hosts() -> None:
    app = build_app(Config(host="0.0.0.0", port=9000, allowed_hosts=["Shop.Example.com"]))
    with TestClient(app, base_url="http://localhost:9000") as client:

        def post(**headers: str) -> int:
            return client.post("/mcp", json=INIT, headers={"Accept": ACCEPT, **headers}).status_code

        assert post(Host="evil.example.com") == 421
        assert post(Host="192.168.1.20:9000") == 421
        assert post(Origin="http://evil.example.com") == 403
        assert post(Host="localhost:9000") == 200
        assert post(Host="shop.example.com") == 200
        assert post(Host="shop.example.com", Origin="https://shop.example.com") == 200
        assert post(Host="SHOP.example.COM:9000", Origin="https://Shop.Example.com:9000") == 200


def test_allowed_hosts_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from main import parse_args

    monkeypatch.setenv("MCP_ALLOWED_HOSTS", "a.example, b.example")
    monkeypatch.setenv("MCP_PORT", "9100")
    cfg = parse_args(["--allowed-host", "c.example"])
    assert cfg.port == 9100 and cfg.allowed_hosts == ["a.example", "b.example", "c.example"]
    assert cfg.transport == "both" and cfg.auth_token is None


def test_handshake_grace_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """MCP_HANDSHAKE_GRACE reaches the app's handshake rule; 10 s unless set."""
    from main import parse_args
    from product_mcp.mcp_server.protocol import HandshakeRule

    assert parse_args([]).handshake_grace == 10
    monkeypatch.setenv("MCP_HANDSHAKE_GRACE", "2.5")
    cfg = parse_args([])
    assert cfg.handshake_grace == 2.5
    rule = next(m for m in build_app(cfg).user_middleware if m.cls is HandshakeRule)
    assert rule.kwargs["grace"] == 2.5


# --- the handshake rule belongs to each app, not to the process --------------------------


def _early_tools_list(client: TestClient) -> str:
    """tools/list on a fresh legacy session before notifications/initialized: the answer."""
    r = client.post("/mcp", json=INIT, headers={"Accept": ACCEPT})
    headers = {"Accept": ACCEPT, "Mcp-Session-Id": r.headers["mcp-session-id"]}
    headers["Mcp-Protocol-Version"] = "2025-11-25"
    return client.post("/mcp", json=rpc("tools/list", id=2), headers=headers).text


def test_two_apps_in_one_process_keep_their_own_handshake_rule() -> None:
    """A replica's app (sessions shared: rule off) and a single server's app (rule on) built
    in one process: each keeps its own rule, whichever was built last, and sessions stay with
    the app that opened them."""
    assert handshake_required(Config()) and not handshake_required(Config(redis_url="redis://x"))
    strict = build_app(Config(port=9001, handshake_grace=0.2))
    lenient = build_app(Config(port=9002, require_handshake=False, handshake_grace=0.2))
    with (
        TestClient(strict, base_url="http://localhost:9001") as a,
        TestClient(lenient, base_url="http://localhost:9002") as b,
    ):
        for client, refused in ((a, True), (b, False), (a, True), (b, False)):
            answer = _early_tools_list(client)
            assert ("not initialized" in answer) is refused, answer
            assert ('"get_products"' in answer) is not refused, answer
