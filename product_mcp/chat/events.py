"""Page events: one Server-Sent Events stream per open page (`GET /api/events`), fed by web.py.

Why a hub: web.py holds one upstream subscription per MCP server (chat/live.py) and fans each
update out to every open page, so a hundred tabs cost the shop one subscription. Each stream
has a small queue; a page that stops reading is dropped (its EventSource reconnects and gets
the current state again) instead of growing memory. Streams are bounded per client address
and end when the server shuts down.

A stream that died without closing (a laptop slept, a NAT or proxy forgot the connection)
looks to the page like one with nothing to say: EventSource never notices. So each stream
starts with a `ping` event stating its heartbeat period and sends one whenever it has been
idle that long; the page takes a stream silent for three periods for dead and opens a new
one (public/js/live.js). An event, not an SSE comment: comments never reach the page's code.

Nothing missed while a page's stream was down (web.py restarted, the network blinked, a slow
page dropped): events published with `keep=True` (stock) carry an SSE `id:` (`<epoch>.<n>`,
the epoch new in each web.py process) and the last KEEP_EVENTS of them are kept. A page that
reconnects sends the last id it saw (`Last-Event-ID`, which EventSource sends by itself, or
`?after=` when the page opens a new EventSource) and first gets what it missed, handed to
`catch_up` (live.py merges it into one stock event per server). An id this process cannot
answer for (another epoch, or older than what is kept) gets `catch_up(None)`: the whole
state (every server's stock as last heard). A page without an id (a fresh load) gets neither.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from product_mcp.core.errors import ProductMcpError
from product_mcp.core.streams import CountedStream

STREAMS_PER_CLIENT = 8  # tabs one browser may keep open at once
QUEUE_EVENTS = 64  # events a slow page may fall behind before it is dropped
HEARTBEAT_S = 15.0
KEEP_EVENTS = 256  # kept (stock) events a reconnecting page may be sent again
MAX_ID = 64  # characters of a Last-Event-ID looked at

Event = tuple[str, dict[str, Any]]
Item = tuple[str, dict[str, Any], str | None]  # an event and its SSE id


def sse(kind: str, data: dict[str, Any], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


class PageEvents:
    """Open page streams; `publish` reaches all of them, `opening` is sent to each new one."""

    def __init__(
        self, per_client: int = STREAMS_PER_CLIENT, heartbeat: float = HEARTBEAT_S
    ) -> None:
        self.per_client = per_client
        self.heartbeat = heartbeat
        self.opening: Callable[[], list[Event]] = list  # the state a new page starts from
        # What a reconnecting page missed (None: unknown, send the whole state), as events.
        self.catch_up: Callable[[list[Event] | None], list[Event]] = lambda missed: missed or []
        self.epoch = uuid.uuid4().hex[:8]
        self._seq = 0
        self._kept: deque[tuple[int, Event]] = deque(maxlen=KEEP_EVENTS)
        self._queues: set[asyncio.Queue[Item | None]] = set()
        self._clients: dict[str, int] = {}
        self.closed = False

    @property
    def streams(self) -> int:
        return len(self._queues)

    @property
    def last_id(self) -> str:
        return f"{self.epoch}.{self._seq}"

    def publish(self, kind: str, data: dict[str, Any], *, keep: bool = False) -> None:
        """To every open page; `keep`: with an id, and sent again to a page that missed it."""
        event_id = None
        if keep:
            self._seq += 1
            self._kept.append((self._seq, (kind, data)))
            event_id = self.last_id
        for queue in list(self._queues):
            try:
                queue.put_nowait((kind, data, event_id))
            except asyncio.QueueFull:  # not reading: end its stream, it reconnects
                self._end(queue)

    def missed(self, last_id: str | None) -> list[Item]:
        """What a page that last saw `last_id` missed (nothing without an id)."""
        if not last_id:
            return []
        epoch, _, n = last_id[:MAX_ID].partition(".")
        missed: list[Event] | None = None
        if epoch == self.epoch and n.isascii() and n.isdigit():  # int() refuses "²"
            after = int(n)
            if after >= self._seq:
                return []
            if self._kept and self._kept[0][0] <= after + 1:  # nothing it missed was dropped
                missed = [event for seq, event in self._kept if seq > after]
        return [(kind, data, self.last_id) for kind, data in self.catch_up(missed)]

    def close_soon(self) -> None:
        """The server is shutting down: end every stream (uvicorn waits for open ones)."""
        self.closed = True
        for queue in list(self._queues):
            self._end(queue)

    @staticmethod
    def _end(queue: asyncio.Queue[Item | None]) -> None:
        """Its stream ends after what it holds (or at once, when it is full: a page that
        does not read)."""
        if queue.full():
            while not queue.empty():
                queue.get_nowait()
        queue.put_nowait(None)

    def open(self, request: Request) -> StreamingResponse:
        if self.closed:
            raise ProductMcpError("The server is shutting down", 503)
        client = request.client.host if request.client else "?"
        if self._clients.get(client, 0) >= self.per_client:
            raise ProductMcpError(
                f"Too many event streams from {client} (at most {self.per_client}): "
                "close a tab first",
                429,
            )
        queue: asyncio.Queue[Item | None] = asyncio.Queue(QUEUE_EVENTS)
        last_id = request.headers.get("last-event-id") or request.query_params.get("after")
        opening = [(kind, data, None) for kind, data in self.opening()]
        missed = self.missed(last_id)
        for item in [*opening, *missed][:QUEUE_EVENTS]:
            queue.put_nowait(item)
        # Where this stream begins, for a page that has heard no stock event yet; not when it
        # is sent what it missed (those carry the id: named first, a cut right after the ping
        # would resume past them).
        start = None if missed else self.last_id
        # Counted only now: a stream that failed to open must not hold a slot.
        self._clients[client] = self._clients.get(client, 0) + 1
        self._queues.add(queue)

        def release() -> None:
            self._queues.discard(queue)
            self._clients[client] -= 1
            if not self._clients[client]:
                del self._clients[client]

        return CountedStream(
            self._body(queue, start),
            release,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _body(
        self, queue: asyncio.Queue[Item | None], start: str | None
    ) -> AsyncIterator[str]:
        """The first ping names where this stream began (`start`, taken as it was counted in):
        a page that has heard no stock event yet still knows where to resume (a tab hidden
        before the first sale missed what was sold while hidden)."""
        ping = sse("ping", {"heartbeat": self.heartbeat})
        yield "retry: 2000\n\n" + sse("ping", {"heartbeat": self.heartbeat}, start)
        while True:
            try:
                # not wait_for: on Python 3.11 it runs `get` as a task of its own, and an item
                # taken just as the heartbeat ran out was lost with that task
                async with asyncio.timeout(self.heartbeat):
                    item = await queue.get()
            except TimeoutError:
                yield ping
                continue
            if item is None:
                return
            yield sse(*item)
