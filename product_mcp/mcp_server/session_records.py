"""Legacy sessions as Redis records: what a session's record holds, and the commands that
write, read and expire it (shared_sessions.py is the middleware that uses them).

Why its own module: the record is a format shared by every replica (a session opened by one
is restored by another, perhaps of another release), so its fields, its scripts and how a
restored connection is prepared from it stay together, apart from when they are used.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from mcp_types import InitializeRequestParams
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, LATEST_HANDSHAKE_VERSION

from product_mcp.mcp_server.live import Subscribers
from product_mcp.mcp_server.redis_link import RedisLink
from product_mcp.mcp_server.server import _LEVELS, LEVEL_KEY

log = logging.getLogger("mcp.shared")
MAX_CLIENT_PARAMS = 64 * 1024  # bytes of `initialize` params kept for a session
SUB = "sub:"  # a record's field per subscribed URI: `sub:<uri>`; `subs` counts them
# Add a URI to a recorded session (-1: no record; 0: at the limit; 1: recorded).
_SUBSCRIBE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local field = ARGV[1] .. ARGV[2]
if redis.call('HEXISTS', KEYS[1], field) == 1 then return 1 end
if tonumber(redis.call('HGET', KEYS[1], 'subs') or '0') >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], field, '1')
redis.call('HINCRBY', KEYS[1], 'subs', 1)
return 1
"""
_UPDATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
return 0
"""
_UNSUBSCRIBE = """
if redis.call('HDEL', KEYS[1], ARGV[1] .. ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'subs', -1)
end
return 0
"""


class SharedSessions:
    """Each legacy session's state as a Redis hash `<prefix>session:<id>`."""

    def __init__(self, link: RedisLink, ttl: float) -> None:
        self.link = link
        self.ttl = max(1, int(ttl))

    async def save(self, session_id: str, fields: dict[str, str]) -> None:
        key = self.link.key("session", session_id)

        async def op(r: aioredis.Redis) -> None:
            # Sent again once on a new connection if its connection was dropped (a `CLIENT
            # KILL`, Redis's idle `timeout`): that one failure left the session unrecorded for
            # good, dying with its replica (found from outside). Setting the same fields and
            # expiry twice changes nothing; redis-py is not told to retry every command, as
            # the event store's appends and the bus's PUBLISH must not run twice.
            for attempt in (1, 2):
                try:
                    async with r.pipeline(transaction=True) as pipe:
                        pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
                        pipe.expire(key, self.ttl)
                        await pipe.execute()
                    return
                except redis.exceptions.ConnectionError:
                    if attempt == 2:
                        raise

        await self.link.run(op, None)

    async def update(self, session_id: str, fields: dict[str, str]) -> None:
        """Change a recorded session (one opened while Redis was down stays unrecorded)."""
        key = self.link.key("session", session_id)

        flat = [part for pair in fields.items() for part in pair]
        # One script: a record deleted between an EXISTS and an HSET came back without expiry
        # (found in review), restorable by anyone with its id for good.
        await self.link.run(lambda r: r.eval(_UPDATE, 1, key, *flat), None)

    async def owner(self, session_id: str) -> str | None:
        """The replica (a bus origin) the session's record names; None if none or unknown."""
        key = self.link.key("session", session_id)
        value = await self.link.run(lambda r: r.hget(key, "owner"), None)
        return value.decode() if value else None

    async def owners(self, session_ids: list[str]) -> dict[str, str | None] | None:
        """Which replica (`owner`, a bus origin) each session's record names; None for a
        session with no record; None for all while Redis is down."""
        keys = [self.link.key("session", sid) for sid in session_ids]

        async def op(r: aioredis.Redis) -> dict[str, str | None]:
            async with r.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hget(key, "owner")
                    pipe.exists(key)
                got = await pipe.execute()
            return {
                sid: (got[2 * i].decode() if got[2 * i] else "") if got[2 * i + 1] else None
                for i, sid in enumerate(session_ids)
            }

        return await self.link.run(op, None) if session_ids else {}

    async def load(self, session_id: str) -> dict[str, str] | None:
        raw = await self.link.run(lambda r: r.hgetall(self.link.key("session", session_id)), {})
        return {k.decode(): v.decode() for k, v in raw.items()} or None

    async def touch(self, session_id: str) -> None:
        await self.link.run(lambda r: r.expire(self.link.key("session", session_id), self.ttl), 0)

    async def delete(self, session_id: str) -> None:
        """Drop the record and leave a mark for as long as a copy elsewhere could live: a
        replica that missed the bus's word of it (reconnecting) tells a deleted session from
        one whose record is missing for another reason (Redis lost its data, or it was opened
        while Redis was down), which must be kept."""
        record, mark = self.link.key("session", session_id), self.link.key("deleted", session_id)

        async def op(r: aioredis.Redis) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(record)
                pipe.set(mark, "1", ex=self.ttl)
                await pipe.execute()

        await self.link.run(op, None)

    async def deleted(self, session_ids: list[str]) -> set[str]:
        """Those of the sessions deleted within the record's ttl (none while Redis is down)."""
        keys = [self.link.key("deleted", sid) for sid in session_ids]

        async def op(r: aioredis.Redis) -> set[str]:
            found = await r.mget(keys)
            return {sid for sid, mark in zip(session_ids, found, strict=True) if mark}

        return await self.link.run(op, set()) if session_ids else set()

    async def subscribed(self, session_id: str, uri: str, limit: int) -> None:
        """Record a `resources/subscribe` (live.py's SubscriptionKeeper)."""
        key = self.link.key("session", session_id)
        result = await self.link.run(lambda r: r.eval(_SUBSCRIBE, 1, key, SUB, uri, limit), -1)
        if result == 0:
            log.warning("session %s: subscription not recorded (limit)", session_id[:12])

    async def unsubscribed(self, session_id: str, uri: str) -> None:
        key = self.link.key("session", session_id)
        await self.link.run(lambda r: r.eval(_UNSUBSCRIBE, 1, key, SUB, uri), 0)


def subscriptions(record: dict[str, str]) -> list[str]:
    """The URIs a session record says it subscribed to."""
    return [name[len(SUB) :] for name in record if name.startswith(SUB)]


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


def prepare_connection(
    record: dict[str, str], subscribers: Subscribers | None = None
) -> Callable[[Any], None]:
    """Set on a restored session's connection what its handshake (and `resources/subscribe`)
    had set."""

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
        if subscribers is not None:  # before any request: the follower tells it from now on
            subscribers.restore(connection, subscriptions(record))

    return prepare
