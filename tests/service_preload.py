"""What tests/servers.py's forkserver imports once, so a forked service skips it: the services'
libraries and the product modules whose import changes nothing global.

Not here: `product_mcp.mcp_server` (creating its MCPServer installs a root log handler) and
`product_mcp.chat` (adds a warnings filter): a forked main.py or web.py must do that itself,
as a fresh `python main.py` does, or its log would not be what a user sees.
"""

from __future__ import annotations

import importlib
from contextlib import suppress

LIBRARIES = [
    "alembic",
    "alembic.command",
    "fastapi",
    "fastapi.staticfiles",
    "httpx",
    "httpx2",
    "jsonschema",
    "mcp",
    "mcp.client.sse",
    "mcp.client.stdio",
    "mcp.client.streamable_http",
    "mcp.server.mcpserver",
    "mcp.server.sse",
    "mcp.server.streamable_http",
    "openai",
    "pydantic_settings",
    "redis",
    "redis.asyncio",
    "sqlalchemy",
    "starlette",
    "uvicorn",
]
PRODUCT = ["models", "product_mcp.core.config", "product_mcp.core.errors", "product_mcp.shop"]

for name in [*LIBRARIES, *PRODUCT]:
    with suppress(ImportError):  # not installed: a service that needs it fails on its own
        importlib.import_module(name)
