"""Page events: one Server-Sent Events stream per open page (`GET /api/events`), fed by web.py.

Why a hub: web.py holds one upstream subscription per MCP server (chat/live.py) and fans each
update out to every open page, so a hundred tabs cost the shop one subscription. Each stream
has a small queue; a page that stops reading is dropped (its EventSource reconnects and gets
the current state again) instead of growing memory. Streams are bounded per client address,
send a comment line as a heartbeat when idle, and end when the server shuts down.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from product_mcp.core.errors import ProductMcpError
from product_mcp.core.streams import CountedStream

STREAMS_PER_CLIENT = 8  # tabs one browser may keep open at once
QUEUE_EVENTS = 64  # events a slow page may fall behind before it is dropped
HEARTBEAT_S = 15.0

Event = tuple[str, dict[str, Any]]


def sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


class PageEvents:
    """Open page streams; `publish` reaches all of them, `opening` is sent to each new one."""

    def __init__(
        self, per_client: int = STREAMS_PER_CLIENT, heartbeat: float = HEARTBEAT_S
    ) -> None:
        self.per_client = per_client
        self.heartbeat = heartbeat
        self.opening: Callable[[], list[Event]] = list  # the state a new page starts from
        self._queues: set[asyncio.Queue[Event | None]] = set()
        self._clients: dict[str, int] = {}
        self.closed = False

    @property
    def streams(self) -> int:
        return len(self._queues)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        for queue in list(self._queues):
            try:
                queue.put_nowait((kind, data))
            except asyncio.QueueFull:  # not reading: end its stream, it reconnects
                self._end(queue)

    def close_soon(self) -> None:
        """The server is shutting down: end every stream (uvicorn waits for open ones)."""
        self.closed = True
        for queue in list(self._queues):
            self._end(queue)

    @staticmethod
    def _end(queue: asyncio.Queue[Event | None]) -> None:
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
        self._clients[client] = self._clients.get(client, 0) + 1
        queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_EVENTS)
        for event in self.opening()[:QUEUE_EVENTS]:
            queue.put_nowait(event)
        self._queues.add(queue)

        def release() -> None:
            self._queues.discard(queue)
            self._clients[client] -= 1
            if not self._clients[client]:
                del self._clients[client]

        return CountedStream(
            self._body(queue),
            release,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _body(self, queue: asyncio.Queue[Event | None]) -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), self.heartbeat)
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if item is None:
                return
            yield sse(*item)
