"""The HTTP protocol every service runs under uvicorn: uvicorn's own, plus deadlines for a
request's head and body (408 in words), caps on the connections and slow bodies one client
address may hold, and a reply's head and body in one send.

Why its own module: these are per-connection rules of the wire, the same for api.py, main.py
and web.py (core/config.py hands the class to uvicorn); serve.py only binds and runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol plus deadlines for a request's headers and for its body, and
    caps on the connections and the slow bodies one client address may hold open.

    uvicorn waits forever for headers, so 20,100 connections that never finished theirs took
    every file descriptor of main.py and new clients were reset until they left. Here a
    connection that has not sent a whole request head within `header_timeout` seconds (from
    connecting, or from the first byte of a later request) is closed. The same held for bodies
    (found from outside): 1,000 requests from one client whose bodies never came held every
    connection a service accepts, and everyone else got 503 for as long as they liked. A body
    must now arrive within `body_timeout` seconds of its headers; one still unfinished after
    SLOW_BODY seconds counts as slow, and a client address may hold at most SLOW_BODIES_PER_CLIENT
    slow ones (in this process: per worker) before the connection of any more is closed. (Only
    slow ones count: hundreds of requests at once from one address have their heads and bodies
    arrive apart, but within moments; an upload over a slow link counts, and its deadline is
    BODY_TIMEOUT.) A connection out of time is answered 408 with the reason (RFC 9110 15.5.9), and
    closed (silently if it never sent a byte, or if a reply to an earlier request on it is still
    in progress: a 408 there would be read as that reply). And an address may hold
    at most `per_client` open connections (MAX_CONNECTIONS_PER_CLIENT; this machine's own are
    exempt): one opening connections faster than the deadlines close them filled
    MAX_CONNECTIONS and locked everyone else out (found in review); more are closed at once.
    """

    header_timeout = 10.0
    body_timeout = 30.0
    per_client = 256  # open connections one address may hold (LOCAL_ADDRESSES: any number)
    # Called once the server starts shutting down: uvicorn waits for open responses, so an
    # app with endless streams (api.py's change feed) ends them here.
    on_shutdown: ClassVar[list[Callable[[], None]]] = []
    # This process's open connections, and slow bodies being received, by client address.
    open_by_address: ClassVar[dict[str, int]] = {}
    slow_bodies: ClassVar[dict[str, int]] = {}
    _timer: asyncio.TimerHandle | None = None
    _slow_from: str | None = None  # the address this connection's slow body counts for
    _counted: str | None = None  # the address this connection counts for in `open_by_address`
    _body_waits = False  # a pipelined request's body, not yet its turn to be read
    _wire = 0  # bytes of the current request that were not its body (line, headers, trailers)

    def shutdown(self) -> None:
        for callback in HeaderTimeoutProtocol.on_shutdown:
            callback()
        super().shutdown()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._running: list[Any] = []  # replies in progress with a request queued behind them
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        if address is not None and address not in LOCAL_ADDRESSES:
            held = self.open_by_address.get(address, 0)
            if held >= self.per_client:
                # One address opening connections faster than the deadlines close them
                # could fill MAX_CONNECTIONS and lock everyone else out (found in review).
                transport.close()
                return
            self.open_by_address[address] = held + 1
            self._counted = address
        self._arm(self.header_timeout, self._too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        # Every byte counts until the parser says it was body (on_body): the line, headers,
        # chunk sizes and trailers are what is left. Trailers after a chunked body were not
        # counted, and one connection sending them took api.py to 4 GB (found from outside).
        self._wire += len(data)
        super().data_received(data)
        if self._wire > MAX_HEAD_BYTES and not self.transport.is_closing():
            self._wire = 0
            if not self._may_answer(False):  # a reply in progress would be cut, not answered
                self.transport.close()
                return
            why = f"the request's line, headers and trailers passed {MAX_HEAD_BYTES:,} bytes"
            self._refuse(431, "Request Header Fields Too Large", why)

    def on_body(self, body: bytes) -> None:
        self._wire -= len(body)
        super().on_body(body)

    def on_headers_complete(self) -> None:
        self._disarm()
        # A pipelined request waits behind the one before it (uvicorn stops reading until
        # that one is answered): its body cannot come yet, so its clock does not run.
        queued = self.cycle is not None and not self.cycle.response_complete
        self._body_waits = self._has_body() and queued
        if self._has_body() and not queued:
            self._start_body_clock()
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not before:  # not for an upgrade
            self.cycle.transport = OneSendHead(self.transport, self.loop)  # type: ignore[assignment]
            if before is not None and not before.response_complete:
                # A reply still going, with this one queued (those since answered dropped).
                self._running = [c for c in self._running if not c.response_complete]
                self._running.append(before)

    def _unsupported_upgrade_warning(self) -> None:
        """An `Upgrade` header (no WebSocket is served: core/config.server_limits) is ignored
        and the request served as plain HTTP: no log line each time a client sends one."""

    def connection_lost(self, exc: Exception | None) -> None:
        # uvicorn tells only the connection's last request that its client left: a reply still
        # streaming in front of a pipelined request wrote on forever (found from outside).
        for cycle in self._running:
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        self._running = []
        self._body_done()
        address, self._counted = self._counted, None
        if address is not None:
            _less(self.open_by_address, address)
        super().connection_lost(exc)

    def on_message_complete(self) -> None:
        self._body_waits = False
        self._wire = 0  # the next request's, if one comes
        self._body_done()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The queued request's turn (uvicorn reads again): its body's clock starts now. It
        # never did: a body that never came held the connection for good (found from outside:
        # 1,000 of them, from 4 addresses, held every connection the server takes).
        # Only when the request just started is that one: with another still queued in front
        # of it (a stream, say), its 408 would land in the middle of that reply (review).
        if self._body_waits and not self.pipeline and not self.transport.is_closing():
            self._body_waits = False
            self._start_body_clock()

    def _start_body_clock(self) -> None:
        if self.body_timeout <= SLOW_BODY:
            self._arm(self.body_timeout, self._body_too_slow)
        else:
            self._arm(SLOW_BODY, self._body_is_slow)

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return value.strip() not in (b"0", b"")
            if name == b"transfer-encoding":
                return True
        return False

    def _body_is_slow(self) -> None:
        address = self.client[0] if self.client else "?"
        slow = self.slow_bodies.get(address, 0)
        if slow >= SLOW_BODIES_PER_CLIENT:
            # The app sees the client leave; nothing was read whole.
            why = f"this address is already sending {slow} request bodies slowly"
            return self._too_slow(why if self._may_answer(True) else "")
        self.slow_bodies[address] = slow + 1
        self._slow_from = address
        self._arm(self.body_timeout - SLOW_BODY, self._body_too_slow)

    def _body_done(self) -> None:
        self._disarm()
        address, self._slow_from = self._slow_from, None
        if address is not None:
            _less(self.slow_bodies, address)

    def _arm(self, seconds: float, then: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, then)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_too_slow(self) -> None:
        why = f"the request's headers did not all arrive within {self.header_timeout:g} s"
        self._too_slow(why if self._may_answer(False) else "")

    def _body_too_slow(self) -> None:
        why = f"the request's body did not all arrive within {self.body_timeout:g} s"
        self._too_slow(why if self._may_answer(True) else "")

    def _may_answer(self, body: bool) -> bool:
        """Whether a 408 would be this connection's next reply: for a body, its own request's
        reply has not begun; for headers, no reply is in progress (one to a request before,
        still being worked on or streamed, would be cut off, not answered out of turn)."""
        if body:
            return (
                self.cycle is not None
                and not self.cycle.response_started
                and all(c.response_complete for c in self._running)
            )
        return self.cycle is None or self.cycle.response_complete

    def _too_slow(self, why: str = "") -> None:
        """Close the connection; with a 408 saying `why` if one is given, so a client that
        reads before it writes again learns what happened (one still sending may see only the
        connection reset, as before; nginx closes without a word)."""
        if self.transport.is_closing():
            return
        if why:
            self._refuse(408, "Request Timeout", why)
        else:
            self.transport.close()

    def _refuse(self, status: int, reason: str, why: str) -> None:
        """Answer `status` saying `why` (as text), then close the connection."""
        self._disarm()
        if self.transport.is_closing():
            return
        text = f"{status} {reason}: {why}.\n".encode()
        head = f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        head += f"connection: close\r\ncontent-length: {len(text)}\r\n\r\n"
        self.transport.write(head.encode("latin-1") + text)
        self.transport.close()


class OneSendHead:
    """A response's transport that holds its first write (the status line and headers) until
    the next write of the same loop turn, so head and body leave in one send.

    Why: uvicorn writes the head and then the body with a send each, so every answer cost two
    system calls and two TCP segments, and the client woke up twice to read it. Held only to the
    end of the loop turn, so a streaming response's head is not delayed. A `100 Continue` goes
    out at once and is not taken for the head. Writes once the connection is closing are
    dropped: uvicorn marks only a connection's last request as disconnected, so a stream with a
    request pipelined behind it kept writing to the closed connection, and uvloop raised
    (a traceback in the log at every heartbeat; found from outside)."""

    __slots__ = ("_head", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None
        self._held = False  # whether the first write has been seen

    def write(self, data: bytes) -> None:
        if self._transport.is_closing():
            return
        if not self._held:
            if data.startswith(b"HTTP/1.1 100 "):
                return self._transport.write(data)
            self._held = True
            self._head = data
            self._loop.call_soon(self._flush)
            return
        head, self._head = self._head, None
        if head is None:
            self._transport.write(data)
        elif len(data) <= ONE_SEND_MAX:
            self._transport.write(head + data)
        else:
            self._transport.write(head)
            self._transport.write(data)

    def _flush(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


ONE_SEND_MAX = 64 * 1024  # a longer body is not copied behind its head
SLOW_BODY = 2.0  # seconds after its headers when a body still unfinished counts as slow
# A request line and headers together at most (nginx's default allows 32 KiB): httptools sets
# no bound, and one connection streaming header lines took a service to 1.4 GB.
MAX_HEAD_BYTES = 64 * 1024
SLOW_BODIES_PER_CLIENT = 32
# This machine: its own tools, the tests, the bench and a reverse proxy in front all connect
# from here, often by the hundred; they are not held to MAX_CONNECTIONS_PER_CLIENT.
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


def _less(counts: dict[str, int], address: str) -> None:
    left = counts.get(address, 1) - 1
    if left > 0:
        counts[address] = left
    else:
        counts.pop(address, None)
