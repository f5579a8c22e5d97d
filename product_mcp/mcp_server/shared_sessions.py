"""Legacy sessions recorded in Redis, so any replica can serve any session.

Why: a legacy (handshake) session lived in the memory of the process that opened it, so a
replica's death or restart cost every client its session (404, re-initialize). With `REDIS_URL`
set, `SessionSharing` (ASGI middleware on /mcp) writes each session's state when it is opened
(id, negotiated protocol version, the client's `initialize` params: capabilities and info), when
its handshake completes, when `logging/setLevel` changes its log level and when
`resources/subscribe` / `resources/unsubscribe` change its subscriptions (live.py; at most
MCP_MAX_SUBSCRIPTIONS URIs, fields of the same record, so they expire and go with it; the record
and its commands: session_records.py); the record lives `MCP_SESSION_IDLE_TIMEOUT` seconds after
the session's last request. A request for a session this process does not hold is served by
restoring it from that record (same id, handshake done, its subscriptions back with this
process's feed follower: `mcp_compat.restore_session`) instead of the SDK's 404. A DELETE
removes it (and its replay events, redis_events.py).

One copy at a time: a record names the replica that opened or last restored its session
(`owner`); one that restores or deletes a session says so on the replicas' Redis channel
(bus.py). Another replica holding a copy that the record no longer names stops telling it of
changes at once and closes it when its running requests are done (at once if it was deleted);
after its bus subscription comes back from a cut, a replica compares the owners of the
sessions it holds, since what was published meanwhile is lost. Before, a session restored on r1
while its home r2 was down was restored again on r2 once r2 was back, and both copies wrote its
notifications to the shared replay log (a resuming subscriber got one change twice); a DELETE
answered by r2 left r1's copy serving (found from outside in session 13).

Redis down (redis_link.py): sessions this process holds, new sessions and the stateless
protocol work as before; only restoring another replica's session fails (404).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from product_mcp.core import mcp_compat
from product_mcp.mcp_server.bus import ShopBus
from product_mcp.mcp_server.guard import _header, _parse, read_message
from product_mcp.mcp_server.live import Subscribers
from product_mcp.mcp_server.redis_events import RedisEventStore
from product_mcp.mcp_server.server import _LEVELS
from product_mcp.mcp_server.session_records import (
    SharedSessions,
    opening_record,
    prepare_connection,
)
from product_mcp.mcp_server.sessions import SessionRegistry, client_key

log = logging.getLogger("mcp.shared")


class SessionSharing:
    """ASGI middleware on /mcp: records sessions in Redis, restores the ones held elsewhere."""

    def __init__(
        self,
        app: ASGIApp,
        sessions: SharedSessions,
        events: RedisEventStore | None,
        registry: SessionRegistry | None,
        manager: Callable[[], Any],
        subscribers: Subscribers | None = None,
        bus: ShopBus | None = None,
    ) -> None:
        self.app = app
        self.subscribers = subscribers
        self.bus = bus
        self._dropping: set[asyncio.Task[None]] = set()
        if bus is not None:
            bus.on_session_taken(self._taken_elsewhere)
            bus.on_resubscribed(self._reconcile)
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
                    record = opening_record(params)
                    if self.bus is not None:
                        record["owner"] = self.bus.origin
                    await self.shared.save(session_id, record)
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
        if self.bus is not None:
            await self.bus.session_taken(session_id, deleted=True)

    async def _reconcile(self) -> None:
        """After the bus subscription came back (a reconnect loses what was published in
        between): drop the copies whose record now names another replica, and those deleted
        meanwhile. (A copy whose record is missing without a deletion's mark is kept: Redis
        may have lost its data, or it was opened while Redis was down.)"""
        manager = self.manager()
        held = {
            sid: mcp_compat.session_transport(manager, sid)
            for sid in mcp_compat.held_sessions(manager)
        }
        owners = await self.shared.owners(list(held))
        if self.bus is None or owners is None:
            return
        for session_id, owner in owners.items():
            if owner and owner != self.bus.origin:
                self._taken_elsewhere(session_id, deleted=False, copy=held[session_id])
        missing = [sid for sid, owner in owners.items() if owner is None]
        for session_id in await self.shared.deleted(missing):
            self._taken_elsewhere(session_id, deleted=True, copy=held[session_id])

    def _taken_elsewhere(self, session_id: str, deleted: bool, copy: Any = None) -> None:
        copy = copy or mcp_compat.session_transport(self.manager(), session_id)
        if copy is not None:
            task = asyncio.get_running_loop().create_task(
                self._drop_copy(session_id, copy, deleted)
            )
            self._dropping.add(task)
            task.add_done_callback(self._dropping.discard)

    async def _drop_copy(self, session_id: str, copy: Any, deleted: bool) -> None:
        """Close this process's copy of a session another replica took: at once if it was
        deleted there (its running calls end "session ended", as they would have there);
        if it moved, it first stops being told of changes (the other replica tells it now),
        then closes once the requests it is serving here are answered (however long: a call
        may wait on its user; cut off, its client would start a session it does not need).

        Not if this replica owns it after all: two replicas restoring one session at once each
        hear the other's message, and the one the record names last keeps it (found in review:
        both closed theirs, and the client's next request got 404). A restore under way here
        is waited for first, so that it has written its name."""
        manager = self.manager()

        def current() -> bool:
            return mcp_compat.session_transport(manager, session_id) is copy

        if not deleted:
            # Polled: the restore lock and `busy` (the guard's counter) are plain state.
            while self._restoring(session_id) and current():  # noqa: ASYNC110
                await anyio.sleep(0.05)
            if not current() or await self.shared.owner(session_id) == self._origin():
                return
            if self.subscribers is not None:
                self.subscribers.forget(session_id)
            info = self.registry.get(session_id) if self.registry is not None else None
            while info is not None and info.busy and current():  # noqa: ASYNC110
                await anyio.sleep(0.05)
        if not current():
            return  # closed meanwhile, or restored here again since: that copy is current
        why = "deleted by" if deleted else "served by"
        log.info("session %s is %s another replica now: closed here", session_id[:12], why)
        self._touched.pop(session_id, None)
        if self.registry is not None:
            await self.registry.close(session_id)
        else:
            await mcp_compat.close_session(manager, session_id)

    def _restoring(self, session_id: str) -> bool:
        lock = self._locks.get(session_id)
        return lock is not None and lock.locked()

    def _origin(self) -> str | None:
        return self.bus.origin if self.bus is not None else None

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
                with self.registry.opening(client) if self.registry else nullcontext():
                    ok = await mcp_compat.restore_session(
                        manager, session_id, prepare_connection(record, self.subscribers)
                    )
                info = self.registry.get(session_id) if self.registry else None
                if ok and info is not None:
                    info.initialized = record.get("initialized") == "1"
                if ok:
                    self._touched[session_id] = time.monotonic()
                    await self.shared.touch(session_id)
                    if self.bus is not None:  # others drop their copies
                        await self.shared.update(session_id, {"owner": self.bus.origin})
                        await self.bus.session_taken(session_id)
                    log.info(
                        "session %s restored from Redis in %.1f ms",
                        session_id[:12],
                        (time.perf_counter() - started) * 1000,
                    )
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(session_id, None)
