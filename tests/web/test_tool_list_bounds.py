"""A hostile server's tool list and notifications: reloads coalesced, the list bounded, the
log lines its invalid notifications cause bounded too.

Found from outside (a hostile MCP server against web.py): 300 `tools/list_changed`
notifications queued 300 whole reloads, run one after another for minutes; a list of 5,010
tools with big schemas was kept whole and offered to the model (66 MB a request); a tool
listed twice by one server got one function name. Neighbours: test_session_retire.py (the
same real server in a thread), test_units*.py (pure helpers).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp.server.mcpserver import Context
from mcp.types import ListToolsResult, Tool, ToolListChangedNotification

from models import MAX_SERVER_TOOLS, MAX_TOOL_SCHEMA_BYTES
from product_mcp.chat.connection import ServerConnection
from product_mcp.chat.mcp_config import ServerConfig
from product_mcp.chat.names import build_table, reverse
from product_mcp.chat.results import ToolEntry
from product_mcp.core.logs import BoundedFormatter, Repeats
from tests.mini_mcp import build_app, make_server
from tests.servers import ThreadServer

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadServer]:
    mcp = make_server()

    @mcp.tool(description="Announce tools/list_changed n times, then answer.")
    async def listflood(n: int, ctx: Context) -> str:
        for _ in range(n):
            await ctx.session.send_tool_list_changed()
        return "flooded"

    @mcp.tool(description="Send n notifications the client must reject, then answer.")
    async def badprogress(n: int, ctx: Context) -> str:
        for i in range(n):  # raw: the SDK's own types would refuse a null progressToken
            outbound = ctx.session._request_outbound  # type: ignore[attr-defined]
            await outbound.notify("notifications/progress", {"progressToken": None, "progress": i})
        return "sent"

    with ThreadServer(build_app(mcp)) as srv:
        yield srv


class Reloads:
    """Counts a connection's tool list loads; `gate` (if set) holds each one until set."""

    def __init__(self, conn: ServerConnection) -> None:
        self.started = self.finished = 0
        self.gate: anyio.Event | None = None
        self.changed = anyio.Event()
        original = conn._load_tools

        async def load(client: Any) -> None:
            self.started += 1
            self._tell()
            if self.gate is not None:
                await self.gate.wait()
            await original(client)
            self.finished += 1
            self._tell()

        conn._load_tools = load  # type: ignore[method-assign]

    def _tell(self) -> None:
        changed, self.changed = self.changed, anyio.Event()
        changed.set()

    async def until(self, finished: int) -> None:
        with anyio.fail_after(10):
            while self.finished < finished:
                await self.changed.wait()

    async def settled(self) -> int:
        """Loads started once no more come within a moment (an upper bound is asserted)."""
        while True:
            before = self.started
            await anyio.sleep(0.5)
            if self.started == before and self.finished == self.started:
                return self.started


def _connection(server: ThreadServer) -> ServerConnection:
    return ServerConnection(ServerConfig(name="mini", transport="http", url=server.url + "/mcp"))


async def _connected(conn: ServerConnection) -> None:
    with anyio.fail_after(10):
        while conn.status != "connected":
            await conn._changed.wait()


async def test_a_burst_of_list_changed_reloads_once(server: ThreadServer) -> None:
    """300 notifications in a row, before the supervisor runs again: one reload, not 300."""
    conn = _connection(server)
    reloads = Reloads(conn)
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.run)
        await _connected(conn)
        assert reloads.finished == 1  # the handshake's
        for _ in range(300):
            await conn._on_message(ToolListChangedNotification())
        await reloads.until(2)
        assert await reloads.settled() == 2
        assert conn.status == "connected" and "echo" in {t.name for t in conn.tools}
        tg.cancel_scope.cancel()


async def test_notifications_during_a_reload_cause_one_more(server: ThreadServer) -> None:
    """While a reload runs, more notifications mark it dirty: one more reload after it (the
    list may have changed since it was read), however many came."""
    conn = _connection(server)
    reloads = Reloads(conn)
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.run)
        await _connected(conn)
        reloads.gate = anyio.Event()
        await conn._on_message(ToolListChangedNotification())
        with anyio.fail_after(10):
            while reloads.started < 2:  # the reload is running, held at the gate
                await reloads.changed.wait()
        for _ in range(50):
            await conn._on_message(ToolListChangedNotification())
        reloads.gate.set()
        await reloads.until(3)
        assert await reloads.settled() == 3
        tg.cancel_scope.cancel()


async def test_a_server_flooding_list_changed_is_reloaded_a_few_times(
    server: ThreadServer,
) -> None:
    """The same through the SDK from a real server: 300 notifications during one call. Each
    reload is held a moment (a big list takes seconds); before, every notification queued
    one and the 300 ran one after another."""
    conn = _connection(server)
    reloads = Reloads(conn)
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.run)
        await _connected(conn)
        reloads.gate = anyio.Event()
        tg.start_soon(_open_after, reloads.gate, 0.5)
        result = await conn.call_tool("listflood", {"n": 300}, time_limit=30)
        assert result.content[0].text == "flooded"  # type: ignore[union-attr]
        reloads.gate = None
        total = await reloads.settled()
        assert 2 <= total <= 30, total  # a few, however the reloads interleave (301 before)
        assert conn.status == "connected"
        tg.cancel_scope.cancel()


async def _open_after(gate: anyio.Event, seconds: float) -> None:
    await anyio.sleep(seconds)
    gate.set()


