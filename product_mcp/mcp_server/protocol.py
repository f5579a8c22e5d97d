"""Protocol rules every transport shares, enforced once for each inbound message.

Why a server middleware and not per transport: /mcp, /sse and stdio all end in the same
per-connection kernel. Two rules the SDK leaves open: a request other than `ping` before the
handshake finished (`notifications/initialized`) ran on /mcp but was refused on /sse; now it is
refused everywhere (a request racing its own `initialized` notification gets a moment to let
it arrive). And a request whose id is already in flight on the connection is refused without
running, so its answer cannot be confused with the first one's.
"""

from __future__ import annotations

from typing import Any

import anyio
from mcp.shared.exceptions import MCPError

from product_mcp.core import mcp_compat

INVALID_REQUEST = -32600
IN_FLIGHT_KEY = "product_mcp.in_flight"
EXEMPT = frozenset({"initialize", "ping"})
# A client sends `notifications/initialized` just before its first request; on Streamable
# HTTP they travel on separate POSTs, so the request may be read first (by seconds on a
# loaded machine).
HANDSHAKE_GRACE_S = 10.0


class ProtocolRules:
    """Server middleware: `(ctx, call_next)` for every inbound message.

    `require_handshake` is turned off when sessions are shared between replicas (REDIS_URL):
    there a balancer may hand a session's `notifications/initialized` to another replica than
    the one serving its next request, which would then wrongly refuse it.
    """

    require_handshake = True

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        if ctx.request_id is None or ctx.method in EXEMPT:
            return await call_next(ctx)
        if self.require_handshake:
            await self._require_handshake(ctx)
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
        with anyio.move_on_after(HANDSHAKE_GRACE_S):
            await initialized.wait()
        if not initialized.is_set():
            raise MCPError(
                code=INVALID_REQUEST,
                message="Invalid Request: the session is not initialized: "
                "send notifications/initialized before other requests",
            )
