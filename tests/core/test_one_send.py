"""core/protocol.py's OneSendHead: every service's reply leaves in one write (status line, headers
and body together), a streamed reply's head is not held back, and nothing is lost when the
connection closes. Driven through the real uvicorn protocol of all three services with a
transport that records each write, as uvicorn's own protocol tests do.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from starlette.responses import StreamingResponse
from uvicorn.server import ServerState

from product_mcp.core.protocol import ONE_SEND_MAX, HeaderTimeoutProtocol

pytestmark = pytest.mark.anyio


class Recording(asyncio.Transport):
    """A connection's transport that keeps what was written, and when it was closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed_after: int | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed_after is not None:  # as uvloop does
            raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")
        self.writes.append(bytes(data))

    def close(self) -> None:
        if self.closed_after is None:
            self.closed_after = len(self.writes)

    def is_closing(self) -> bool:
        return self.closed_after is not None

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None: ...


BIG = b"x" * (ONE_SEND_MAX + 1)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        await receive()  # reading the body is what makes uvicorn send `100 Continue`
    path = scope["path"]
    if path == "/forever":  # an endless stream that stops when its client leaves (as SSE does)
        return await StreamingResponse(_forever())(scope, receive, send)
    body = BIG if path == "/big" else b"hello"
    length = [] if path == "/stream" else [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": length})
    if path == "/stream":  # a head, then a pause before the first chunk (an SSE reply)
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b"last"})
    else:
        await send({"type": "http.response.body", "body": body})


FOREVER_ENDED: list[bool] = []


async def _forever() -> Any:
    try:
        while True:
            yield b"tick"
            await asyncio.sleep(0.01)
    finally:
        FOREVER_ENDED.append(True)


async def _serve(*requests: bytes, hang_up_after: float | None = None) -> Recording:
    # log_config=None: the logging of the tests' process stays as it was.
    config = uvicorn.Config(app, http=HeaderTimeoutProtocol, lifespan="off", log_config=None)
    protocol = HeaderTimeoutProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    transport = Recording()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    for request in requests:
        protocol.data_received(request)
        if hang_up_after is None:
            await asyncio.sleep(0.2)
    if hang_up_after is not None:  # the client leaves while a reply is being streamed
        await asyncio.sleep(hang_up_after)
        transport.close()
        protocol.connection_lost(None)
        await asyncio.sleep(0.2)
    protocol.connection_lost(None)
    return transport


def _get(path: str, close: bool = False) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + connection + b"\r\n"


async def test_a_reply_leaves_in_one_write() -> None:
    t = await _serve(_get("/"), _get("/"))
    assert len(t.writes) == 2  # one per reply, on a kept connection
    for write in t.writes:
        assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b"\r\n\r\nhello")


async def test_a_streamed_reply_sends_its_head_at_once() -> None:
    t = await _serve(_get("/stream"))
    assert t.writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and t.writes[0].endswith(b"\r\n\r\n")
    assert t.writes[1:] == [b"5\r\nfirst\r\n", b"4\r\nlast\r\n0\r\n\r\n"]


async def test_a_long_body_is_not_copied_behind_its_head() -> None:
    t = await _serve(_get("/big"))
    assert len(t.writes) == 2 and t.writes[1] == BIG


async def test_nothing_is_lost_when_the_connection_closes() -> None:
    """`Connection: close`: uvicorn closes right after the last write."""
    t = await _serve(_get("/", close=True))
    assert len(t.writes) == 1 and t.writes[0].endswith(b"hello")
    assert t.closed_after == 1


async def test_a_100_continue_is_not_taken_for_the_head() -> None:
    request = b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\ncontent-length: 2\r\n\r\n{}"
    t = await _serve(request)
    assert t.writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert len(t.writes) == 2 and t.writes[1].endswith(b"\r\n\r\nhello")


async def test_a_stream_the_client_left_stops_writing(caplog: pytest.LogCaptureFixture) -> None:
    """uvicorn marks only the last request of a connection as gone: a stream with a request
    pipelined behind it kept writing to the closed connection, and uvloop raised."""
    t = await _serve(_get("/stream"), _get("/"), hang_up_after=0.02)
    assert t.writes and t.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"first" not in b"".join(t.writes)
    assert "Exception in ASGI application" not in caplog.text


async def test_an_endless_stream_ends_when_its_client_leaves() -> None:
    """...and an endless one never ended (found in review): it is told its client left."""
    FOREVER_ENDED.clear()
    await _serve(_get("/forever"), _get("/"), hang_up_after=0.05)
    assert FOREVER_ENDED == [True]


async def test_a_head_held_when_the_connection_closes_still_goes_out() -> None:
    """A HEAD reply is a head alone, and `Connection: close` closes right after it."""
    request = b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    t = await _serve(request)
    assert len(t.writes) == 1 and t.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert t.writes[0].endswith(b"\r\n\r\n") and t.closed_after == 1