# --- bounds on what one server lists (a scripted client: no server needed) --------------------


def _tool(name: str, description: str = "d", schema: dict[str, Any] | None = None) -> Tool:
    return Tool(name=name, description=description, input_schema=schema or {"type": "object"})


class Pages:
    """Stands in for the SDK client: tools/list answered from `pages`, counting requests."""

    def __init__(self, pages: list[list[Tool]]) -> None:
        self.pages = pages
        self.asked = 0

    async def list_tools(self, cursor: str | None = None) -> ListToolsResult:
        self.asked += 1
        i = int(cursor or 0)
        nxt = str(i + 1) if i + 1 < len(self.pages) else None
        return ListToolsResult(tools=self.pages[i], next_cursor=nxt)


async def _loaded(pages: list[list[Tool]]) -> tuple[ServerConnection, Pages]:
    conn = ServerConnection(ServerConfig(name="evil", transport="http", url="http://x/mcp"))
    client = Pages(pages)
    await conn._load_tools(client)  # type: ignore[arg-type]
    return conn, client


async def test_a_server_s_tools_are_capped_in_number() -> None:
    conn, _ = await _loaded([[_tool(f"t{i}") for i in range(5010)]])
    assert len(conn.tools) == MAX_SERVER_TOOLS
    assert [t.name for t in conn.tools[:2]] == ["t0", "t1"]
    problems = conn.snapshot()["problems"]
    assert problems == [
        f"offers 5010 tools; the first {MAX_SERVER_TOOLS} are used "
        f"(at most {MAX_SERVER_TOOLS} per server)"
    ]


async def test_the_pages_stop_at_the_cap() -> None:
    pages = [[_tool(f"p{p}t{i}") for i in range(100)] for p in range(50)]
    conn, client = await _loaded(pages)
    assert len(conn.tools) == MAX_SERVER_TOOLS
    assert client.asked == -(-MAX_SERVER_TOOLS // 100)  # 3 pages of 100, not 50
    assert conn.problems[0].startswith("offers more than 300 tools; the first 256 are used")


async def test_tools_too_big_are_left_out_saying_why() -> None:
    big_schema = {"type": "object", "properties": {f"p{i}": {"description": "d" * 200}
                                                    for i in range(2000)}}  # fmt: skip
    conn, _ = await _loaded(
        [
            [
                _tool("fine"),
                _tool("wordy", description="w" * 5000),
                _tool("huge", schema=big_schema),
                _tool("also_fine"),
            ]
        ]
    )
    assert [t.name for t in conn.tools] == ["fine", "also_fine"]
    problems = conn.snapshot()["problems"]
    assert problems[0] == "tool 'wordy' left out: its description is 4.9 KiB, over 4.0 KiB"
    assert problems[1].startswith("tool 'huge' left out: its input schema is ")
    assert problems[1].endswith(f", over {MAX_TOOL_SCHEMA_BYTES // 1024}.0 KiB")
    assert len(problems) == 2


async def test_a_server_s_tools_together_are_bounded() -> None:
    """Each under the per-tool bounds, together far over the per-server one (1 MiB)."""
    schema = {"type": "object", "properties": {f"p{i}": {"description": "d" * 500}
                                                for i in range(100)}}  # fmt: skip
    conn, _ = await _loaded([[_tool(f"t{i}", schema=schema) for i in range(200)]])
    kept = len(conn.tools)
    assert 0 < kept < 30, kept
    problems = conn.problems
    assert (
        problems[0] == f"tool 't{kept}' left out: the server's tools together would be over 1.0 MiB"
    )
    assert len(problems) == 11 and problems[-1] == f"and {200 - kept - 10} more tools left out"


async def test_a_tool_listed_twice_is_kept_once() -> None:
    conn, _ = await _loaded(
        [[_tool("get_products", "first"), _tool("echo"), _tool("get_products", "twin")]]
    )
    assert [(t.name, t.description) for t in conn.tools] == [
        ("get_products", "first"),
        ("echo", "d"),
    ]
    assert conn.problems == [
        "tool 'get_products' left out: a second tool of that name (the first is used)"
    ]
    entries = [ToolEntry("evil", t) for t in conn.tools]
    assert len(set(reverse(build_table(entries)).values())) == len(entries)


async def test_invalid_notifications_are_logged_once_per_server(server: ThreadServer) -> None:
    """Each invalid notification wrote a 40-line traceback to web.py's log (47,680 in 30 s,
    found from outside): now one line, naming the server, and the rest counted."""
    lines: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Lines()
    handler.setFormatter(BoundedFormatter())
    handler.addFilter(Repeats())
    sdk = logging.getLogger("client")
    sdk.addHandler(handler)
    sdk.propagate = False  # the test run's own handlers render every traceback (slowly)
    conn = _connection(server)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.run)
            await _connected(conn)
            result = await conn.call_tool("badprogress", {"n": 200}, time_limit=30)
            assert result.content[0].text == "sent"  # type: ignore[union-attr]
            tg.cancel_scope.cancel()
    finally:
        sdk.removeHandler(handler)
        sdk.propagate = True
    said = [line for line in lines if "Failed to validate notification" in line]
    assert len(said) == 1, lines[:3]
    assert "\n" not in said[0] and len(said[0]) < 600, said[0]
    assert said[0].startswith("WARNING:client: Failed to validate notification: "), said[0]
    assert said[0].endswith("(server 'mini')"), said[0]
