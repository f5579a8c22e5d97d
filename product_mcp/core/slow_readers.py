"""Dropping a client that stops reading: no write to it may wait longer than a timeout.

Why here and not per service: main.py's never-reading SSE clients filled memory (a test took
it from 97 to 1,237 MiB with 600 messages parked for one), and web.py's page stream held its
client's place under the per-client limit for as long as the socket stayed open after the page
stopped reading (found in review): the same cut serves both. `streams`: the paths whose GET is
a long-lived event stream; when one ends, `reclaimer` is asked to give back what it held
(core/memory.py says why that needs a garbage collection).
"""

from __future__ import annotations

import asyncio
import logging

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from product_mcp.core.memory import reclaimer

log = logging.getLogger("http")
PIECE = 64 * 1024  # a body's bytes written at a time (the timeout is per write)


class SlowReaderCutoff:
    """Drop a connection whose client stops reading: no write may wait over `timeout`.

    An SSE client that never reads fills its socket buffer; every message for it then waits in
    memory (a test took main.py from 97 to 1,237 MiB with 600 such messages). Cutting the
    connection ends the session, and `reclaimer` then gives back what it held (core/memory.py
    says why that needs a garbage collection).

    Why a watch per request and not `anyio.fail_after` around each write: a tools/call makes
    4-5 writes, and a cancel scope per write cost ~60 us of CPU per call; one scope per request
    and one timer that is armed only while a write waits cost a third of that.
    """

    def __init__(self, app: ASGIApp, timeout: float, streams: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.timeout = timeout
        self.streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        streamed: list[bool] = []  # whether a GET stream began (an event stream, 200)
        with anyio.CancelScope() as cancel:
            watch = _WriteWatch(send, self.timeout, cancel)
            sender = watch.send
            if scope["method"] == "GET" and scope["path"] in self.streams:

                async def sender(message: Message) -> None:
                    if message["type"] == "http.response.start" and message["status"] == 200:
                        kind = dict(message.get("headers") or ()).get(b"content-type", b"")
                        streamed.append(kind.startswith(b"text/event-stream"))
                    await watch.send(message)

            try:
                await self.app(scope, receive, sender)
            except Exception as e:
                if not (watch.tripped or _caused_by_slow_client(e)):
                    raise
                watch.tripped = True
            finally:
                watch.stop()
        if watch.tripped:
            log.info("dropped %s %s: the client stopped reading", scope["method"], scope["path"])
            reclaimer.soon()  # what it parked is freed only by the cycle collector (memory.py)
        elif any(streamed):
            # A stream ended (an SSE session, a session's GET stream): its cancelled tasks are
            # reference cycles, so 500 closed SSE streams left RSS +50 % over idle until a full
            # collection happened to run (bench "RSS after close vs idle"). At most every 10 s.
            reclaimer.soon()


class _WriteWatch:
    """One request's writes: cancels `cancel` once writes have been waiting `timeout` s.

    `since` is when the current run of waiting writes began (usually one write; with several
    at once, the first). The timer fires at `since + timeout`; if a later write is waiting by
    then, it re-arms for that one instead.
    """

    __slots__ = ("_send", "cancel", "loop", "pending", "since", "timeout", "timer", "tripped")

    def __init__(self, send: Send, timeout: float, cancel: anyio.CancelScope) -> None:
        self._send = send
        self.timeout = timeout
        self.cancel = cancel
        self.loop = asyncio.get_running_loop()
        self.pending = 0
        self.since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.tripped = False

    async def send(self, message: Message) -> None:
        """One write; a large body goes in PIECE-sized writes, so what is timed is progress:
        one 8 MB write to a client reading steadily at 0.8 MB/s was cut (found in review)."""
        body = message.get("body", b"") if message["type"] == "http.response.body" else b""
        if len(body) <= PIECE:
            return await self._send_one(message)
        more = message.get("more_body", False)
        for start in range(0, len(body), PIECE):
            last = start + PIECE >= len(body)
            piece = {"type": "http.response.body", "body": body[start : start + PIECE]}
            await self._send_one({**piece, "more_body": more if last else True})

    async def _send_one(self, message: Message) -> None:
        if self.tripped:
            raise ClientTooSlow  # e.g. a shielded clean-up writing to a client that is gone
        self.pending += 1
        if self.pending == 1:
            self.since = self.loop.time()
            if self.timer is None:
                self.timer = self.loop.call_at(self.since + self.timeout, self._check)
        try:
            await self._send(message)
        finally:
            self.pending -= 1

    def _check(self) -> None:
        self.timer = None
        if not self.pending:
            return  # the next write arms it again
        due = self.since + self.timeout
        if self.loop.time() >= due:
            self.tripped = True
            self.cancel.cancel()
        else:
            self.timer = self.loop.call_at(due, self._check)

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class ClientTooSlow(Exception):
    """A write to the client waited longer than allowed."""


def _caused_by_slow_client(exc: BaseException) -> bool:
    if isinstance(exc, ClientTooSlow):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_caused_by_slow_client(e) for e in exc.exceptions)
    return exc.__cause__ is not None and _caused_by_slow_client(exc.__cause__)
