"""The supervise/reconnect loop: one task per server owns its session for its lifetime.

anyio needs the task that enters a transport to be the one that leaves it, so one supervisor
task opens the session, loads the tools, pings to notice outages, reloads tools on
`notifications/tools/list_changed`, and after a failure waits (backoff, cut short by a caller's
"kick") and connects again. Other tasks only borrow the live session (connection.py).
"""

from __future__ import annotations

import logging
import math
import time

import anyio
from mcp import Client
from mcp.types import Tool

from product_mcp.chat.results import describe_error
from product_mcp.chat.session_open import SessionOpener, _stderr_file, _tail
from product_mcp.core import mcp_compat

log = logging.getLogger("mcp_manager")

# How long a session found dead still waits for the tool calls already sent on it.
CALLS_GRACE = 2.0


def _task_only(tool: Tool) -> bool:
    return tool.execution is not None and tool.execution.task_support == "required"


class Supervision(SessionOpener):
    """run() is the supervisor task; _drop() is how a caller reports a dead session."""

    async def _load_tools(self, client: Client) -> None:
        tools: list[Tool] = []
        cursor: str | None = None
        for _ in range(100):
            page = await client.list_tools(cursor=cursor)
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        # A tool that runs only as an MCP task (`execution.taskSupport: "required"`) fails any
        # plain call with -32601; this client does not use tasks, so it is not offered.
        self.task_only = [t.name for t in tools if _task_only(t)]
        self.tools = [t for t in tools if not _task_only(t)]

    async def run(self) -> None:
        """Forever: connect, supervise, and after a failure wait (backoff) and try again."""
        delay = 0.0
        while True:
            self.attempts += 1
            self._set_status("connecting")
            # A stdio server's stderr goes to a file, so a crash can be explained by its last words.
            errlog = _stderr_file() if self.config.transport == "stdio" else None
            self._http_error = None
            self._noise, self._noise_lines = "", 0
            connected = False
            # The handshake (connect, initialize, tools/list) gets a deadline of its own: the
            # SDK's SSE client waits for the `endpoint` event, and for response headers, with
            # the read timeout of a stream (300 s), so a server that accepts and then says
            # nothing (e.g. one stopping mid-handshake) held the connection "connecting" for
            # minutes. The scope wraps the whole session, so the transport's task groups nest
            # in it; once connected, the deadline is lifted.
            handshake = anyio.CancelScope(deadline=anyio.current_time() + self.handshake_timeout)
            try:
                with handshake:
                    async with self._open_client(errlog) as client:
                        await self._load_tools(client)
                        handshake.deadline = math.inf
                        delay = 0.0
                        connected = True
                        await self._serve(client)
                        log.warning("%s (%s): %s", self.name, self.config.target(), self.last_error)
                        # Lost: said at once, and the closing bounded. A hung server (SIGSTOP)
                        # held the SDK's DELETE for a stream's read timeout, and the status
                        # said "connected", its tools offered, all that while.
                        self._set_status("failed")
                        handshake.deadline = anyio.current_time() + self.connect_timeout
                if handshake.cancelled_caught and not connected:
                    self.last_error = (
                        f"the handshake did not finish within {self.handshake_timeout:g}s "
                        "(the server accepted the connection but did not answer)"
                    )
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
                    if self._noise_lines and not connected and self.last_error:
                        self.last_error += f" ({self._noise_said()})"
            self._set_status("failed")
            self._settled.set()
            if delay > 0:
                with anyio.move_on_after(delay):
                    while (await self._recv.receive())[0] != "kick":
                        pass
            delay = min(max(delay * 2, 0.5), self.reconnect_max)

    async def _serve(self, client: Client) -> None:
        """A session is up: lend it out, and supervise it until it is gone."""
        self._generation += 1
        self._client = client
        self.server_info = client.server_info
        self.last_error = None
        self.connected_at = time.time()
        self._set_status("connected")
        self._settled.set()
        log.info("%s: connected, %d tools", self.name, len(self.tools))
        if self.watch is not None:
            await self.watch.connected(self, client)
        await self._supervise(client)
        await self._retire(self._generation)

    async def _retire(self, generation: int) -> None:
        """Lend the session no more, and let the calls already on it end on their own first.

        Found under load: a ping met "Session not found" (main.py had restarted) while a
        purchase was on its way, and closing the session at once ended the purchase with
        "Connection closed", which for a tool that writes cannot say whether it was done. Given
        a moment, the call hears the server's own answer: its result, or the same refusal,
        which is safe to retry. A call still running after CALLS_GRACE is ended as before.
        """
        self._client = None
        with anyio.move_on_after(CALLS_GRACE):
            while self._calls_on.get(generation):
                await self._call_ended.wait()

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
                        # The session's ping: web.py's clients are legacy-mode, where ping is
                        # part of the protocol; Client.send_ping warns for 2026-07-28 users.
                        await client.session.send_ping()
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

    async def _drop(self, client: Client, generation: int, problem: str) -> None:
        """Tell the supervisor this session is dead and wait until it has let go of it."""
        self.last_error = f"lost connection: {problem}"
        self._signal("dead", generation)
        with anyio.move_on_after(self.ready_wait):
            while self._client is client:
                await self._changed.wait()
