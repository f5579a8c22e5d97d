"""The MCP server object itself: name, instructions, lifespan, and per-connection log levels.

Why its own module: tools.py and resources.py register onto this one `mcp` instance, and
main.py assembles transports around it; none of them needs the others' internals.
`logging/setLevel` is registered here through the SDK compatibility module, since MCPServer
has no public hook for it (registering it also advertises the `logging` capability).
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import EmptyResult, LoggingLevel, SetLevelRequestParams

from product_mcp.core import mcp_compat
from product_mcp.mcp_server.api_client import api
from product_mcp.mcp_server.bus import ShopBus
from product_mcp.mcp_server.confirm import SealedRound
from product_mcp.mcp_server.protocol import ProtocolRules, modern
from product_mcp.mcp_server.shop_server import ShopServer


@asynccontextmanager
async def lifespan(_: MCPServer[None]) -> AsyncIterator[None]:
    async with api.open():
        yield


INSTRUCTIONS = """\
Shop assistant tools over a live product, inventory and order service.
- Find products with search_products (text, price range, in-stock only) or recommend_products
  (free-text preferences and a budget); get_product gives one product with its live stock.
- Always check stock (get_product or get_inventory) before promising availability.
- create_purchase places a real order and decrements stock: confirm the customer name, product
  ids and quantities first, and pass an idempotencyKey so a retry cannot order twice.
- get_orders and analyze_sales answer questions about past orders and revenue.
Errors come back as tool errors quoting the service; read them and correct the arguments."""

# Events for `subscriptions/listen` streams, shared by replicas through Redis (bus.py).
bus = ShopBus()
# ShopServer: -32602 for bad prompt requests and tool schemas without $ref (shop_server.py).
mcp: ShopServer = ShopServer(
    name="Product MCP Server",
    title="Product MCP Server",
    description="Products, live inventory, purchases and sales analysis for the demo shop.",
    instructions=INSTRUCTIONS,
    version="0.1.0",
    lifespan=lifespan,
    subscriptions=bus,
)

# Log levels a client may ask for on handshake-era protocol versions, least severe first.
_LEVELS: tuple[LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
LEVEL_KEY = "product_mcp.log_level"


async def _set_level(ctx: ServerRequestContext[Any], params: SetLevelRequestParams) -> EmptyResult:
    """Remember the client's minimum level for its connection; `log` filters by it."""
    mcp_compat.connection_state(ctx.session)[LEVEL_KEY] = params.level
    return EmptyResult()


mcp_compat.add_request_handler(mcp, "logging/setLevel", SetLevelRequestParams, _set_level)
mcp_compat.add_server_middleware(mcp, ProtocolRules())
mcp_compat.add_server_middleware(mcp, SealedRound(), outermost=True)


async def log(ctx: Context[Any, Any], level: LoggingLevel, message: str) -> None:
    """Send a log notification if the session's level lets it through; never fail the tool."""
    # Until the client sets a level (logging/setLevel), info and above: debug lines are for
    # whoever asked for them (found from outside: every client got analyze_sales' debug).
    # From 2026-07-28 on a client asks per request (its `_meta`), and the SDK's `ctx.log`
    # sends what that request asked for: no session level to apply (it hid "debug").
    if not modern(ctx.protocol_version):
        minimum = mcp_compat.connection_state(ctx.request_context.session).get(LEVEL_KEY, "info")
        if _LEVELS.index(level) < _LEVELS.index(minimum):
            return
    try:
        with warnings.catch_warnings():
            # Logging is deprecated from protocol 2026-07-28 on, still current before it.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await ctx.log(level, message, logger_name="product-mcp")
    except Exception:  # a vanished stream must not turn a good answer into an error
        pass
