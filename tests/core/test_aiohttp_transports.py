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

import httpx
import httpx2
import pytest

from product_mcp.core.aiohttp_transports import Httpx2Transport, HttpxTransport
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
