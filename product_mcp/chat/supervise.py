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
import pydantic_core
from mcp import Client
from mcp.types import Tool

from models import (
    MAX_SERVER_TOOLS,
    MAX_SERVER_TOOLS_BYTES,
    MAX_TOOL_DESCRIPTION_BYTES,
    MAX_TOOL_SCHEMA_BYTES,
)
from product_mcp.chat.results import describe_error
from product_mcp.chat.session_open import SessionOpener, _stderr_file, _tail
from product_mcp.core import logs, mcp_compat

log = logging.getLogger("mcp_manager")

# How long a session found dead still waits for the tool calls already sent on it.
CALLS_GRACE = 2.0


MAX_PAGES = 100  # of one tools/list
MAX_PROBLEMS = 10  # tools named in a server's problems; the rest are counted
SHOWN_NAME = 100  # characters of a tool's name in a problem (a server chooses it)


def _task_only(tool: Tool) -> bool:
    return tool.execution is not None and tool.execution.task_support == "required"


def _size(n: int) -> str:
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} bytes"
    return f"{n / (1024 * 1024):.1f} MiB"


def _json_bytes(value: object) -> int:
    return len(pydantic_core.to_json(value, fallback=str))


class ToolList:
    """A server's tool list as it is taken in, page by page, within the bounds in models.py.

    Tools past a bound are left out (not offered to the model, not shown), each with a
    sentence in `problems` (found from outside: a server listing 5,010 tools with big schemas
    made web.py hold 660 MiB, and each LLM request carry 66 MB of tools); so is a second
    tool of the same name (both got one function name, and a call went to the first).
    """

    def __init__(self) -> None:
        self.tools: list[Tool] = []
        self.task_only: list[str] = []
        self.offered = 0  # tools the server listed, in the pages read
        self.more = False  # it has pages not read (the count cap was reached)
        self.past_cap = 0  # tools listed after MAX_SERVER_TOOLS were taken: not looked at
        self._names: set[str] = set()
        self._bytes = 0
        self._left_out: list[str] = []  # why, for the first MAX_PROBLEMS tools left out
        self._left_out_count = 0

    def add(self, tools: list[Tool]) -> None:
        self.offered += len(tools)
        for i, tool in enumerate(tools):
            if self.taken >= MAX_SERVER_TOOLS:
                self.past_cap += len(tools) - i  # said once in `problems`
                break
            why = self._refusal(tool)
            if why is not None:
                self._left_out_count += 1
                if len(self._left_out) < MAX_PROBLEMS:
                    self._left_out.append(f"tool '{tool.name[:SHOWN_NAME]}' left out: {why}")
                continue
            self._names.add(tool.name)
            # A tool that runs only as an MCP task (`execution.taskSupport: "required"`) fails
            # any plain call with -32601; this client does not use tasks, so it is not offered.
            if _task_only(tool):
                self.task_only.append(tool.name)
            else:
                self.tools.append(tool)

    @property
    def taken(self) -> int:
        return len(self._names)

    def _refusal(self, tool: Tool) -> str | None:
        """Why this tool is left out, in words; None if it is taken."""
        if tool.name in self._names:
            return "a second tool of that name (the first is used)"
        description = len((tool.description or "").encode())
        if description > MAX_TOOL_DESCRIPTION_BYTES:
            limit = _size(MAX_TOOL_DESCRIPTION_BYTES)
            return f"its description is {_size(description)}, over {limit}"
        for which, schema in (("input", tool.input_schema), ("output", tool.output_schema)):
            size = _json_bytes(schema) if schema is not None else 0
            if size > MAX_TOOL_SCHEMA_BYTES:
                limit = _size(MAX_TOOL_SCHEMA_BYTES)
                return f"its {which} schema is {_size(size)}, over {limit}"
        size = _json_bytes(tool.model_dump(by_alias=True, exclude_none=True))
        if self._bytes + size > MAX_SERVER_TOOLS_BYTES:
            limit = _size(MAX_SERVER_TOOLS_BYTES)
            return f"the server's tools together would be over {limit}"
        self._bytes += size
        return None

    def problems(self) -> list[str]:
        said: list[str] = []
        if self.past_cap or self.more:
            offers = f"more than {self.offered}" if self.more else str(self.offered)
            said.append(
                f"offers {offers} tools; the first {MAX_SERVER_TOOLS} are used "
                f"(at most {MAX_SERVER_TOOLS} per server)"
            )
        said.extend(self._left_out)
        if self._left_out_count > len(self._left_out):
            said.append(f"and {self._left_out_count - len(self._left_out)} more tools left out")
        return said


class Supervision(SessionOpener):
    """run() is the supervisor task; _drop() is how a caller reports a dead session."""

    async def _load_tools(self, client: Client) -> None:
        taken = ToolList()
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            taken.add(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
            if taken.taken >= MAX_SERVER_TOOLS:
                taken.more = True  # no need to read on: nothing more would be taken
                break
        self.task_only = taken.task_only
        self.tools = taken.tools
        self.problems = taken.problems()

    async def run(self) -> None:
        """Forever: connect, supervise, and after a failure wait (backoff) and try again."""
        # What the SDK logs from this task's sessions is counted per server (core/logs.py).
        logs.peer.set(self.name)
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
                    while (await self._signals.receive())[0] != "kick":
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
        if self.problems:
            log.warning("%s: %s", self.name, "; ".join(self.problems))
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

    async def _answers_ping(self, client: Client) -> bool:
        """Whether the session still answers; if not, `last_error` says why."""
        try:
            with anyio.fail_after(self.connect_timeout):
                # The session's ping: web.py's clients are legacy-mode, where ping is part of
                # the protocol; Client.send_ping warns for 2026-07-28 users.
                await client.session.send_ping()
        except Exception as e:
            self.last_error = f"lost connection: {describe_error(e)}"
            return False
        return True

    async def _supervise(self, client: Client) -> None:
        """Return when the session is gone (failed ping, or a caller saw it die)."""
        generation = self._generation
        while True:
            signal: tuple[str, int] | None = None
            with anyio.move_on_after(self.ping_interval):
                signal = await self._signals.receive()
            if signal is None:
                if not await self._answers_ping(client):
                    return
                continue
            kind, gen = signal
            if kind == "probe" and not await self._answers_ping(client):
                return  # the event stream broke: the server died, not at the next ping
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
