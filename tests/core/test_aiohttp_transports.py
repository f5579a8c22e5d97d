"""main.py's API client and web.py's MCP sessions send through aiohttp
(product_mcp/core/aiohttp_transports.py): each way a peer can fail must reach the caller as
the httpx error httpx itself raises, because callers decide by it whether a request may have
been carried out (a stale connection is retried; an unanswered purchase "may have been
placed"). httpx-aiohttp alone named a server that closed without answering a `ConnectTimeout`
and a reply that is not HTTP aiohttp's own "400"."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import anyio
import httpx
import httpx2
import pytest

from product_mcp.core.aiohttp_transports import Httpx2Transport, HttpxTransport, PeerBounds
from tests.servers import dead_port

pytestmark = pytest.mark.anyio

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
PEERS: dict[str, bytes | None] = {
    "closes-unanswered": b"",
    "not-http": b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    "short-body": HEAD + b'content-length: 100\r\n\r\n{"partial": ',
    "stalls": None,
}
EXPECTED = {
    "closes-unanswered": ("RemoteProtocolError", "disconnected"),
    "not-http": ("RemoteProtocolError", "not valid HTTP"),
    "short-body": ("RemoteProtocolError", "incomplete"),
    "stalls": ("ReadTimeout", ""),
    "refused": ("ConnectError", ""),
}


@pytest.fixture(scope="module")
def peer() -> Iterator[dict[str, int]]:
    """One raw server per failure: reads the request, answers `PEERS[name]`, closes."""
    servers = {}
    for name, answer in PEERS.items():
        srv = socket.create_server(("127.0.0.1", 0))
        servers[name] = srv

        def serve(srv: socket.socket = srv, answer: bytes | None = answer) -> None:
            with suppress(OSError):
                while True:
                    conn, _ = srv.accept()
                    conn.recv(65536)
                    if answer is None:
                        time.sleep(2)
                    else:
                        conn.sendall(answer)
                    conn.close()

        threading.Thread(target=serve, daemon=True).start()
    ports = {name: srv.getsockname()[1] for name, srv in servers.items()}
    with dead_port() as refused:
        yield {**ports, "refused": refused}
    for srv in servers.values():
        srv.close()


@pytest.mark.parametrize("failure", list(EXPECTED))
@pytest.mark.parametrize(
    ("lib", "transport"),
    [(httpx, HttpxTransport), (httpx2, Httpx2Transport)],
    ids=["httpx", "httpx2"],
)
async def test_each_failure_has_the_type_httpx_gives_it(
    peer: dict[str, int], failure: str, lib: Any, transport: Any
) -> None:
    kind, words = EXPECTED[failure]
    async with lib.AsyncClient(transport=transport(), timeout=lib.Timeout(5, read=0.5)) as client:
        with pytest.raises(lib.TransportError) as caught:
            await client.post(f"http://127.0.0.1:{peer[failure]}/api/purchase", json={"q": 1})
    assert type(caught.value).__name__ == kind, repr(caught.value)
    assert words in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("lib", "transport"),
    [(httpx, HttpxTransport), (httpx2, Httpx2Transport)],
    ids=["httpx", "httpx2"],
)
async def test_a_cut_reply_names_no_status_the_server_never_sent(
    peer: dict[str, int], lib: Any, transport: Any
) -> None:
    """A 200 whose body stops short (the API killed mid-reply): aiohttp's words were
    "Response payload is not completed: <ContentLengthError: 400, message='Not enough data
    ...'>", which main.py's tool error passed to the model, as if the API had said 400 (found
    from outside: a purchase cut mid-reply). The reason stays, aiohttp's status does not."""
    async with lib.AsyncClient(transport=transport(), timeout=5) as client:
        with pytest.raises(lib.RemoteProtocolError) as caught:
            await client.post(f"http://127.0.0.1:{peer['short-body']}/api/purchase", json={})
    words = str(caught.value)
    assert "400" not in words and "ContentLengthError" not in words, words
    assert words.startswith("incomplete response body: Not enough data"), words


