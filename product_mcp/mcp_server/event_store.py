"""Bounded in-memory event store: lets a Streamable HTTP client that lost its SSE stream resume.

The SDK only defines the `EventStore` interface; this is the default implementation. It keeps the
newest `max_events` events of all streams together so memory stays bounded however long the
server runs; a client that reconnects later than that gets a fresh stream instead of a replay.
A shared store (Redis, ...) for several replicas can implement the same two methods.

Why a replay *follows* a request that is still running: the SDK (mcp 2.3) replays the stored
events, and only afterwards registers the resumed connection for live messages. An event the
tool emits in between (while the replay awaits the socket) is stored but reaches no connection,
and if the dropped POST is still registered when the client resumes (the server has not noticed
the dead connection yet) the SDK does not register the new one at all: the client then never
gets the rest, nor the result. So for a request's stream `replay_events_after` keeps sending
the events stored after it started, from this store, until the request's own response has
been sent (or nothing arrives for `follow_timeout` seconds). Every event reaches the resumed
client exactly once, in order, whatever the timing.

Why sessions get their own view (`SessionEventStore`): the SDK hands one store to every session
and names streams by request id (every client counts from 1) or by one fixed name for the GET
stream, so a replay keyed by stream id alone would send one session's results into another's.
Each session's streams are namespaced, a foreign event id is unknown to it, and its events are
dropped when the session ends.
"""

from __future__ import annotations

import secrets
from collections import Counter, deque
from itertools import count
from typing import Any

import anyio
from mcp.server.streamable_http import (
    GET_STREAM_KEY,
    EventCallback,
    EventId,
    EventMessage,
    EventStore,
    StreamId,
)
from mcp.types import JSONRPCError, JSONRPCMessage, JSONRPCResponse

from product_mcp.core import mcp_compat

EVENT_OVERHEAD = 128  # bytes of bookkeeping per event beyond its JSON


