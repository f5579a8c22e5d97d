"""A session found dead while a tool call is on its way lets that call end on its own.

Seen in the suite under load (tests/web/test_multi.py, main.py restarted): web.py's ping met
"Session not found" while a purchase was in flight on the same session, and closing the session
at once ended the purchase with "Connection closed", which for a tool that writes cannot be
retried ("it is reconnecting, try again"), though the server refused it a moment later (safe
to retry) or, with a live server, answered it. Here the server is real (the mini MCP server in
a thread) and the session is declared dead exactly while a writing tool runs. A write whose
answer never comes (lost, or past its time limit) is said to have maybe been carried out,
never "try again": a model told so bought twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import pytest

from product_mcp.chat import supervise
from product_mcp.chat.connection import ServerConnection
from product_mcp.chat.mcp_config import ServerConfig
from product_mcp.core.errors import ServerUnavailable, ToolTimeout
from tests.mini_mcp import build_app, make_server
from tests.servers import ThreadServer

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadServer]:
    mcp = make_server()

    @mcp.tool(description="Writes after a pause (not read-only).")
    async def slow_write(seconds: float) -> str:
        await anyio.sleep(seconds)
        return f"written after {seconds}"

    with ThreadServer(build_app(mcp)) as srv:
        yield srv


async def _connected(conn: ServerConnection) -> None:
    with anyio.fail_after(10):
        while conn.status != "connected":
            await conn._changed.wait()


async def _declared_dead_during(conn: ServerConnection, seconds: float) -> str | Exception:
    """`slow_write(seconds)`, with the session declared dead 0.2 s into it (as a failed ping
    or another caller's "Session not found" does): what the call returned or raised."""
    outcome: str | Exception = "nothing"

    async def write() -> None:
        nonlocal outcome
        try:
            result = await conn.call_tool("slow_write", {"seconds": seconds}, time_limit=30)
            outcome = result.content[0].text  # type: ignore[union-attr]
        except ServerUnavailable as e:
            outcome = e

    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.run)
        await _connected(conn)
        generation = conn._generation
        async with anyio.create_task_group() as calls:
            calls.start_soon(write)
            await anyio.sleep(0.2)
            conn._signal("dead", generation)
        # and the session is replaced afterwards
        with anyio.fail_after(10):
            while conn._generation == generation or conn.status != "connected":
                await conn._changed.wait()
        tg.cancel_scope.cancel()
    return outcome


@pytest.mark.parametrize("transport", ["http", "sse"])
async def test_a_write_in_flight_ends_with_its_answer(server: ThreadServer, transport: str) -> None:
    path = "/mcp" if transport == "http" else "/sse"
    conn = ServerConnection(ServerConfig(name="mini", transport=transport, url=server.url + path))
    assert await _declared_dead_during(conn, 0.6) == "written after 0.6"


async def test_a_call_that_outlasts_the_grace_is_ended(
    server: ThreadServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wait is bounded: a call still running then is ended as before, and said so."""
    monkeypatch.setattr(supervise, "CALLS_GRACE", 0.5)
    conn = ServerConnection(ServerConfig(name="mini", transport="http", url=server.url + "/mcp"))
    started = time.monotonic()
    outcome = await _declared_dead_during(conn, 20)
    assert isinstance(outcome, ServerUnavailable), outcome
    assert "Lost the connection to MCP server 'mini' during 'slow_write'" in str(outcome)
    # A write whose answer never came may have been done: never "try again" (found from
    # outside: a model told so bought a second time).
    assert "it may have been carried out all the same: check before calling it" in str(outcome)
    assert "try again" not in str(outcome)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("tool", "args"), [("slow_write", {"seconds": 5}), ("slow", {"seconds": 5})]
)
async def test_a_timed_out_write_may_still_be_done(
    server: ThreadServer, tool: str, args: dict[str, float]
) -> None:
    conn = ServerConnection(ServerConfig(name="mini", transport="http", url=server.url + "/mcp"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.run)
        await _connected(conn)
        with pytest.raises(ToolTimeout) as caught:
            await conn.call_tool(tool, args, time_limit=0.5)
        tg.cancel_scope.cancel()
    said = str(caught.value)
    assert said.startswith(f"Tool '{tool}' on server 'mini' did not answer within 0.5s"), said
    may = "; it may have been carried out all the same: check before calling it again"
    assert said.endswith(may) == (tool == "slow_write"), said  # `slow` is read-only
