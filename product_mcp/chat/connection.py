"""One long-lived MCP client session per configured server, that heals itself.

The seed opened a connection per tool call and died at startup when a server was down. Here
each server gets a supervisor task that owns its session (anyio needs the task that enters a
transport to be the one that leaves it), reconnects with backoff, pings to notice outages, and
refreshes the tool list on reconnect and on `notifications/tools/list_changed`. Callers in
other tasks just borrow the live session.
"""

from __future__ import annotations

import logging
import math
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import IO, TYPE_CHECKING, Any, Literal

import anyio
import httpx2
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult, Implementation, Tool
from mcp.types.jsonrpc import CONNECTION_CLOSED, INVALID_REQUEST, REQUEST_TIMEOUT

from models import CALL_META_KEY
from product_mcp.chat.elicitation import CallRoute, Elicitations, unattended
from product_mcp.chat.mcp_config import ServerConfig
from product_mcp.chat.results import ToolEntry, describe_error
from product_mcp.core import mcp_compat
from product_mcp.core.errors import ServerUnavailable, ToolCallError, ToolTimeout

if TYPE_CHECKING:
    from product_mcp.chat.live import StockWatch

log = logging.getLogger("mcp_manager")

# Only handshake-era sessions have ping; we pin that era on purpose (see _open_client).
warnings.filterwarnings("ignore", category=MCPDeprecationWarning)

Status = Literal["connecting", "connected", "failed"]
CLIENT_INFO = Implementation(name="product-mcp-web", version="0.1.0")
MAX_EVENT_BYTES = 32 * 1024 * 1024  # largest tool result (one SSE event) taken from a server
# A pooled connection is dropped before uvicorn's default 5 s keep-alive timer closes it on the
# server's side: reusing one the server is closing loses the request (a tools/call cannot
# safely be sent twice).
KEEPALIVE_EXPIRY = 4.0
QUICK_ATTEMPTS = 2  # connection attempts a call makes (skipping the backoff) before giving up
QUICK_RETRY_PAUSE = 0.3  # seconds between them


def _stderr_file() -> IO[str]:
    return tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")


def _tail(f: IO[str], lines: int = 3, chars: int = 400) -> str:
    try:
        f.flush()
        f.seek(0)
        text = f.read()
    except (OSError, ValueError):
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])[-chars:]


