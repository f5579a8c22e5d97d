"""One long-lived MCP client session per configured server, that heals itself.

The seed opened a connection per tool call and died at startup when a server was down. Here
each server gets a supervisor task that owns its session (anyio needs the task that enters a
transport to be the one that leaves it), reconnects with backoff, pings to notice outages, and
refreshes the tool list on reconnect and on `notifications/tools/list_changed`. Callers in
other tasks just borrow the live session.

This module is the call path (borrowing the session, its retry rules); the rest of the class
comes from connection_state.py (shared state), server_messages.py (questions and
notifications), session_open.py (transports) and supervise.py (the reconnect loop).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, ElicitRequestURLParams
from mcp.types.jsonrpc import (
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    REQUEST_TIMEOUT,
    URL_ELICITATION_REQUIRED,
)
from pydantic import ValidationError

from models import CALL_META_KEY
from product_mcp.chat.connection_state import Status
from product_mcp.chat.elicitation import CallRoute
from product_mcp.chat.results import ToolEntry, describe_error
from product_mcp.chat.session_open import CLIENT_INFO, KEEPALIVE_EXPIRY, MAX_EVENT_BYTES
from product_mcp.chat.supervise import Supervision
from product_mcp.core import logs, mcp_compat
from product_mcp.core.errors import ServerUnavailable, ToolCallError, ToolTimeout

__all__ = [
    "CLIENT_INFO",
    "KEEPALIVE_EXPIRY",
    "MAX_EVENT_BYTES",
    "QUICK_ATTEMPTS",
    "QUICK_RETRY_PAUSE",
    "ServerConnection",
    "Status",
]

log = logging.getLogger("mcp_manager")

QUICK_ATTEMPTS = 2  # connection attempts a call makes (skipping the backoff) before giving up
QUICK_RETRY_PAUSE = 0.3  # seconds between them


HTTP_ERROR_STAND_IN = "Server returned an error response"  # mcp/client/streamable_http.py


class ServerConnection(Supervision):
    """Supervises one server: connect, serve calls, notice death, reconnect with backoff."""

    async def _live_client(self) -> tuple[Client, int]:
        client = self._client
        if client is not None and mcp_compat.client_stream_closed(client):
            # The stream already ended (SSE stream or stdio pipe broke): nothing was sent on
            # it, so replacing it before the call is safe even for tools that write.
            await self._drop(client, self._generation, "the transport closed")
        if self._client is None:
            # Two quick attempts, not one: behind a balancer, the first may meet a replica that
            # is shutting down (nginx answers 502 for a POST it cannot resend), the next one
            # another replica. A failed `initialize` is safe to repeat.
            first_attempt = self.attempts
            kicks = 1
            self._signal("kick")
            with anyio.move_on_after(self.ready_wait):
                while self._client is None:
                    if self.status == "failed" and self.attempts >= first_attempt + kicks:
                        if kicks == QUICK_ATTEMPTS:
                            break
                        kicks += 1
                        await anyio.sleep(QUICK_RETRY_PAUSE)  # let a closing replica close
                        self._signal("kick")
                    await self._changed.wait()
        client = self._client
        if client is None:
            reason = f": {self.last_error}" if self.last_error else ""
            # "(connected)" while a lost session's calls finish read as a contradiction
            status = "" if self.status == "connected" else f" ({self.status})"
            raise ServerUnavailable(f"MCP server '{self.name}' is not connected{status}{reason}")
        return client, self._generation

    async def session(self) -> Client:
        """The live session, for requests beyond tool calls (prompts, resources: catalog.py);
        ServerUnavailable when there is none after a quick reconnect."""
        return (await self._live_client())[0]

    async def ensure_connected(self) -> bool:
        """Reconnect now (skipping the backoff wait) if needed; False if that did not work."""
        try:
            await self._live_client()
        except ServerUnavailable:
            return False
        return True

    def _is_read_only(self, tool_name: str) -> bool:
        return any(ToolEntry(self.name, t).read_only for t in self.tools if t.name == tool_name)

    def _maybe_done(self, tool_name: str) -> str:
        """What an unanswered call of a tool that changes data must add: it may have been done.
        "Try again" (found from outside) made a model buy a second time."""
        if self._is_read_only(tool_name):
            return ""
        return "; it may have been carried out all the same: check before calling it again"

    async def call_tool(
        self,
        name: str,
        args: dict[str, Any],
        time_limit: float,
        route: CallRoute | None = None,
    ) -> CallToolResult:
        """Call on the live session, with `route` receiving its progress and questions.

        Cancelling the caller cancels the call (the SDK sends `notifications/cancelled`) and
        closes its open questions. `route.patience` seconds are added to the time limit for
        calls that may wait on the user (a question is not the server being slow).
        """
        route = route or CallRoute(tool=name)
        key = uuid.uuid4().hex
        self._routes.append(route)
        self._keyed[key] = route
        # The SDK handles what the server sends during the call in the caller's context:
        # what it logs then is counted as this server's (core/logs.py, Repeats).
        said_by = logs.peer.set(self.name)
        try:
            return await self._call_tool(name, args, time_limit, route, key)
        finally:
            logs.peer.reset(said_by)
            self._routes.remove(route)
            del self._keyed[key]
            self.elicitations.close(route)

    async def _call_tool(
        self, name: str, args: dict[str, Any], time_limit: float, route: CallRoute, key: str
    ) -> CallToolResult:
        """A stale session is replaced and the call retried once. Retrying is safe when the
        server refused the session outright ("Session not found"), or when the tool is
        read-only; a possibly-delivered write is reported, not repeated."""
        time_limit += route.patience
        for attempt in range(2):
            client, generation = await self._live_client()
            try:
                return await self._counted_call(
                    client, generation, name, args, time_limit, route, key
                )
            except MCPError as e:
                links = _links(e)
                if links:  # -32042: the user must open a link (a sign-in, a payment) first
                    if attempt == 0 and await self._opened(route, links):
                        continue  # done on the user's side: the call again, as the spec has it
                    raise ToolCallError(_needs_links(self.name, name, links)) from e
                if e.code == REQUEST_TIMEOUT:
                    raise ToolTimeout(
                        f"Tool '{name}' on server '{self.name}' "
                        f"did not answer within {time_limit:g}s{self._maybe_done(name)}"
                    ) from e
                stale = e.code == INVALID_REQUEST and "session" in e.message.lower()
                # The SDK's stand-in for an HTTP error without a JSON-RPC body: a gateway's 502
                # (a replica going down behind nginx), not the server answering the call.
                gateway = e.code == INTERNAL_ERROR and e.message == HTTP_ERROR_STAND_IN
                if not stale and not gateway and e.code != CONNECTION_CLOSED:
                    raise ToolCallError(
                        f"Server '{self.name}' rejected '{name}': {e.message}"
                    ) from e
                retry_ok = stale or self._is_read_only(name)
                problem = describe_error(e)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, httpx2.HTTPError) as e:
                retry_ok = self._is_read_only(name)
                problem = describe_error(e)
            except Exception as e:  # e.g. a result that fails the tool's output schema
                raise ToolCallError(
                    f"Tool '{name}' on server '{self.name}' failed: {describe_error(e)}"
                ) from e
            log.info("%s: session lost during %s (%s); reconnecting", self.name, name, problem)
            if not retry_ok or attempt == 1:
                self.last_error = f"lost connection: {problem}"
                self._signal("dead", generation)
                maybe = "" if retry_ok else self._maybe_done(name)  # refused twice: not run
                then = maybe or "; it is reconnecting, try again"
                raise ServerUnavailable(
                    f"Lost the connection to MCP server '{self.name}' during '{name}' "
                    f"({problem}){then}"
                )
            await self._drop(client, generation, problem)
        raise AssertionError("unreachable")

    async def _opened(self, route: CallRoute, links: list[ElicitRequestURLParams]) -> bool:
        """Each link shown to the user as a question (URL mode); True if they opened them all."""
        for link in links:
            answer = await self.elicitations.ask(route, self.name, link)
            if answer.action != "accept":
                return False
        return True

    async def _counted_call(
        self,
        client: Client,
        generation: int,
        name: str,
        args: dict[str, Any],
        time_limit: float,
        route: CallRoute,
        key: str,
    ) -> CallToolResult:
        """The call, counted as in flight on its session (supervise.py's `_retire` waits)."""
        calls = self._calls_on
        calls[generation] = calls.get(generation, 0) + 1
        try:
            return await client.call_tool(
                name,
                args,
                read_timeout_seconds=time_limit,
                progress_callback=route.progress if route.emit is not None else None,
                meta={CALL_META_KEY: key},
            )
        except BaseException:
            # given up (timed out, stopped) or failed: its reply is not read on (keepalive.py)
            if self.replies is not None:
                self.replies.cut(key)
            raise
        finally:
            calls[generation] -= 1
            if not calls[generation]:
                del calls[generation]
            ended, self._call_ended = self._call_ended, anyio.Event()
            ended.set()


MAX_LINKS = 3  # of one -32042 error: shown one after another


def _links(e: MCPError) -> list[ElicitRequestURLParams]:
    """The links a -32042 error (URL elicitation required) asks the user to open; none for
    any other error, or one whose data does not say them."""
    data = e.error.data
    if e.code != URL_ELICITATION_REQUIRED or not isinstance(data, dict):
        return []
    found = data.get("elicitations")
    if not isinstance(found, list):
        return []
    try:  # the first few only: a server may send a million
        return [ElicitRequestURLParams.model_validate(x) for x in found[:MAX_LINKS]]
    except ValidationError:
        return []


def _needs_links(server: str, tool: str, links: list[ElicitRequestURLParams]) -> str:
    """Why the call did not run, with the links in it: dropped, the user had no way on (found
    from outside). Bounded: a server writes them."""
    said = "; ".join(f"{link.message[:300]} ({link.url[:1000]})" for link in links)
    return (
        f"'{tool}' did not run: MCP server '{server}' needs the user to open a link first: "
        f"{said}. Open it, then ask again"
    )
