"""Legacy sessions and replay events in Redis, so any replica can serve any session.

Why: a legacy (handshake) session lived in the memory of the process that opened it, so a
replica's death or restart cost every client its session (404, re-initialize) and a
`Last-Event-ID` replay worked only on the replica that had stored the events. With
`REDIS_URL` set:

- `SessionSharing` (ASGI middleware on /mcp) writes each session's state when it is opened
  (id, negotiated protocol version, the client's `initialize` params: capabilities and info),
  when its handshake completes and when `logging/setLevel` changes its log level; the record
  lives `MCP_SESSION_IDLE_TIMEOUT` seconds after the session's last request. A request for a
  session this process does not hold is served by restoring it from that record (same id,
  handshake done: `mcp_compat.restore_session`) instead of the SDK's 404. A DELETE removes it.
- `RedisEventStore` keeps every session's replay events in one Redis stream per session,
  bounded in bytes (`REDIS_SESSION_EVENT_BYTES`, oldest dropped first, atomically in a Lua
  script) and in time (`REDIS_EVENT_TTL` after its last event), so a replay works anywhere.

Redis down: `RedisLink` says so once in the log and skips Redis (retrying every second)
until it answers again, then says so too. Meanwhile sessions this process holds, new
sessions and the stateless protocol work as before; events go to the in-memory store (their
replay works on this replica); only restoring another replica's session fails (404).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import redis.asyncio as aioredis
import redis.exceptions
from mcp.server.streamable_http import (
    GET_STREAM_KEY,
    EventCallback,
    EventId,
    EventMessage,
    EventStore,
    StreamId,
)
from mcp_types import (
    InitializeRequestParams,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from product_mcp.core import mcp_compat
from product_mcp.core.config import mask_url
from product_mcp.mcp_server.event_store import EVENT_OVERHEAD, InMemoryEventStore
from product_mcp.mcp_server.guard import _header, _parse, read_message
from product_mcp.mcp_server.server import _LEVELS, LEVEL_KEY
from product_mcp.mcp_server.sessions import SessionRegistry, client_key, opening_client

log = logging.getLogger("mcp.shared")
T = TypeVar("T")
MAX_CLIENT_PARAMS = 64 * 1024  # bytes of `initialize` params kept for a session
RETRY_S = 1.0  # how often a process tries Redis again while it is down
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class RedisLink:
    """One Redis client for the process, and what to do when Redis does not answer."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.client: aioredis.Redis | None = None
        self.down = False
        self._retry_at = 0.0

    def open(self) -> None:
        self.client = aioredis.Redis.from_url(
            self.url, socket_timeout=2, socket_connect_timeout=1, health_check_interval=15
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    def key(self, kind: str, session_id: str) -> str:
        return f"{self.prefix}{kind}:{session_id}"

    async def run(self, op: Callable[[aioredis.Redis], Awaitable[T]], default: T) -> T:
        """`op(client)`, or `default` while Redis is down (said once per outage)."""
        if self.client is None or (self.down and time.monotonic() < self._retry_at):
            return default
        try:
            result = await op(self.client)
        except REDIS_ERRORS as e:
            self._retry_at = time.monotonic() + RETRY_S
            if not self.down:
                self.down = True
                log.warning(
                    "Redis at %s does not answer (%s): sessions and replay events are not "
                    "shared with other replicas until it does; this replica keeps serving",
                    mask_url(self.url),
                    e,
                )
            return default
        except redis.exceptions.RedisError:
            log.exception("Redis refused a command")
            return default
        if self.down:
            self.down = False
            log.warning("Redis at %s answers again: sessions are shared again", mask_url(self.url))
        return result


# --- replay events ---------------------------------------------------------------------------

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


class RedisEventStore:
    """Per-session replay events in Redis, with the in-memory store as the fallback."""

    def __init__(
        self, link: RedisLink, ttl: float, max_session_bytes: int, follow_timeout: float
    ) -> None:
        self.link = link
        self.ttl = max(1, int(ttl))
        self.max_session_bytes = max_session_bytes
        self.follow_timeout = follow_timeout
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

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
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
        follow = 0.0 if stream_id == GET_STREAM_KEY else self.store.follow_timeout
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
                return stream_id
            await anyio.sleep(0.05)


def _message(fields: dict[bytes, bytes]) -> JSONRPCMessage | None:
    data = fields.get(b"m", b"")
    return jsonrpc_message_adapter.validate_json(data, by_name=False) if data else None


def _is_answer(message: JSONRPCMessage | None) -> bool:
    return isinstance(message, JSONRPCResponse | JSONRPCError)


# --- session state -----------------------------------------------------------------------------


class SharedSessions:
    """Each legacy session's state as a Redis hash `<prefix>session:<id>`."""

    def __init__(self, link: RedisLink, ttl: float) -> None:
        self.link = link
        self.ttl = max(1, int(ttl))

    async def save(self, session_id: str, fields: dict[str, str]) -> None:
        key = self.link.key("session", session_id)

        async def op(r: aioredis.Redis) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                pipe.expire(key, self.ttl)
                await pipe.execute()

        await self.link.run(op, None)

    async def update(self, session_id: str, fields: dict[str, str]) -> None:
        """Change a recorded session (one opened while Redis was down stays unrecorded)."""
        key = self.link.key("session", session_id)

        async def op(r: aioredis.Redis) -> None:
            if await r.exists(key):
                await r.hset(key, mapping=fields)  # type: ignore[arg-type]

        await self.link.run(op, None)

    async def load(self, session_id: str) -> dict[str, str] | None:
        raw = await self.link.run(lambda r: r.hgetall(self.link.key("session", session_id)), {})
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    async def touch(self, session_id: str) -> None:
        await self.link.run(lambda r: r.expire(self.link.key("session", session_id), self.ttl), 0)

    async def delete(self, session_id: str) -> None:
        await self.link.run(lambda r: r.delete(self.link.key("session", session_id)), 0)


def opening_record(params: Any) -> dict[str, str]:
    """What an `initialize` request's params make of a new session's record."""
    params = params if isinstance(params, dict) else {}
    requested = params.get("protocolVersion")
    version = requested if requested in HANDSHAKE_PROTOCOL_VERSIONS else LATEST_HANDSHAKE_VERSION
    record = {"version": version, "initialized": "0"}
    client = json.dumps(params, separators=(",", ":"))
    if len(client) <= MAX_CLIENT_PARAMS:
        record["client"] = client
    return record


def prepare_connection(record: dict[str, str]) -> Callable[[Any], None]:
    """Set on a restored session's connection what its handshake had set."""

    def prepare(connection: Any) -> None:
        connection.protocol_version = record.get("version") or LATEST_HANDSHAKE_VERSION
        if record.get("client"):
            try:
                connection.client_params = InitializeRequestParams.model_validate_json(
                    record["client"], by_name=False
                )
            except ValueError:
                log.warning("session record has unusable client params; restored without")
        # Recorded at `initialize`; its `initialized` flag is written just after the client's
        # notification is answered, so a session restored in between would refuse the client's
        # first request: a session that reached another replica has done its handshake.
        connection.initialized.set()
        if record.get("level") in _LEVELS:
            connection.state[LEVEL_KEY] = record["level"]

    return prepare


class SessionSharing:
    """ASGI middleware on /mcp: records sessions in Redis, restores the ones held elsewhere."""

    def __init__(
        self,
        app: ASGIApp,
        sessions: SharedSessions,
        events: RedisEventStore | None,
        registry: SessionRegistry | None,
        manager: Callable[[], Any],
    ) -> None:
        self.app = app
        self.shared = sessions
        self.events = events
        self.registry = registry
        self.manager = manager
        self._locks: dict[str, anyio.Lock] = {}
        self._touched: dict[str, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") != "/mcp":
            return await self.app(scope, receive, send)
        session_id = _header(scope, b"mcp-session-id")
        body, message = b"", None
        if scope["method"] == "POST":
            body, message, receive = await read_message(scope, receive)
        method = message.get("method") if isinstance(message, dict) else None
        if method in ("initialize", "logging/setLevel"):
            message = _parse(body)  # their params matter here (`read_message` skips params)
        if session_id is None:
            if method != "initialize":
                return await self.app(scope, receive, send)
            return await self.app(scope, receive, self._opening(message.get("params"), send))
        if mcp_compat.holds_session(self.manager(), session_id):
            await self._touch(session_id)
        else:
            await self._restore(session_id, scope)
        update: dict[str, str] = {}
        if method == "notifications/initialized":
            update["initialized"] = "1"
        elif method == "logging/setLevel":
            level = (message.get("params") or {}).get("level")
            update = {"level": level} if level in _LEVELS else {}
        if scope["method"] == "DELETE":
            send = self._after_success(send, lambda: self._forget(session_id))
        elif update:
            send = self._after_success(send, lambda: self.shared.update(session_id, update))
        await self.app(scope, receive, send)

    def _opening(self, params: Any, send: Send) -> Send:
        """Record a new session before its id reaches the client."""

        async def recording(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                headers = dict(message.get("headers", ()))
                session_id = headers.get(b"mcp-session-id", b"").decode("latin-1")
                if session_id:
                    await self.shared.save(session_id, opening_record(params))
                    self._touched[session_id] = time.monotonic()
            await send(message)

        return recording

    @staticmethod
    def _after_success(send: Send, then: Callable[[], Awaitable[None]]) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                await then()
            await send(message)

        return sending

    async def _forget(self, session_id: str) -> None:
        self._touched.pop(session_id, None)
        await self.shared.delete(session_id)
        if self.events is not None:
            await self.events.delete(session_id)

    async def _touch(self, session_id: str) -> None:
        """Keep the record alive while the session is used (at most every ttl/10 s)."""
        now = time.monotonic()
        if now - self._touched.get(session_id, 0) < self.shared.ttl / 10:
            return
        if len(self._touched) > 100_000:
            self._touched.clear()
        self._touched[session_id] = now
        await self.shared.touch(session_id)

    async def _restore(self, session_id: str, scope: Scope) -> None:
        """Serve here a session another replica opened (or this one before a restart)."""
        lock = self._locks.setdefault(session_id, anyio.Lock())
        try:
            async with lock:
                manager = self.manager()
                if mcp_compat.holds_session(manager, session_id):
                    return
                record = await self.shared.load(session_id)
                if record is None:
                    return  # unknown, expired or Redis down: the SDK answers 404
                client = client_key(scope)
                if self.registry is not None and not await self.registry.make_room(client):
                    return
                started = time.perf_counter()
                token = opening_client.set(client)
                try:
                    ok = await mcp_compat.restore_session(
                        manager, session_id, prepare_connection(record)
                    )
                finally:
                    opening_client.reset(token)
                info = self.registry.get(session_id) if self.registry else None
                if ok and info is not None:
                    info.initialized = record.get("initialized") == "1"
                if ok:
                    self._touched[session_id] = time.monotonic()
                    await self.shared.touch(session_id)
                    log.info(
                        "session %s restored from Redis in %.1f ms",
                        session_id[:12],
                        (time.perf_counter() - started) * 1000,
                    )
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(session_id, None)
