"""Bounded in-memory event store: lets a Streamable HTTP client that lost its SSE stream resume.

The SDK only defines the `EventStore` interface; this is the default implementation. It keeps the
newest `max_events` events of all streams together so memory stays bounded however long the
server runs; a client that reconnects later than that gets a fresh stream instead of a replay.
A shared store (Redis, ...) for several replicas can implement the same two methods.
"""

from __future__ import annotations

import secrets
from collections import deque
from itertools import count

from mcp.server.streamable_http import (
    EventCallback,
    EventId,
    EventMessage,
    EventStore,
    StreamId,
)
from mcp.types import JSONRPCMessage


class InMemoryEventStore(EventStore):
    """Events in arrival order; ids are `<process epoch>-<sequence>` so they never repeat."""

    def __init__(self, max_events: int = 10_000) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.max_events = max_events
        # An id from before a restart must not match an event of this process.
        self._epoch = secrets.token_hex(4)
        self._seq = count(1)
        self._order: deque[EventId] = deque()
        self._events: dict[EventId, tuple[StreamId, int, JSONRPCMessage | None]] = {}
        self._streams: dict[StreamId, deque[EventId]] = {}

    @property
    def size(self) -> int:
        """Events held now (not `__len__`: the SDK tests the store's truthiness)."""
        return len(self._events)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        seq = next(self._seq)
        event_id = f"{self._epoch}-{seq}"
        self._events[event_id] = (stream_id, seq, message)
        self._order.append(event_id)
        self._streams.setdefault(stream_id, deque()).append(event_id)
        while len(self._order) > self.max_events:
            self._evict()
        return event_id

    def _evict(self) -> None:
        """Drop the oldest event overall; it is also the oldest of its own stream."""
        old = self._order.popleft()
        stream_id = self._events.pop(old)[0]
        stream = self._streams[stream_id]
        stream.popleft()
        if not stream:
            del self._streams[stream_id]

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        """Send every later event of the same stream, in order; None if the id is unknown."""
        entry = self._events.get(last_event_id)
        if entry is None:
            return None
        stream_id, last_seq, _ = entry
        # Copy: sending awaits, and new events may arrive meanwhile.
        for event_id in list(self._streams.get(stream_id, ())):
            _, seq, message = self._events.get(event_id, (stream_id, 0, None))
            if seq > last_seq and message is not None:  # None marks a priming event
                await send_callback(EventMessage(message, event_id))
        return stream_id
