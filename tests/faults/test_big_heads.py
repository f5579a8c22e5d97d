"""A request head (request line and headers) is bounded in size on every service.

Found from outside (session 17): uvicorn with httptools sets no limit on a head's size, and
the header deadline bounds only its time: one connection streaming 8 KB header lines for 8 s
took api.py from 93 to 1,421 MiB (three took main.py to 2 GB, kept after they closed), and
the request was then answered 200. A head past MAX_HEAD_BYTES is answered 431 and closed."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from product_mcp.core.protocol import MAX_HEAD_BYTES
from tests.servers import Service, start_api


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_api(tmp_path_factory.mktemp("heads") / "shop.db")
    yield svc
    svc.stop()


def _send_until_answered(port: int, start: bytes, more: bytes, most: int) -> bytes:
    """Send `start`, then `more` again and again (up to `most` bytes); what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(start)
        sent = len(start)
        try:
            while sent < most:
                s.sendall(more)
                sent += len(more)
        except OSError:
            pass  # closed on us: the answer is what matters
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except OSError:
            pass
    return answer


def test_endless_headers_are_refused(api: Service) -> None:
    line = b"X-Filler: " + b"a" * 8000 + b"\r\n"
    answer = _send_until_answered(
        api.port, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n", line, 64 * MAX_HEAD_BYTES
    )
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert f"{MAX_HEAD_BYTES:,} bytes".encode() in answer


def test_an_endless_request_line_is_refused(api: Service) -> None:
    answer = _send_until_answered(
        api.port, b"GET /api/products?q=", b"a" * 8192, 64 * MAX_HEAD_BYTES
    )
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_a_large_head_within_the_bound_is_served(api: Service) -> None:
    headers = {f"X-Big-{i}": "b" * 1000 for i in range(MAX_HEAD_BYTES // 2000)}
    r = httpx.get(f"{api.url}/healthz", headers=headers)
    assert r.status_code == 200
    body = {"customerName": "Big Head", "items": [{"productId": 1, "quantity": 1}]}
    big_body = httpx.post(f"{api.url}/api/purchase", json={**body, "x": "y" * 30_000})
    assert big_body.status_code == 422  # a large body is not a large head


def test_trailers_after_a_chunked_body_are_counted(api: Service) -> None:
    """Found from outside: headers sent after a chunked body's last chunk were not counted;
    one connection sending them took api.py from 93 MB to 4 GB. Now the connection goes once
    they pass the bound."""
    body = b'{"customerName": "T", "items": [{"productId": 1, "quantity": 1}]}'
    start = (
        b"POST /api/purchase HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n"
    )
    line = b"X-T: " + b"a" * 8000 + b"\r\n"
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as s:
        s.sendall(start)
        sent, closed = 0, False
        try:
            while sent < 64 * MAX_HEAD_BYTES:
                s.sendall(line)
                sent += len(line)
        except OSError:
            closed = True
        if not closed:  # all of it taken: the connection must end now, not hold it
            s.settimeout(10)
            try:
                closed = s.recv(65536) == b"" or True
            except OSError:
                closed = True
    assert closed and sent < 64 * MAX_HEAD_BYTES, sent
