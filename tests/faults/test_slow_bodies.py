"""Request bodies that never come cannot hold a service: a deadline per body, a cap per client.

Found from outside: only a request's headers had a deadline, so a connection that sent its
headers and then 1 byte of a 100-byte body stayed open for good, on all three services; 1,000
of them from one client held every connection a service accepts (MAX_CONNECTIONS), and every
other client got 503 for as long as they stayed. Now a body must arrive within BODY_TIMEOUT of
its headers, and one client address may hold at most SLOW_BODIES_PER_CLIENT bodies that are
still unfinished SLOW_BODY seconds after their headers (the connection of any more is closed
then), while other clients, and the same client's whole bodies, are served. Real processes on
real ports, raw sockets for the slow client (the protocol class is shared: core/protocol.py).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from product_mcp.core.protocol import SLOW_BODIES_PER_CLIENT, SLOW_BODY
from tests.servers import Service, free_port, start, start_api, start_mcp

BODY_TIMEOUT = 5.0
HEADER_TIMEOUT = 2.0
FAST = {"BODY_TIMEOUT": str(BODY_TIMEOUT), "HEADER_TIMEOUT": str(HEADER_TIMEOUT)}


def slow_body(port: int, path: str, address: str = "127.0.0.1") -> socket.socket:
    """A POST whose headers promise 100 bytes of body, of which 1 is sent."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(address, 0))
    s.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        "content-length: 100\r\n\r\n{".encode()
    )
    return s