@pytest.mark.parametrize(
    ("lib", "transport"),
    [(httpx, HttpxTransport), (httpx2, Httpx2Transport)],
    ids=["httpx", "httpx2"],
)
async def test_a_refused_connection_says_where_without_aiohttp_s_ssl_note(
    peer: dict[str, int], lib: Any, transport: Any
) -> None:
    """The API down: aiohttp's words were "Cannot connect to host 127.0.0.1:8000 ssl:default
    [Connect call failed ...]", and main.py's tool error showed a plain-HTTP API's refusal
    with a TLS note in it (found from outside: api.py killed between purchases)."""
    port = peer["refused"]
    async with lib.AsyncClient(transport=transport(), timeout=5) as client:
        with pytest.raises(lib.ConnectError) as caught:
            await client.post(f"http://127.0.0.1:{port}/api/purchase", json={})
    words = str(caught.value)
    assert "ssl" not in words, words
    assert words.startswith(f"Cannot connect to host 127.0.0.1:{port} ["), words


@pytest.mark.parametrize(
    ("lib", "transport"),
    [(httpx, HttpxTransport), (httpx2, Httpx2Transport)],
    ids=["httpx", "httpx2"],
)
async def test_credentials_in_the_url_become_basic_auth(lib: Any, transport: Any) -> None:
    """PRODUCT_API_URL may carry `user:password@` (the API behind basic auth): aiohttp
    refused such a request outright (a header and URL credentials both), so main.py could
    not reach that API at all and said "invalid JSON from the API"."""
    seen: list[bytes] = []
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = srv.accept()
        seen.append(conn.recv(65536))
        conn.sendall(HEAD + b"content-length: 2\r\n\r\n{}")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://shop:api-password@127.0.0.1:{srv.getsockname()[1]}/api/products"
    try:
        async with lib.AsyncClient(transport=transport(), timeout=5) as client:
            r = await client.get(url)
    finally:
        srv.close()
    assert r.status_code == 200 and r.json() == {}
    head = seen[0].lower()
    assert b"authorization: basic " + base64.b64encode(b"shop:api-password").lower() in head, head
    assert b"api-password" not in head  # not in the request line either


SSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: %d\r\n\r\n%s"
BOUNDED: dict[str, tuple[bytes, str]] = {
    "gzip": (
        HEAD + b"content-encoding: gzip\r\ncontent-length: 20\r\n\r\n" + b"\x1f\x8b" + b"\0" * 18,
        "compressed (gzip), which was not asked for",
    ),
    "long-body": (HEAD + b"content-length: 5000\r\n\r\n" + b"1" * 5000, "over 4,096 bytes"),
    "long-line": (SSE % (5006, b"data: " + b"x" * 5000), "line of the event stream is over 1,024"),
    "many-short-lines": (SSE % (8000, b"data: x\n\n" * 888 + b"data: x\n"), ""),
    # a line may end with a lone CR too (the SSE spec; openai's and httpx2's readers take it)
    "many-short-cr-lines": (SSE % (8000, b"data: x\r\r" * 888 + b"data: x\r"), ""),
    # an encoding httpx2 does not decode (a server's mistake): the bytes are read as they are
    "unknown-encoding": (
        SSE.replace(b"\r\n\r\n", b"\r\ncontent-encoding: utf-8\r\n\r\n")
        % (8000, b"data: x\n\n" * 888 + b"data: x\n"),
        "",
    ),
}


def _answer_once(answer: bytes, seen: list[bytes]) -> int:
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with srv:
            conn, _ = srv.accept()
            with conn:
                seen.append(conn.recv(65536))
                conn.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