class ServerConnection:
    """Supervises one server: connect, serve calls, notice death, reconnect with backoff."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        connect_timeout: float = 10.0,
        ping_interval: float = 15.0,
        reconnect_max: float = 30.0,
        ready_wait: float = 5.0,
        elicitations: Elicitations | None = None,
    ) -> None:
        self.config = config
        self.elicitations = elicitations or Elicitations()
        self._routes: list[CallRoute] = []  # calls in flight, oldest first
        self._keyed: dict[str, CallRoute] = {}  # the same, by the id sent in their `_meta`
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.reconnect_max = reconnect_max
        self.ready_wait = ready_wait
        self.status: Status = "connecting"
        self.last_error: str | None = None
        self.tools: list[Tool] = []
        self.server_info: Implementation | None = None
        self.connected_at: float | None = None
        self.attempts = 0
        self._client: Client | None = None
        self.watch: StockWatch | None = None  # live stock for the page (chat/live.py)
        self._http_error: str | None = None
        self._generation = 0
        self._changed = anyio.Event()
        self._settled = anyio.Event()
        self._send: MemoryObjectSendStream[tuple[str, int]]
        self._recv: MemoryObjectReceiveStream[tuple[str, int]]
        self._send, self._recv = anyio.create_memory_object_stream(math.inf)

    @property
    def name(self) -> str:
        return self.config.name

    def snapshot(self) -> dict[str, Any]:
        cfg = self.config
        info: dict[str, Any] = {
            "name": cfg.name,
            "transport": cfg.transport,
            "url": cfg.url,
            "command": cfg.target() if cfg.transport == "stdio" else None,
            "status": self.status,
            "error": self.last_error,
            "tools": len(self.tools) if self.status == "connected" else 0,
            "attempts": self.attempts,
            "connectedAt": self.connected_at,
            "available": self.status == "connected",
            "knownTools": [t.name for t in self.tools],
        }
        if self.server_info is not None:
            info["serverInfo"] = {
                "name": self.server_info.name,
                "version": self.server_info.version,
            }
        return info

    def _set_status(self, status: Status) -> None:
        self.status = status
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _signal(self, kind: str, generation: int | None = None) -> None:
        self._send.send_nowait((kind, self._generation if generation is None else generation))

    @asynccontextmanager
    async def _open_client(self, errlog: IO[str] | None) -> AsyncIterator[Client]:
        cfg = self.config
        async with AsyncExitStack() as stack:
            transport: Any
            if cfg.transport == "http":
                assert cfg.url is not None
                # Our own client (not create_mcp_http_client) for the response hook: the SDK
                # reports a refused request as "Server returned an error response" without
                # the status, which is what a user needs to fix (401 → missing token).
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        headers=cfg.headers or None,
                        timeout=httpx2.Timeout(self.connect_timeout, read=300.0),
                        limits=httpx2.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
                        event_hooks={"response": [self._note_response]},
                    )
                )
                # The SDK drops the whole session on an SSE event over 1 MiB, and a tool
                # result of 1 MB arrives twice (text and structuredContent); chat.py caps what
                # reaches the model. (The SDK's SSE client has no such setting.)
                transport = streamable_http_client(
                    cfg.url, http_client=http, max_sse_event_size=MAX_EVENT_BYTES
                )
            elif cfg.transport == "sse":
                assert cfg.url is not None
                transport = sse_client(
                    cfg.url, headers=cfg.headers or None, timeout=self.connect_timeout
                )
            else:
                assert cfg.command is not None
                params = StdioServerParameters(
                    command=cfg.command, args=cfg.args, env=cfg.env or None, cwd=cfg.cwd
                )
                transport = stdio_client(params, errlog=errlog or sys.stderr)
            # "legacy" = the initialize handshake: a real session (so a restarted server is
            # noticed as "Session not found"), pings, and list_changed notifications on every
            # transport, including servers that predate the 2026 protocol.
            client = Client(
                transport,
                mode="legacy",
                cache=None,
                read_timeout_seconds=self.connect_timeout,
                **self.client_callbacks(),
            )
            yield await stack.enter_async_context(client)

    def client_callbacks(self) -> dict[str, Any]:
        """What every session of this connection is opened with (declares elicitation)."""
        return {
            "message_handler": self._on_message,
            "elicitation_callback": self._on_elicit,
            "client_info": CLIENT_INFO,
        }

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

    async def _note_response(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self._http_error = f"HTTP {response.status_code} {response.reason_phrase}".strip()

    async def _on_message(self, message: Any) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            log.info("%s: tools/list_changed", self.name)
            self._signal("refresh")
        elif getattr(message, "method", None) == "notifications/resources/updated":
            if self.watch is not None:
                self.watch.updated(self.name, str(message.params.uri))
        elif isinstance(message, Exception):
            log.debug("%s: transport reported %s", self.name, describe_error(message))
            self._signal("check")

    async def _load_tools(self, client: Client) -> None:
        tools: list[Tool] = []
        cursor: str | None = None
        for _ in range(100):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        self.tools = tools

    async def run(self) -> None:
        """Forever: connect, supervise, and after a failure wait (backoff) and try again."""
        delay = 0.0
        while True:
            self.attempts += 1
            self._set_status("connecting")
            # A stdio server's stderr goes to a file, so a crash can be explained by its last words.
            errlog = _stderr_file() if self.config.transport == "stdio" else None
            self._http_error = None
            connected = False
            try:
                async with self._open_client(errlog) as client:
                    await self._load_tools(client)
                    self._generation += 1
                    self._client = client
                    self.server_info = client.server_info
                    self.last_error = None
                    self.connected_at = time.time()
                    delay = 0.0
                    connected = True
                    self._set_status("connected")
                    self._settled.set()
                    log.info("%s: connected, %d tools", self.name, len(self.tools))
                    if self.watch is not None:
                        await self.watch.connected(self, client)
                    await self._supervise(client)
                    log.warning("%s (%s): %s", self.name, self.config.target(), self.last_error)
            except Exception as e:
                if connected and self.last_error:
                    # Closing a broken transport raises too; why it broke is the real news.
                    log.debug("%s: closing the lost session: %s", self.name, describe_error(e))
                else:
                    self.last_error = describe_error(e)
                    if self._http_error and self._http_error not in self.last_error:
                        self.last_error += f" ({self._http_error})"
                log.warning("%s (%s): %s", self.name, self.config.target(), self.last_error)
            finally:
                self._client = None
                if self.watch is not None:
                    self.watch.disconnected(self.name)
                if errlog is not None:
                    tail = _tail(errlog)
                    errlog.close()
                    if tail and self.last_error:
                        self.last_error += f" (stderr: {tail})"
            self._set_status("failed")
            self._settled.set()
            if delay > 0:
                with anyio.move_on_after(delay):
                    while (await self._recv.receive())[0] != "kick":
                        pass
            delay = min(max(delay * 2, 0.5), self.reconnect_max)

    async def _supervise(self, client: Client) -> None:
        """Return when the session is gone (failed ping, or a caller saw it die)."""
        generation = self._generation
        while True:
            signal: tuple[str, int] | None = None
            with anyio.move_on_after(self.ping_interval):
                signal = await self._recv.receive()
            if signal is None:
                try:
                    with anyio.fail_after(self.connect_timeout):
                        await client.send_ping()
                except Exception as e:
                    self.last_error = f"lost connection: {describe_error(e)}"
                    return
                continue
            kind, gen = signal
            if kind == "dead" and gen == generation:
                return
            if kind == "check" and mcp_compat.client_stream_closed(client):
                self.last_error = "lost connection: the transport closed"
                return
            if kind == "refresh":
                try:
                    await self._load_tools(client)
                except Exception as e:
                    self.last_error = f"tools/list failed: {describe_error(e)}"
                    return

    async def wait_settled(self) -> None:
        await self._settled.wait()

    async def _drop(self, client: Client, generation: int, problem: str) -> None:
        """Tell the supervisor this session is dead and wait until it has let go of it."""
        self.last_error = f"lost connection: {problem}"
        self._signal("dead", generation)
        with anyio.move_on_after(self.ready_wait):
            while self._client is client:
                await self._changed.wait()

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
            raise ServerUnavailable(
                f"MCP server '{self.name}' is not connected ({self.status}){reason}"
            )
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
        try:
            return await self._call_tool(name, args, time_limit, route, key)
        finally:
            self._routes.remove(route)
            del self._keyed[key]
            self.elicitations.close(route)

    async def _call_tool(
        self, name: str, args: dict[str, Any], time_limit: float, route: CallRoute, key: str
    ) -> CallToolResult:
        """A stale session is replaced and the call retried once. Retrying is safe when the
        server refused the session outright ("Session not found"), or when the tool is
        read-only; a possibly-delivered write is reported, not repeated."""
        progress = route.progress if route.emit is not None else None
        time_limit += route.patience
        for attempt in range(2):
            client, generation = await self._live_client()
            try:
                return await client.call_tool(
                    name,
                    args,
                    read_timeout_seconds=time_limit,
                    progress_callback=progress,
                    meta={CALL_META_KEY: key},
                )
            except MCPError as e:
                if e.code == REQUEST_TIMEOUT:
                    raise ToolTimeout(
                        f"Tool '{name}' on server '{self.name}' "
                        f"did not answer within {time_limit:g}s"
                    ) from e
                stale = e.code == INVALID_REQUEST and "session" in e.message.lower()
                if not stale and e.code != CONNECTION_CLOSED:
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
                raise ServerUnavailable(
                    f"Lost the connection to MCP server '{self.name}' during '{name}' ({problem}); "
                    "it is reconnecting, try again"
                )
            await self._drop(client, generation, problem)
        raise AssertionError("unreachable")
