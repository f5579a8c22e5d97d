"""Fair sessions: no client can take every session slot, and a newcomer always gets in.

Why: the SDK keeps up to 10,000 sessions for 30 minutes each and refuses everyone once they
are taken, so one client that opens sessions and never closes them locked every other client
out for half an hour. Here each client (its address: `client_key`) may hold `per_client`
sessions: opening one more closes that client's least recently used idle session. When the
whole server is full, the least recently used idle session of anyone is closed instead of
refusing the newcomer. Sessions that never finish the handshake
(`notifications/initialized`) are closed after `init_timeout` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import anyio

from product_mcp.core import mcp_compat

log = logging.getLogger("mcp.sessions")


@dataclass
class Opening:
    """A session being opened: for whom, and whether it still holds the place `make_room`
    kept for it (until the SDK admits it, or the request ends without a session)."""

    client: str
    holds_place: bool = True


# The session being opened in this request: set around the SDK's admission (`opening`).
_opening: ContextVar[Opening | None] = ContextVar("opening", default=None)


def client_key(scope: dict[str, Any]) -> str:
    """A client's identity for fairness: its address. Not its Authorization header: without
    MCP_AUTH_TOKEN nothing checks it, so a made-up one per session was a new client each time
    (one address took every slot and evicted everyone's sessions; found from outside), and
    with it every client holds the same token."""
    client = scope.get("client")
    return f"addr:{client[0]}" if client else "addr:?"


@dataclass
class SessionInfo:
    client: str
    opened: float = field(default_factory=time.monotonic)
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0  # POSTs of this session being served right now
    initialized: bool = False
    in_flight: set[str] = field(default_factory=set)  # request ids being answered


class SessionRegistry:
    """What the guard and the SDK's session manager tell us about every open session."""

    def __init__(self, per_client: int, max_sessions: int, init_timeout: float) -> None:
        self.per_client = per_client
        self.max_sessions = max_sessions
        self.init_timeout = init_timeout
        self.sessions: dict[str, SessionInfo] = {}
        self.places = 0  # kept by make_room for sessions the SDK has not admitted yet
        self.manager: Any = None

    def attach(self, manager: Any) -> None:
        """Follow `manager`'s sessions as they are admitted and discarded."""
        self.manager = manager
        mcp_compat.wrap_session_lifecycle(
            manager,
            on_admit=self._admitted,
            on_discard=lambda session_id: self.sessions.pop(session_id, None),
        )

    def _admitted(self, transport: Any) -> None:
        opening = _opening.get()
        self.sessions.setdefault(
            transport.mcp_session_id, SessionInfo(opening.client if opening else "?")
        )
        if opening is not None:
            self._give_back(opening)

    def _give_back(self, opening: Opening) -> None:
        if opening.holds_place:
            opening.holds_place = False
            self.places -= 1

    @contextmanager
    def opening(self, client: str) -> Iterator[None]:
        """Around the request `make_room` let in: its session is `client`'s, and counts from
        make_room's yes (20 newcomers at once on a full server were each let in before any
        was counted, and the SDK's own limit refused half of them; found from outside)."""
        opening = Opening(client)
        token = _opening.set(opening)
        try:
            yield
        finally:
            _opening.reset(token)
            self._give_back(opening)

    def get(self, session_id: str | None) -> SessionInfo | None:
        return self.sessions.get(session_id) if session_id else None

    def owned_by(self, client: str) -> int:
        return sum(1 for s in self.sessions.values() if s.client == client)

    async def make_room(self, client: str) -> bool:
        """Before `client` opens a session: close what must go; False if nothing could."""
        mine = self.owned_by(client) >= self.per_client
        if mine and not await self._close_lru(lambda s: s.client == client, "per-client limit"):
            return False
        if len(self.sessions) + self.places >= self.max_sessions and not await self._close_lru(
            lambda s: True, "server full"
        ):
            return False
        self.places += 1  # given back by `opening`
        return True

    async def _close_lru(self, eligible: Any, why: str) -> bool:
        idle = [
            (s.last_used, sid) for sid, s in self.sessions.items() if not s.busy and eligible(s)
        ]
        if not idle:
            return False
        _, session_id = min(idle)
        log.info("closing idle session %s (%s)", session_id[:8], why)
        await self.close(session_id)
        return True

    async def close(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)
        if self.manager is not None:
            await mcp_compat.close_session(self.manager, session_id)

    async def sweep_forever(self, every: float = 1.0) -> None:
        """Close sessions that never finished the handshake in time."""
        while True:
            await anyio.sleep(every)
            deadline = time.monotonic() - self.init_timeout
            stale = [
                sid
                for sid, s in self.sessions.items()
                if not s.initialized and not s.busy and s.opened < deadline
            ]
            for session_id in stale:
                log.info("closing session %s: no notifications/initialized", session_id[:8])
                await self.close(session_id)
