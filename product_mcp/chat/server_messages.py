"""What a connected server sends unasked: questions during a call, and notifications.

A question (elicitation) must reach the chat whose call caused it, so each call in flight is
kept as a route (connection.py registers them) and a question is matched to one by the id the
call carried in its `_meta`. Notifications wake the supervisor (tool list changed, transport
trouble) or the page's live stock watch (resource updated).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mcp.client.session import ClientRequestContext
from mcp.types import ElicitRequestParams, ElicitResult
from pydantic import ValidationError

from models import CALL_META_KEY
from product_mcp.chat.connection_state import ConnectionState
from product_mcp.chat.elicitation import unattended
from product_mcp.chat.results import describe_error

log = logging.getLogger("mcp_manager")


class ServerMessages(ConnectionState):
    """The session callbacks for requests and notifications from the server."""

    async def _on_elicit(
        self, ctx: ClientRequestContext, params: ElicitRequestParams
    ) -> ElicitResult:
        """A server's question during a call. Each call's `tools/call` carries an id in its
        `_meta` (CALL_META_KEY); a server that echoes it in the question's `_meta` (main.py)
        gets its question shown to that call's chat, and a question for a call that has ended
        is cancelled. A server that does not echo it (MCP has no standard link) gets the
        old guess: the most recent call in flight on this server that has a page. With two
        chats calling such a server at once, a question could reach the wrong chat."""
        meta = ctx.meta or getattr(params, "meta", None) or {}
        key = meta.get(CALL_META_KEY) if isinstance(meta, dict) else None
        if isinstance(key, str):
            route = self._keyed.get(key)
            if route is None:
                return unattended(None, params)
            return await self.elicitations.ask(route, self.name, params)
        routes = [r for r in self._routes if r.emit is not None] or self._routes
        if not routes:
            return unattended(None, params)
        return await self.elicitations.ask(routes[-1], self.name, params)

    async def _on_message(self, message: Any) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            # Coalesced (connection_state.Signals): while a reload is pending, another
            # notification changes nothing, and is not logged either.
            if self._signal("refresh"):
                log.info("%s: tools/list_changed", self.name)
        elif getattr(message, "method", None) == "notifications/resources/updated":
            if self.watch is not None:
                self.watch.updated(self.name, str(message.params.uri))
        elif isinstance(message, ValidationError) and self.config.transport == "stdio":
            # A line of stdout that is not JSON-RPC (a banner, a print): the SDK skips it. The
            # first is kept for the status, should the handshake never finish.
            self._noise_lines += 1
            if self._noise_lines == 1:
                line = message.errors()[0].get("input", "")
                self._noise = (line if isinstance(line, str) else json.dumps(line))[:200]
        elif isinstance(message, Exception):
            log.debug("%s: transport reported %s", self.name, describe_error(message))
            self._signal("check")

    def _noise_said(self) -> str:
        """The stdout lines that were not JSON-RPC, in words ("" if none)."""
        if not self._noise_lines:
            return ""
        n = self._noise_lines
        lines = "1 line that is" if n == 1 else f"{n} lines that are"
        return f"stdout: {lines} not JSON-RPC, the first: {self._noise!r}"
