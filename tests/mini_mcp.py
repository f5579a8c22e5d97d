"""A tiny MCP server for web.py tests: both HTTP transports, tools that misbehave on purpose.

Run: `python tests/mini_mcp.py --port N` → /mcp (Streamable HTTP), /sse (SSE), /healthz; or
in process: `make_server()`. Lets the web tests exercise timeouts, tool errors, odd tool names
and list_changed without depending on main.py's data.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

RO = ToolAnnotations(read_only_hint=True)
BROKEN_SCHEMA = {
    "type": "object",
    "properties": {"text": {"$ref": "#/$defs/Missing"}},
    "required": ["text"],
}


def add_plain_tools(mcp: MCPServer[Any]) -> None:
    """`echo` and `add`: something plain for a model to call (tests/media_mcp.py has them too)."""

    @mcp.tool(description="Echo the text back.", annotations=RO)
    def echo(text: str) -> str:
        return f"echo: {text}"

    @mcp.tool(description="Add two integers.", annotations=RO)
    def add(a: int, b: int) -> str:
        return str(a + b)


def make_server(broken_schema: bool = False) -> MCPServer[None]:
    """A fresh mini server (in-process tests each get their own: `grow` changes it)."""
    mcp: MCPServer[None] = MCPServer(name="mini")

    add_plain_tools(mcp)

    asleep = [0, 0]  # running now, most at once

    @mcp.tool(description="Sleep for the given seconds, then answer.", annotations=RO)
    async def slow(seconds: float) -> str:
        asleep[0] += 1
        asleep[1] = max(asleep)
        try:
            await asyncio.sleep(seconds)
        finally:
            asleep[0] -= 1
        return f"slept {seconds}"

    @mcp.tool(description="The most `slow` calls that were running at once.", annotations=RO)
    def slow_peak() -> str:
        return str(asleep[1])

    @mcp.tool(description="Always fails with a clear message.", annotations=RO)
    def fail(reason: str = "boom") -> str:
        raise ToolError(f"failed on purpose: {reason}")

    @mcp.tool(
        name="weird.name/with:chars-and-a-very-long-suffix-that-goes-past-sixty-four-characters-x",
        description="A tool whose name OpenAI would reject.",
        annotations=RO,
    )
    def weird() -> str:
        return "weird ok"

    @mcp.tool(description="Writes something (not read-only).")
    def write_note(note: str) -> str:
        return f"saved: {note}"

    @mcp.tool(description="Register a new tool and announce tools/list_changed.", annotations=RO)
    async def grow(ctx: Context) -> str:
        if "grown" not in {t.name for t in await mcp.list_tools()}:
            mcp.add_tool(lambda: "I grew", name="grown", description="Added at runtime.")
        await ctx.session.send_tool_list_changed()
        return "grew"

    if broken_schema:
        add_broken_schema_tool(mcp)
    return mcp


def add_broken_schema_tool(mcp: MCPServer[None]) -> None:
    """A tool whose advertised input schema has a $ref pointing nowhere (--broken-schema)."""

    def broken_ref(text: str) -> str:
        return f"broken ok: {text}"

    tool = mcp._tool_manager.add_tool(
        broken_ref, description="Its input schema is broken.", annotations=RO
    )
    tool.parameters = BROKEN_SCHEMA


def build_app(mcp: MCPServer[None]) -> Starlette:
    http_app = mcp.streamable_http_app()
    for route in mcp.sse_app().routes:
        http_app.router.routes.append(route)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    http_app.add_route("/healthz", healthz, methods=["GET"])
    return http_app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--broken-schema", action="store_true", help="add the broken_ref tool")
    ns = parser.parse_args()
    app = build_app(make_server(broken_schema=ns.broken_schema))
    uvicorn.run(app, host=ns.host, port=ns.port, log_level="warning")
