"""main.py with one more tool, `announce`, that publishes on the server's SubscriptionBus as
any tool may (`ctx.notify_resource_updated`, `ctx.notify_resources_changed`): what the
Redis-backed bus must carry to every replica (tests/mcp_server/test_redis_bus.py).

Run as `python -m tests.bus_replica <main.py's flags>`.
"""

from __future__ import annotations

from mcp.server.mcpserver import Context

import main
from product_mcp.mcp_server import mcp


@mcp.tool()
async def announce(ctx: Context, uri: str = "", list_changed: bool = False) -> str:
    """Publish a resource update (and a list change) on the subscription bus."""
    if uri:
        await ctx.notify_resource_updated(uri)
    if list_changed:
        await ctx.notify_resources_changed()
    return "announced"


if __name__ == "__main__":
    main.main()