@pytest.mark.parametrize("case", list(BOUNDED))
async def test_a_bounded_transport_holds_a_reply_to_its_bounds(case: str) -> None:
    """web.py's clients to peers it does not trust (the LLM provider, MCP servers) ask for an
    uncompressed reply, refuse a compressed one (a gzip bomb took web.py to 9 GB) and read a
    body or an event stream's line only up to a bound; an event stream longer than the line
    bound in all is read whole."""
    answer, words = BOUNDED[case]
    seen: list[bytes] = []
    port = _answer_once(answer, seen)
    bounds = PeerBounds(body=4096, line=1024)
    async with httpx2.AsyncClient(transport=Httpx2Transport(bounds=bounds), timeout=5) as client:
        if not words:
            r = await client.get(f"http://127.0.0.1:{port}/mcp")
            assert r.status_code == 200 and len(r.content) == 8000
        else:
            with pytest.raises(httpx2.RemoteProtocolError) as caught:
                await client.get(f"http://127.0.0.1:{port}/mcp")
            assert words in str(caught.value), str(caught.value)
    assert b"\r\naccept-encoding: identity\r\n" in seen[0].lower(), seen[0]


async def test_a_head_dripped_byte_by_byte_times_out_whole() -> None:
    """From outside (a hostile LLM provider): a head sent a byte every 0.2 s never tripped
    the read timeout, which restarts with each read; the request hung for good."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with suppress(OSError), srv:
            conn, _ = srv.accept()
            with conn:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nx-slow: " + b"a" * 100:
                    conn.sendall(bytes([byte]))
                    time.sleep(0.2)

    threading.Thread(target=serve, daemon=True).start()
    bounds = PeerBounds(body=4096, line=1024)
    timeout = httpx2.Timeout(5, read=1)
    async with httpx2.AsyncClient(transport=Httpx2Transport(bounds=bounds), timeout=timeout) as c:
        started = time.monotonic()
        with pytest.raises(httpx2.ReadTimeout), anyio.fail_after(10):
            await c.get(f"http://127.0.0.1:{srv.getsockname()[1]}/v1/chat/completions")
    assert time.monotonic() - started < 5


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.mark.parametrize("client", ["llm", "api"])
async def test_the_environments_proxy_is_still_used(
    client: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before aiohttp, web.py's LLM client (openai's default client) and main.py's API client
    (httpx's, given no transport) went through HTTP(S)_PROXY, as a provider behind a company's
    proxy needs. httpx reads those variables only for a client given no transport, and
    aiohttp's session never: handed a transport, both clients went direct."""
    from product_mcp.chat.llm import LLMSettings, make_client
    from product_mcp.mcp_server.api_client import ProductApi

    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    seen: list[bytes] = []
    body = b'{"object": "list", "data": []}'
    port = _answer_once(HEAD + b"content-length: %d\r\n\r\n%s" % (len(body), body), seen)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    if client == "llm":
        llm = make_client(LLMSettings(api_key="k", base_url="http://llm.invalid/v1", max_retries=0))
        try:
            await llm.models.list()
        finally:
            await llm.close()
        assert seen[0].startswith(b"GET http://llm.invalid/v1/models HTTP/1.1\r\n"), seen[0]
    else:
        api = ProductApi("http://api.invalid/api", timeout=5)
        async with api.open():
            assert await api.request("GET", "/products", "products") == {
                "object": "list",
                "data": [],
            }
        assert seen[0].startswith(b"GET http://api.invalid/api/products HTTP/1.1\r\n"), seen[0]


