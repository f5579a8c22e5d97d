"""All configured MCP servers behind one object, for the web chat's whole lifetime."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import anyio
from anyio.abc import TaskGroup
from mcp.types import CallToolResult

from product_mcp.chat.connection import ServerConnection
from product_mcp.chat.elicitation import CallRoute, Elicitations
from product_mcp.chat.live import StockWatch
from product_mcp.chat.llm import encode_json
from product_mcp.chat.mcp_config import McpConfig
from product_mcp.chat.names import build_table, functions
from product_mcp.chat.results import ToolEntry
from product_mcp.core.errors import UnknownTool


@dataclass(frozen=True)
class Offer:
    """The tools a model is offered now: function name → tool, and the request's `tools`.
    Shared by every request until a tool list or a server's status changes: never mutate."""

    table: dict[str, ToolEntry]
    functions: list[dict[str, Any]]

    @cached_property
    def functions_json(self) -> str:
        """`functions` encoded for a request body, once (ValueError for a schema that is not
        JSON, such as one holding NaN, as openai would raise; then it is not kept)."""
        return encode_json(self.functions)


RECONNECT_WAIT = 1.5  # seconds a chat turn waits for servers that are down to come back
RECONNECT_EVERY = 5.0  # seconds between such asks to one server, however many turns come


class McpManager:
    """All configured servers; use as an async context manager for the app's lifetime."""

    def __init__(
        self,
        config: McpConfig,
        *,
        call_timeout: float = 60.0,
        connect_timeout: float = 10.0,
        ping_interval: float = 15.0,
        reconnect_max: float = 30.0,
        startup_wait: float = 10.0,
        elicitations: Elicitations | None = None,
        watch: StockWatch | None = None,
    ) -> None:
        self.config = config
        self.watch = watch  # live stock: one upstream subscription per server, for the page
        self.elicitations = elicitations or Elicitations()
        self.call_timeout = call_timeout
        self.startup_wait = startup_wait
        self.connections: dict[str, ServerConnection] = {
            s.name: ServerConnection(
                s,
                connect_timeout=connect_timeout,
                ping_interval=ping_interval,
                reconnect_max=reconnect_max,
                elicitations=self.elicitations,
            )
            for s in config.servers
        }
        self._tg: TaskGroup | None = None
        self._offer: tuple[tuple[object, ...], Offer] | None = None
        self._asked: dict[str, float] = {}  # server -> when a chat turn last asked it back

    async def __aenter__(self) -> McpManager:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for conn in self.connections.values():
            conn.watch = self.watch
            self._tg.start_soon(conn.run, name=f"mcp:{conn.name}")
            if self.watch is not None:
                self._tg.start_soon(self.watch.follow, conn, name=f"live:{conn.name}")
        # Give servers a moment so the first page load sees their tools; never block longer.
        with anyio.move_on_after(self.startup_wait):
            for conn in self.connections.values():
                await conn.wait_settled()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)

    def servers(self) -> list[dict[str, Any]]:
        return [c.snapshot() for c in self.connections.values()]

    def tools(self) -> list[ToolEntry]:
        """Tools of every connected server, in config order."""
        return [
            ToolEntry(c.name, t)
            for c in self.connections.values()
            if c.status == "connected"
            for t in c.tools
        ]

    def offer(self) -> Offer:
        """The tools of every connected server as the model is offered them, built again only
        when a server's tool list (a new list on every load) or its status has changed."""
        key = tuple(c.tools if c.status == "connected" else None for c in self.connections.values())
        cached = self._offer
        if cached is not None and all(a is b for a, b in zip(cached[0], key, strict=True)):
            return cached[1]
        table = build_table(self.tools())
        offer = Offer(table, functions(table))
        self._offer = (key, offer)
        return offer

    def find(self, server: str, name: str) -> ToolEntry | None:
        conn = self.connections.get(server)
        if conn is None:
            return None
        return next((ToolEntry(server, t) for t in conn.tools if t.name == name), None)

    async def reconnect_down(self, wait: float = RECONNECT_WAIT) -> None:
        """Ask every server that is down to reconnect now rather than at the end of its
        backoff (up to `reconnect_max`), waiting at most `wait` seconds for them: a chat turn
        began while main.py was back already said its tools were unavailable for up to 30 s,
        though a call from the tool form reconnected at once. A server that refuses fails
        fast; one that does not answer costs a turn at most `wait`; and one server is asked
        at most every RECONNECT_EVERY seconds (many chats must not undo its backoff)."""
        now = time.monotonic()
        down = [
            c
            for c in self.connections.values()
            if c.status != "connected"
            and now - self._asked.get(c.name, -math.inf) >= RECONNECT_EVERY
        ]
        if not down:
            return
        self._asked.update((c.name, now) for c in down)
        with anyio.move_on_after(wait):
            async with anyio.create_task_group() as tg:
                for conn in down:
                    tg.start_soon(conn.ensure_connected)

    def unavailable(self) -> list[dict[str, Any]]:
        """Servers not connected now, with the tools they had when last connected."""
        return [
            {
                "name": c.name,
                "status": c.status,
                "error": c.last_error,
                "tools": [t.name for t in c.tools],
            }
            for c in self.connections.values()
            if c.status != "connected"
        ]

    def known_tool(self, function: str) -> ToolEntry | None:
        """A tool of a server that is down, by the function name the model would know it by
        (its name with every server connected: the model may remember it from history)."""
        down = [ToolEntry(c.name, t) for c in self.connections.values() for t in c.tools]
        entry = build_table(down).get(function)
        if entry is None or self.connections[entry.server].status == "connected":
            return None
        return entry

    async def call_tool(
        self,
        server: str,
        name: str,
        args: dict[str, Any],
        time_limit: float | None = None,
        route: CallRoute | None = None,
    ) -> CallToolResult:
        conn = self.connections.get(server)
        if conn is None:
            raise UnknownTool(f"Unknown MCP server '{server}'")
        return await conn.call_tool(name, args, time_limit or self.call_timeout, route)