class InMemoryEventStore(EventStore):
    """Events in arrival order; ids are `<process epoch>-<sequence>` so they never repeat.

    Bounded three ways, so no client can make it grow without limit: `max_events` events,
    `max_bytes` of JSON in all, and `max_session_bytes` per session (a session's own oldest
    events go first, so one session cannot push out everyone else's). `follow_timeout`
    (seconds): how long a replay of a request's stream waits for that request's next event
    before it hands over to the SDK's live stream; 0 replays only what is stored.
    """

    def __init__(
        self,
        max_events: int = 10_000,
        follow_timeout: float = 0,
        max_bytes: int = 64 * 1024 * 1024,
        max_session_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        if max_events < 1:
            raise ValueError("max_events must be at least 1")
        self.max_events = max_events
        self.follow_timeout = follow_timeout
        self.max_bytes = max_bytes
        self.max_session_bytes = max_session_bytes
        # An id from before a restart must not match an event of this process.
        self._epoch = secrets.token_hex(4)
        self._seq = count(1)
        self._order: deque[EventId] = deque()
        # id -> (stream, seq, message, size in bytes)
        self._events: dict[EventId, tuple[StreamId, int, JSONRPCMessage | None, int]] = {}
        self._streams: dict[StreamId, deque[EventId]] = {}
        self._sessions: dict[str, deque[EventId]] = {}  # per session, oldest first
        self._session_bytes: Counter[str] = Counter()
        self.bytes = 0
        self._arrived = anyio.Event()  # set (and replaced) whenever an event is stored

    def view(self, session_id: str) -> SessionEventStore:
        """The store as one session sees it (see SessionEventStore)."""
        return SessionEventStore(self, session_id)

    @property
    def size(self) -> int:
        """Events held now (not `__len__`: the SDK tests the store's truthiness)."""
        return len(self._events)

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        seq = next(self._seq)
        event_id = f"{self._epoch}-{seq}"
        size = EVENT_OVERHEAD + (
            len(message.model_dump_json(by_alias=True, exclude_unset=True)) if message else 0
        )
        session = _session_of(stream_id)
        self._events[event_id] = (stream_id, seq, message, size)
        self._order.append(event_id)
        self._streams.setdefault(stream_id, deque()).append(event_id)
        self._sessions.setdefault(session, deque()).append(event_id)
        self._session_bytes[session] += size
        self.bytes += size
        while self._session_bytes[session] > self.max_session_bytes and self._drop_oldest(
            self._sessions[session], keep=event_id
        ):
            pass
        while (len(self._events) > self.max_events or self.bytes > self.max_bytes) and (
            self._drop_oldest(self._order, keep=event_id)
        ):
            pass
        arrived, self._arrived = self._arrived, anyio.Event()
        arrived.set()
        return event_id

    def _drop_oldest(self, order: deque[EventId], keep: EventId) -> bool:
        """Drop the oldest live event of `order` (never `keep`, the newest); False if none.

        The oldest of any ordered subset is also the oldest of its own stream."""
        while order and order[0] not in self._events:  # ids already dropped elsewhere
            order.popleft()
        if not order or order[0] == keep:
            return False
        old = order.popleft()
        stream_id, _, _, size = self._events.pop(old)
        stream = self._streams[stream_id]
        stream.remove(old)
        if not stream:
            del self._streams[stream_id]
        session = _session_of(stream_id)
        self.bytes -= size
        self._session_bytes[session] -= size
        if self._session_bytes[session] <= 0:
            del self._session_bytes[session]
        return True

    def forget(self, prefix: str) -> None:
        """Drop every event of the streams whose id starts with `prefix` (an ended session)."""
        for stream_id in [k for k in self._streams if k.startswith(prefix)]:
            for event_id in self._streams.pop(stream_id):
                entry = self._events.pop(event_id, None)
                if entry is not None:
                    self.bytes -= entry[3]
                    self._session_bytes[_session_of(stream_id)] -= entry[3]
        session = prefix.rstrip("/")
        self._sessions.pop(session, None)
        self._session_bytes.pop(session, None)
        if len(self._order) > 2 * len(self._events) + 1024:  # compact the tombstones
            self._order = deque(e for e in self._order if e in self._events)

    def stream_of(self, event_id: EventId) -> StreamId | None:
        entry = self._events.get(event_id)
        return entry[0] if entry else None

    def _after(self, stream_id: StreamId, last_seq: int) -> list[tuple[EventId, int]]:
        """(id, seq) of the stream's events later than `last_seq`, oldest first."""
        later: list[tuple[EventId, int]] = []
        for event_id in reversed(self._streams.get(stream_id, ())):
            seq = self._events[event_id][1]
            if seq <= last_seq:
                break
            later.append((event_id, seq))
        later.reverse()
        return later

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        """Send every later event of the same stream, in order; None if the id is unknown.

        Events stored while this runs are sent too; a request's stream is followed until its
        response is sent (see the module docstring)."""
        entry = self._events.get(last_event_id)
        if entry is None:
            return None
        stream_id, last_seq, last_message, _ = entry
        if isinstance(last_message, JSONRPCResponse | JSONRPCError):
            return stream_id  # the client already has the answer: nothing can follow it
        is_get_stream = stream_id.rpartition("/")[2] == GET_STREAM_KEY
        follow = 0 if is_get_stream else self.follow_timeout
        while True:
            arrived = self._arrived  # taken before looking, so no event can slip past the wait
            pending = self._after(stream_id, last_seq)
            for event_id, seq in pending:
                last_seq = seq
                message = self._events.get(event_id, (stream_id, seq, None))[2]
                if message is None:  # a priming event (or evicted meanwhile)
                    continue
                await send_callback(EventMessage(message, event_id))
                if isinstance(message, JSONRPCResponse | JSONRPCError):
                    return stream_id  # the request is answered: nothing more will come
            if pending:
                continue  # sending awaited: look again for events stored meanwhile
            if follow <= 0:
                return stream_id
            with anyio.move_on_after(follow):
                await arrived.wait()
            if not arrived.is_set():
                return stream_id  # quiet too long: the SDK's live stream takes over


def _session_of(stream_id: StreamId) -> str:
    """The session a stream belongs to (SessionEventStore prefixes `<session>/`)."""
    return stream_id.partition("/")[0] if "/" in stream_id else ""


class SessionEventStore(EventStore):
    """One session's view of a shared store: its own streams only, under a namespaced id."""

    def __init__(self, store: InMemoryEventStore, session_id: str) -> None:
        self.store = store
        self.prefix = f"{session_id}/"

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        return await self.store.store_event(self.prefix + stream_id, message)

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        """None (unknown) for an event of another session, else the SDK's own stream id."""
        stream_id = self.store.stream_of(last_event_id)
        if stream_id is None or not stream_id.startswith(self.prefix):
            return None
        replayed = await self.store.replay_events_after(last_event_id, send_callback)
        return replayed.removeprefix(self.prefix) if replayed else None


def scope_per_session(manager: Any, store: Any) -> None:
    """Give each Streamable HTTP session of `manager` its own view of `store` (`view(id)`),
    and tell the store when it ends (`forget`; mcp 2.3 has no public hook: see
    product_mcp.core.mcp_compat). Works for InMemoryEventStore and redis_events.RedisEventStore."""
    mcp_compat.wrap_session_lifecycle(
        manager,
        on_admit=lambda transport: mcp_compat.set_event_store(
            transport, store.view(transport.mcp_session_id)
        ),
        on_discard=lambda session_id: store.forget(f"{session_id}/"),
    )