@pytest.mark.parametrize(
    ("lib", "transport"),
    [(httpx, HttpxTransport), (httpx2, Httpx2Transport)],
    ids=["httpx", "httpx2"],
)
async def test_a_proxy_that_refuses_the_tunnel_is_a_proxy_error(lib: Any, transport: Any) -> None:
    """A proxy that answers CONNECT with a refusal (407: it wants credentials) never passed the
    request on, so it was not carried out: httpx says ProxyError. Renamed "not valid HTTP" (a
    RemoteProtocolError, as for a reply that is not HTTP), a purchase said it "may have been
    placed" and a GET was sent again."""
    seen: list[bytes] = []
    port = _answer_once(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", seen)
    proxy = lib.Proxy(f"http://127.0.0.1:{port}")
    async with lib.AsyncClient(transport=transport(proxy=proxy), timeout=5) as client:
        with pytest.raises(lib.TransportError) as caught:
            await client.post("https://shop.invalid/api/purchase", json={"q": 1})
    assert seen[0].startswith(b"CONNECT shop.invalid:443 HTTP/1.1\r\n"), seen[0]
    assert type(caught.value) is lib.ProxyError, repr(caught.value)
    assert "407" in str(caught.value), str(caught.value)


@pytest.mark.parametrize(
    ("lib", "transport"),
    [(httpx, HttpxTransport), (httpx2, Httpx2Transport)],
    ids=["httpx", "httpx2"],
)
async def test_a_servers_cookie_does_not_replace_a_configured_cookie_header(
    lib: Any, transport: Any
) -> None:
    """Found by review: aiohttp's own cookie jar, unseen by httpx, sent a cookie the server
    had set in place of the `Cookie` header the caller gave (mcp.json's headers may carry a
    server's auth as a cookie)."""
    seen: list[bytes] = []
    srv = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with suppress(OSError), srv:
            for _ in range(2):
                conn, _ = srv.accept()
                with conn:
                    seen.append(conn.recv(65536))
                    conn.sendall(HEAD + b"set-cookie: a=1; Path=/\r\ncontent-length: 2\r\n\r\n{}")

    threading.Thread(target=serve, daemon=True).start()
    # a host name: aiohttp's jar takes no cookie from an IP address
    url = f"http://localhost:{srv.getsockname()[1]}/mcp"
    async with lib.AsyncClient(transport=transport(), timeout=5) as client:
        await client.get(url)
        client.cookies.clear()
        await client.get(url, headers={"Cookie": "a=configured"})
    cookies = [line for line in seen[1].lower().split(b"\r\n") if line.startswith(b"cookie:")]
    assert cookies == [b"cookie: a=configured"], seen[1]


async def test_a_12_kib_header_is_read_as_before() -> None:
    """Found by review: aiohttp refuses a head line over 8 KiB, where httpx's own stack read
    heads up to 16 KiB (a provider's long cookie or policy header)."""
    seen: list[bytes] = []
    port = _answer_once(
        HEAD + b"x-long: " + b"a" * 12 * 1024 + b"\r\ncontent-length: 2\r\n\r\n{}", seen
    )
    async with httpx2.AsyncClient(transport=Httpx2Transport(), timeout=5) as client:
        r = await client.get(f"http://127.0.0.1:{port}/v1/models")
    assert r.status_code == 200 and len(r.headers["x-long"]) == 12 * 1024


@pytest.mark.parametrize(
    ("lib", "transport"),
    [(httpx, HttpxTransport), (httpx2, Httpx2Transport)],
    ids=["httpx", "httpx2"],
)
async def test_no_connection_limit_means_none(lib: Any, transport: Any) -> None:
    """Found from outside: httpx reads `max_connections=None` (web.py's MCP sessions) as no
    limit, but httpx-aiohttp then passed aiohttp no limit and aiohttp's default is 100. With
    120 slow tool calls on one server (15 users), the 101st waited for a free connection,
    failed as a ConnectTimeout after the connect timeout, and the SDK dropped the whole
    session: all 120 calls ended "Connection closed" (httpx2's own transport ran them all)."""
    import asyncio

    calls, arrived = 120, []
    everyone = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        arrived.append(1)
        if len(arrived) == calls:
            everyone.set()
        with suppress(TimeoutError):
            await asyncio.wait_for(everyone.wait(), 5)  # answers once all are connected
        writer.write(HEAD + b"content-length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/mcp"
    limits = lib.Limits(keepalive_expiry=4.0)  # max_connections=None: no limit
    try:
        async with lib.AsyncClient(transport=transport(limits=limits), timeout=2) as client:
            replies = await asyncio.gather(*(client.get(url) for _ in range(calls)))
    finally:
        server.close()
    assert [r.status_code for r in replies] == [200] * calls
