"""One Redis connection per process, and the rule for when Redis does not answer.

Why its own module: the session records (shared_sessions.py) and the replay event store
(redis_events.py) both talk to Redis and must behave alike when it goes away: say so once in
the log, skip Redis (retrying every second) so this replica keeps serving what it holds, and
say so again when Redis answers. Keeping that rule in one place keeps the two consistent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
import redis.exceptions

from product_mcp.core.config import mask_url

log = logging.getLogger("mcp.shared")
T = TypeVar("T")
RETRY_S = 1.0  # how often a process tries Redis again while it is down
POOL_SIZE = 100  # connections to Redis per process
POOL_WAIT = 2.0  # seconds a command may wait for one of them
POOL_EMPTY = "No connection available"  # redis-py's words when POOL_WAIT ran out
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
        # A blocking pool: past POOL_SIZE commands at once, one waits (at most POOL_WAIT s) for
        # a connection. redis-py's default pool raised "Too many connections" at 100, which
        # read as Redis being down: 300 sessions moved at once got 51 404s (found from outside).
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=POOL_SIZE,
            timeout=POOL_WAIT,
            socket_timeout=2,
            # 3 s, not 1: a burst of 100 new connections on a busy 2-core machine took over a
            # second to be accepted, and one late connect took Redis for down (a CI run)
            socket_connect_timeout=3,
            health_check_interval=15,
        )
        self.client = aioredis.Redis(connection_pool=pool)

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
            if str(e).startswith(POOL_EMPTY):  # busy here, not Redis down: skip only this one
                log.warning("Redis: all %d connections busy for %g s; one command skipped",
                            POOL_SIZE, POOL_WAIT)  # fmt: skip
                return default
            self.failed(e)
            return default
        except redis.exceptions.RedisError:
            log.exception("Redis refused a command")
            return default
        self.answered()
        return result

    def failed(self, error: Exception, *, pause: bool = True) -> None:
        """Redis did not answer: say so once per outage and (`pause`) skip it for RETRY_S.
        The subscription relay (bus.py) keeps its own pace, so it does not pause the rest."""
        if pause:
            self._retry_at = time.monotonic() + RETRY_S
        if not self.down:
            self.down = True
            log.warning(
                "Redis at %s does not answer (%s): sessions, replay events and subscription "
                "events are not shared with other replicas until it does; this replica keeps "
                "serving",
                mask_url(self.url),
                error,
            )

    def answered(self) -> None:
        if self.down:
            self.down = False
            log.warning("Redis at %s answers again: sessions are shared again", mask_url(self.url))
