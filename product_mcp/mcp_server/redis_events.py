"""Replay events of legacy sessions in Redis, so a `Last-Event-ID` replay works on any replica.

Why: the SDK's event store lives in one process, so a client whose stream broke could resume
only on the replica that stored its events; behind a balancer, after that replica's death,
its events were gone. `RedisEventStore` keeps every session's events in one Redis stream per
session, bounded in bytes (`REDIS_SESSION_EVENT_BYTES`, oldest dropped first, atomically in a
Lua script) and in time (`REDIS_EVENT_TTL` after its last event). While Redis is down
(redis_link.py) events go to the in-memory store, whose replay works on this replica only;
their ids tell the two apart (`R` prefix for Redis's).

A request another process ran: a client resuming on this replica a request that ran on one that
died waited for ever (up to nginx's hour) once the replay was over, on a live stream here that
no process would ever answer (found from outside). A view knows the streams this process wrote
(`mine`); for any other, the replay follows Redis while events keep coming (the other process
may well be alive) and, after `ELSEWHERE_QUIET_S` without one and no answer, answers the request
itself with an error saying it may or may not have completed, and ends the stream.
"""

from __future__ import annotations

import time

import anyio
from mcp.server.streamable_http import (
    GET_STREAM_KEY,
    EventCallback,
    EventId,
    EventMessage,
    EventStore,
    StreamId,
)
from mcp_types import (
    INTERNAL_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)

from product_mcp.mcp_server.event_store import EVENT_OVERHEAD, InMemoryEventStore
from product_mcp.mcp_server.redis_link import RedisLink

# KEYS: events stream, its byte counter. ARGV: stream id, message JSON, size, max bytes, ttl.
# Adds the event, then drops the session's oldest events until it fits (never the new one).
_STORE = """
local id = redis.call('XADD', KEYS[1], '*', 's', ARGV[1], 'm', ARGV[2], 'n', ARGV[3])
local total = redis.call('INCRBY', KEYS[2], tonumber(ARGV[3]))
local max = tonumber(ARGV[4])
while total > max do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #oldest == 0 or oldest[1][1] == id then break end
  redis.call('XDEL', KEYS[1], oldest[1][1])
  total = redis.call('DECRBY', KEYS[2], tonumber(oldest[1][2][6]))
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
return id
"""
REDIS_ID = "R"  # event ids from Redis start with it; others are the in-memory fallback's
ELSEWHERE_QUIET_S = 5.0  # quiet on a stream another process wrote before it is given up
MINE_MAX = 4096  # stream ids a view remembers writing (a long session's oldest go first)
INTERRUPTED = (
    "The request was interrupted: the server process that ran it stopped or cannot be reached, "
    "and its answer was lost. It may or may not have completed: check, or call it again "
    "(create_purchase with the same idempotencyKey returns the first order instead of buying "
    "twice)."
)


class RedisEventStore:
    """Per-session replay events in Redis, with the in-memory store as the fallback."""

    def __init__(
        self, link: RedisLink, ttl: float, max_session_bytes: int, follow_timeout: float
    ) -> None:
        self.link = link
        self.ttl = max(1, int(ttl))
        self.max_session_bytes = max_session_bytes
        self.follow_timeout = follow_timeout
        self.elsewhere_quiet = min(follow_timeout, ELSEWHERE_QUIET_S)
        self.local = InMemoryEventStore(10_000, follow_timeout)

    def view(self, session_id: str) -> RedisSessionEvents:
        return RedisSessionEvents(self, session_id)

    def forget(self, prefix: str) -> None:
        """A session ended here: drop its fallback events (Redis's expire on their own)."""
        self.local.forget(prefix)

    async def delete(self, session_id: str) -> None:
        keys = [self.link.key("events", session_id), self.link.key("eventbytes", session_id)]
        await self.link.run(lambda r: r.delete(*keys), 0)


class RedisSessionEvents(EventStore):
    """One session's events: the stream `<prefix>events:<session>`, entries {s, m, n}."""

    def __init__(self, store: RedisEventStore, session_id: str) -> None:
        self.store = store
        self.session_id = session_id
        self.key = store.link.key("events", session_id)
        self.bytes_key = store.link.key("eventbytes", session_id)
        self.local = store.local.view(session_id)
        self.mine: dict[str, None] = {}  # streams this process wrote, oldest first

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        if stream_id not in self.mine:
            self.mine[stream_id] = None
            if len(self.mine) > MINE_MAX:
                del self.mine[next(iter(self.mine))]
        data = message.model_dump_json(by_alias=True, exclude_unset=True) if message else ""
        size = EVENT_OVERHEAD + len(data)
        store = self.store
        keys, args = [self.key, self.bytes_key], [stream_id, data, size]
        args += [store.max_session_bytes, store.ttl]
        entry = await store.link.run(lambda r: r.eval(_STORE, 2, *keys, *args), None)
        if entry is None:
            return await self.local.store_event(stream_id, message)
        return REDIS_ID + (entry.decode() if isinstance(entry, bytes) else str(entry))

    async def replay_events_after(
        self, last_event_id: EventId, send_callback: EventCallback
    ) -> StreamId | None:
        """As InMemoryEventStore's: the same stream's later events, following a request that
        is still running (here by polling Redis) until its response or a quiet spell."""
        if not last_event_id.startswith(REDIS_ID):
            return await self.local.replay_events_after(last_event_id, send_callback)
        last = last_event_id[len(REDIS_ID) :]
        link = self.store.link
        found = await link.run(lambda r: r.xrange(self.key, last, last), None)
        if not found:
            return None
        fields = found[0][1]
        stream_id = fields[b"s"].decode()
        if _is_answer(_message(fields)):
            return stream_id
        here = stream_id in self.mine
        follow = self.store.follow_timeout if here else self.store.elsewhere_quiet
        if stream_id == GET_STREAM_KEY:
            follow, here = 0.0, True
        quiet_until = time.monotonic() + follow
        while True:
            later = await link.run(lambda r, a=last: r.xrange(self.key, f"({a}", "+", 200), None)
            if later is None:
                return stream_id  # Redis went away: the live stream takes over
            for entry_id, fields in later:
                last = entry_id.decode()
                if fields[b"s"].decode() != stream_id:
                    continue
                message = _message(fields)
                if message is None:  # a priming event
                    continue
                await send_callback(EventMessage(message, REDIS_ID + last))
                if _is_answer(message):
                    return stream_id
            if later:
                quiet_until = time.monotonic() + follow
                continue
            if time.monotonic() >= quiet_until:
                if here:
                    return stream_id  # still running here: the live stream carries its answer
                await send_callback(EventMessage(_interrupted(stream_id), None))
                return None  # answered: no live stream to wait on
            await anyio.sleep(0.05)


def _message(fields: dict[bytes, bytes]) -> JSONRPCMessage | None:
    data = fields.get(b"m", b"")
    return jsonrpc_message_adapter.validate_json(data, by_name=False) if data else None


def _interrupted(stream_id: str) -> JSONRPCError:
    """The error for the request a stream was opened for (a POST's stream is named by its
    request's id; a numeric one is sent back as a number, as clients send them)."""
    rid: str | int = int(stream_id) if stream_id.isdigit() and len(stream_id) < 16 else stream_id
    error = ErrorData(code=INTERNAL_ERROR, message=INTERRUPTED)
    return JSONRPCError(jsonrpc="2.0", id=rid, error=error)


def _is_answer(message: JSONRPCMessage | None) -> bool:
    return isinstance(message, JSONRPCResponse | JSONRPCError)