def closed_within(s: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing `s`, if it closed it within `seconds`."""
    s.settimeout(seconds)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return got


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_api(tmp_path_factory.mktemp("slow") / "shop.db", env=FAST)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def services(api: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    config = tmp_path_factory.mktemp("web") / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {}}))
    mcp = start_mcp(api.url, env=FAST)
    port = free_port()
    env = {**FAST, "MCP_CONFIG_PATH": str(config)}
    web = start(["web.py", "--host", "127.0.0.1", "--port", str(port)], port=port, env=env)
    yield {"api.py": (api, "/api/purchase"), "main.py": (mcp, "/mcp"), "web.py": (web, "/api/chat")}
    mcp.stop()
    web.stop()


def test_a_body_that_never_comes_is_given_up(services: dict) -> None:
    started = time.monotonic()
    slow = {name: slow_body(svc.port, path) for name, (svc, path) in services.items()}
    try:
        for name, s in slow.items():
            left = started + BODY_TIMEOUT + 4 - time.monotonic()
            said = closed_within(s, left)
            assert said is not None, f"{name} kept a 99-bytes-short body open"
            # Answered in words before the close, as nginx does (found: a bare close).
            assert said.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), (name, said)
            assert said.endswith(b"the request's body did not all arrive within 5 s.\n"), said
    finally:
        for s in slow.values():
            s.close()


def test_late_headers_are_answered_and_a_silent_connection_is_closed(api: Service) -> None:
    """A request whose head stops half-way gets a 408 naming what was late (found: a bare
    close, which clients report as "connection reset"); a connection that never sent a byte,
    and one idle after its answer, are just closed (there is nothing to answer)."""
    half = socket.create_connection(("127.0.0.1", api.port), timeout=5)
    half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line
    silent = socket.create_connection(("127.0.0.1", api.port), timeout=5)
    answered = socket.create_connection(("127.0.0.1", api.port), timeout=5)
    answered.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    first = answered.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 ")
    answered.sendall(b"GET /heal")  # the next request's head, cut short
    try:
        said = closed_within(half, HEADER_TIMEOUT + 4)
        assert said is not None and said.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), said
        assert said.endswith(b"the request's headers did not all arrive within 2 s.\n")
        said = closed_within(answered, HEADER_TIMEOUT + 4)
        assert said is not None and said.startswith(b"HTTP/1.1 408 "), said
        assert closed_within(silent, HEADER_TIMEOUT + 4) == b""
    finally:
        for s in (half, silent, answered):
            s.close()


def test_one_client_cannot_hold_every_connection_with_slow_bodies(api: Service) -> None:
    held: list[socket.socket] = []
    try:
        for _ in range(SLOW_BODIES_PER_CLIENT):
            held.append(slow_body(api.port, "/api/purchase"))
        time.sleep(SLOW_BODY + 0.5)  # now they count as slow
        # The same address's whole bodies are taken all along; so is another address's.
        buy = {"customerName": "Quick", "items": [{"productId": 1, "quantity": 1}]}
        assert httpx.post(f"{api.url}/api/purchase", json=buy, timeout=10).status_code == 200
        other = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=api.url, transport=other, timeout=10) as neighbour:
            assert neighbour.post("/api/purchase", json=buy).status_code == 200
        # One slow body more from this address: dropped once it counts as slow, long before
        # BODY_TIMEOUT.
        extra = slow_body(api.port, "/api/purchase")
        started = time.monotonic()
        said = closed_within(extra, BODY_TIMEOUT - 1)
        assert time.monotonic() - started < BODY_TIMEOUT - 1
        assert said is not None and said.startswith(b"HTTP/1.1 408 "), said
        assert f"already sending {SLOW_BODIES_PER_CLIENT} request bodies slowly".encode() in said
        extra.close()
        # The held ones are given up at BODY_TIMEOUT.
        for s in held:
            assert closed_within(s, BODY_TIMEOUT) is not None
    finally:
        for s in held:
            s.close()


def test_a_body_sent_slowly_but_in_time_is_taken(api: Service, tmp_path: Path) -> None:
    """The deadline is for the whole body, not a gap: a body sent in pieces within it is read."""
    body = json.dumps({"customerName": "Slow but fine", "items": [{"productId": 2, "quantity": 1}]})
    s = socket.create_connection(("127.0.0.1", api.port), timeout=5)
    try:
        s.sendall(
            f"POST /api/purchase HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode()
        )
        for piece in (body[:10], body[10:20], body[20:]):
            time.sleep(0.2)
            s.sendall(piece.encode())
        answer = closed_within(s, 5)
    finally:
        s.close()
    assert answer is not None and answer.split(b" ")[1] in (b"200", b"201"), answer


def open_past_body_timeout(s: socket.socket) -> bytes:
    """What the server sent on `s` until past its body deadline, failing if it closed `s`:
    heartbeats or events, if any, while the stream in front stays alive."""
    time.sleep(BODY_TIMEOUT + 1.5)
    s.settimeout(0.5)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
        raise AssertionError(f"the connection was closed under the stream: {got[-300:]!r}")
    except TimeoutError:
        return got  # open


def test_a_request_queued_behind_a_stream_keeps_the_stream(api: Service) -> None:
    """Found in review: a pipelined POST waits behind the request before it (uvicorn reads no
    further until that one is answered), so its body cannot come yet; its clock running then
    closed the connection, and with it the change-feed stream in front of it."""
    s = socket.create_connection(("127.0.0.1", api.port), timeout=5)
    try:
        s.sendall(
            b"GET /api/changes HTTP/1.1\r\nHost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n"
            b"POST /api/purchase HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json"
            b"\r\ncontent-length: 100\r\n\r\n{"
        )
        assert s.recv(65536).startswith(b"HTTP/1.1 200"), "the stream did not start"
        open_past_body_timeout(s)
    finally:
        s.close()


def test_one_address_cannot_hold_every_connection(tmp_path: Path) -> None:
    """Found in review: an address opening connections faster than the header and body
    deadlines close them filled MAX_CONNECTIONS (503 for everyone else for as long as it kept
    on). An address may hold MAX_CONNECTIONS_PER_CLIENT; this machine's own are exempt (local
    tools, the tests, the bench and a proxy in front all connect from 127.0.0.1)."""
    svc = start_api(tmp_path / "shop.db", env={"MAX_CONNECTIONS_PER_CLIENT": "5"})
    held: list[socket.socket] = []
    try:
        for _ in range(5):  # idle connections, as a flood's are
            held.append(socket.create_connection(("127.0.0.1", svc.port), 5, ("127.0.0.2", 0)))
        extra = socket.create_connection(("127.0.0.1", svc.port), 5, ("127.0.0.2", 0))
        assert closed_within(extra, 3) == b"", "a 6th connection from one address was kept"
        extra.close()
        neighbour = httpx.HTTPTransport(local_address="127.0.0.3")
        with httpx.Client(base_url=svc.url, transport=neighbour, timeout=10) as other:
            assert other.get("/healthz").status_code == 200
        local = [socket.create_connection(("127.0.0.1", svc.port), 5) for _ in range(8)]
        assert httpx.get(f"{svc.url}/healthz", timeout=10).status_code == 200
        for s in local:
            s.close()
        for s in held:
            s.close()
        held.clear()
        time.sleep(0.3)
        again = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=svc.url, transport=again, timeout=10) as back:
            assert back.get("/healthz").status_code == 200  # its connections came back
    finally:
        for s in held:
            s.close()
        svc.stop()


def test_websocket_upgrades_do_not_use_up_an_address_s_connections(tmp_path: Path) -> None:
    """Found from outside: each `Upgrade: websocket` request (answered 403: no route takes a
    WebSocket) moved its connection to uvicorn's WebSocket protocol, which never gave back the
    address's count: after MAX_CONNECTIONS_PER_CLIENT of them the address was refused for
    good. The services take no WebSocket: such a request is a plain HTTP request."""
    svc = start_api(tmp_path / "shop.db", env={"MAX_CONNECTIONS_PER_CLIENT": "5"})
    upgrade = (
        b"GET /api/products HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\n"
        b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    try:
        for _ in range(8):
            with socket.create_connection(("127.0.0.1", svc.port), 5, ("127.0.0.2", 0)) as s:
                s.sendall(upgrade)
                s.settimeout(5)
                assert s.recv(4096).startswith(b"HTTP/1.1 "), "no answer"
        time.sleep(0.3)
        again = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=svc.url, transport=again, timeout=10) as back:
            assert back.get("/healthz").status_code == 200
        assert "Unsupported upgrade" not in svc.log()  # not a log line per such request
    finally:
        svc.stop()


def test_a_body_two_requests_back_waits_for_its_own_turn(api: Service) -> None:
    """Found in review: with a quick GET, then a stream, then a POST whose body is not sent,
    the POST's clock started when the GET was answered, and its 408 was written into the
    middle of the stream. Its clock waits for its own turn (after the stream)."""
    s = socket.create_connection(("127.0.0.1", api.port), timeout=5)
    try:
        s.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            b"GET /api/changes HTTP/1.1\r\nHost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n"
            b"POST /api/purchase HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json"
            b"\r\ncontent-length: 100\r\n\r\n"
        )
        got = open_past_body_timeout(s)
        assert got.count(b"HTTP/1.1 200") == 2 and b"408" not in got, got[-300:]
    finally:
        s.close()


def test_a_queued_request_s_body_gets_its_deadline_when_its_turn_comes(api: Service) -> None:
    """Found from outside: a POST pipelined behind a quick GET, its body never sent, was never
    timed (its clock did not start while it waited, nor when its turn came): 1,000 of them
    from 4 addresses held every connection the server takes, for good. Its clock now starts
    when the request before it is answered."""
    s = socket.create_connection(("127.0.0.1", api.port), timeout=5)
    try:
        s.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            b"POST /api/purchase/quote HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"content-type: application/json\r\ncontent-length: 100\r\n\r\n"
        )
        said = closed_within(s, BODY_TIMEOUT + 5)
        assert said is not None, "the connection was kept past the body's deadline"
        assert b"HTTP/1.1 200" in said and b"408 Request Timeout" in said, said[-300:]
    finally:
        s.close()
