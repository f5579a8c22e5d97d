"""Protocol rules every transport shares, enforced once for each inbound message.

Why a server middleware and not per transport: /mcp, /sse and stdio all end in the same
per-connection kernel. Two rules the SDK leaves open: a request other than `ping` before the
handshake finished (`notifications/initialized`) ran on /mcp but was refused on /sse; now it is
refused everywhere (a request racing its own `initialized` notification gets a moment to let
it arrive). And a request whose id is already in flight on the connection is refused without
running, so its answer cannot be confused with the first one's.

The handshake rule is per app, not per process: the server object (and so this middleware)
is one per process, but each HTTP app built from a `Config` says whether it wants the rule
(off when sessions are shared between replicas, http_app.py). `HandshakeRule`, an ASGI
middleware of that app, puts its choice in a context variable for each request; the session
tasks a request starts (the session's server loop on /mcp, the whole connection on /sse)
copy their context from it, so every message of a session sees its own app's choice. stdio,
with no app, keeps the default: required. How long a request waits for a late
`initialized` (MCP_HANDSHAKE_GRACE) travels the same way; stdio sets it once at start
(`use_handshake_grace`).
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

import anyio
from mcp.shared.exceptions import MCPError
from mcp_types.version import is_version_at_least
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from product_mcp.core import mcp_compat

INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
IN_FLIGHT_KEY = "product_mcp.in_flight"
EXEMPT = frozenset({"initialize", "ping"})
# Lists this server answers whole: it never hands out a `nextCursor`, so any cursor sent back
# is invalid, which the spec answers -32602 (it was taken as "from the start").
ONE_PAGE = frozenset({"tools/list", "prompts/list", "resources/list", "resources/templates/list"})
CURSOR_REFUSED = (
    "Invalid request parameters: params.cursor: not a cursor this server gave (it lists "
    "everything on one page: send no cursor)"
)
# A client sends `notifications/initialized` just before its first request; on Streamable
# HTTP they travel on separate POSTs, so the request may be read first (by seconds on a
# loaded machine). The default of MCP_HANDSHAKE_GRACE (core/config.py).
HANDSHAKE_GRACE_S = 10.0
_handshake_required: ContextVar[bool] = ContextVar("handshake_required", default=True)
_handshake_grace: ContextVar[float] = ContextVar("handshake_grace", default=HANDSHAKE_GRACE_S)


def modern(version: str | None) -> bool:
    """Whether a protocol version is 2026-07-28 or later: no sessions, no handshake, a log
    level per request (an unknown version is not)."""
    return version is not None and is_version_at_least(version, "2026-07-28")


def use_handshake_grace(seconds: float) -> None:
    """The grace for sessions with no app to say it (stdio): set before the server runs."""
    _handshake_grace.set(seconds)


class HandshakeRule:
    """ASGI middleware: this app's choice of the handshake rule, for its requests' messages."""

    def __init__(self, app: ASGIApp, required: bool, grace: float = HANDSHAKE_GRACE_S) -> None:
        self.app = app
        self.required = required
        self.grace = grace

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _handshake_required.set(self.required)
        grace = _handshake_grace.set(self.grace)
        try:
            await self.app(scope, receive, send)
        finally:
            _handshake_grace.reset(grace)
            _handshake_required.reset(token)


class ProtocolRules:
    """Server middleware: `(ctx, call_next)` for every inbound message."""

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        try:
            return await self._rules(ctx, call_next)
        except ValidationError as e:
            # The SDK checks a request (or its params) against the method's model before the
            # handler and answered any failure "Invalid request parameters" alone: now with
            # `params.<field>: <reason>` (found from outside). Only those models' errors: a
            # handler's own pydantic error is no fault of the client's params (review).
            if not e.title.endswith(("Request", "RequestParams")):
                raise
            raise MCPError(
                code=INVALID_PARAMS, message=f"Invalid request parameters: {_where(e)}", data=""
            ) from None

    async def _rules(self, ctx: Any, call_next: Any) -> Any:
        if ctx.request_id is None or ctx.method in EXEMPT:
            return await call_next(ctx)
        if _handshake_required.get():
            await self._require_handshake(ctx)
        if ctx.method in ONE_PAGE and (ctx.params or {}).get("cursor") is not None:
            raise MCPError(code=INVALID_PARAMS, message=CURSOR_REFUSED, data="")
        in_flight: set[str] = mcp_compat.connection_state(ctx.session).setdefault(
            IN_FLIGHT_KEY, set()
        )
        rid = str(ctx.request_id)
        if rid in in_flight:
            raise MCPError(
                code=INVALID_REQUEST,
                message=f"Invalid Request: id {rid} is already in use by a request in progress",
            )
        in_flight.add(rid)
        try:
            return await call_next(ctx)
        finally:
            in_flight.discard(rid)

    @staticmethod
    async def _require_handshake(ctx: Any) -> None:
        initialized = mcp_compat.initialized(ctx.session)
        if initialized is None or initialized.is_set():
            return
        with anyio.move_on_after(_handshake_grace.get()):
            await initialized.wait()
        if not initialized.is_set():
            raise MCPError(
                code=INVALID_REQUEST,
                message="Invalid Request: the session is not initialized: "
                "send notifications/initialized before other requests",
            )


def _where(e: ValidationError, most: int = 3) -> str:
    """`params.field: reason` for each of the first few errors, bounded (a client's params;
    hundreds of thousands of bad values are counted, not listed)."""
    if e.error_count() > 20 * most:
        return f"{e.error_count():,} values are not what the method takes"
    said = []
    for error in e.errors(include_url=False, include_input=False)[:most]:
        where = error["loc"]  # the whole request's model starts at "params" itself
        parts = where if where[:1] == ("params",) else ("params", *where)
        loc = ".".join(str(part) for part in parts)[:100]
        said.append(f"{loc}: {error['msg'][:120]}")
    return "; ".join(said)
