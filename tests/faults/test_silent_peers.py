"""Peers that accept a connection and then say nothing: web.py's handshake with an MCP server
is abandoned and retried, never waited on for the 300 s an SSE stream may stay quiet; main.py
takes api.py's change feed for dead after a few missed heartbeats and resumes it.

Seen in tests/web/test_multi.py under load: main.py restarted while web.py's SSE handshake
with it was under way, and web.py's connection stayed "connecting" for minutes (the SDK's SSE
client waits for the `endpoint` event, and for any response's headers, with its read timeout
for streams). main.py followed the feed with no read timeout at all: a stream whose far end
vanished without a FIN would have stopped live notifications for good. Here the silent peer
is a raw socket in the test's own event loop, so each way of saying nothing is exact.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketStream

from product_mcp.chat.connection import ServerConnection
from product_mcp.chat.mcp_config import ServerConfig
from product_mcp.mcp_server.bus import ShopBus
from product_mcp.mcp_server.live import DEFAULT_HEARTBEAT, Live, _heartbeat
from tests.servers import ROOT

pytestmark = pytest.mark.anyio

HEADERS = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"cache-control: no-store\r\ntransfer-encoding: chunked\r\n\r\n"
)
# What the silent server does once a request arrived: answer nothing at all, or the headers of
# an event stream and then nothing (no `endpoint` event, no reply to `initialize`).
SILENCES = {"no answer": b"", "headers then nothing": HEADERS}


@pytest.mark.parametrize("transport", ["sse", "http"])
@pytest.mark.parametrize("silence", list(SILENCES))
async def test_a_silent_handshake_is_abandoned_and_retried(transport: str, silence: str) -> None:
    accepted = 0

    async def serve(stream: SocketStream) -> None:
        nonlocal accepted
        accepted += 1
        async with stream:
            try:
                await stream.receive()  # the request (or its start)
            except anyio.EndOfStream:  # a handshake abandoned before its request was written
                return
            if SILENCES[silence]:
                await stream.send(SILENCES[silence])
            await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    path = "/sse" if transport == "sse" else "/mcp"
    conn = ServerConnection(
        ServerConfig(name="silent", transport=transport, url=f"http://127.0.0.1:{port}{path}"),
        connect_timeout=0.3,
        reconnect_max=0.2,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        tg.start_soon(conn.run)
        # Three attempts: each handshake given up within its deadline, then tried again.
        with anyio.fail_after(10):
            while conn.attempts < 3 or conn.status != "failed":
                await conn._changed.wait()  # set at every status change
        assert accepted >= 2
        error = conn.last_error or ""
        if transport == "sse":  # waiting for the `endpoint` event (or headers): our deadline
            assert f"did not finish within {conn.handshake_timeout:g}s" in error, error
        else:  # the SDK's own timeout for the `initialize` request comes first
            assert "'initialize' timed out" in error, error
        tg.cancel_scope.cancel()


def chunk(text: str) -> bytes:
    data = text.encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.mark.parametrize("heartbeats", [False, True])
async def test_a_silent_change_feed_is_resumed(heartbeats: bool) -> None:
    """A feed stream that announces a 0.1 s heartbeat and then says nothing is dropped after
    3 periods and resumed from the last seq; one whose heartbeats keep coming is kept (it
    announces 0.5 s and beats every 0.05 s: a loaded machine's stall of a few tenths of a
    second must not read as silence)."""
    streams: list[bytes] = []
    period = b"0.5" if heartbeats else b"0.1"

    async def serve(stream: SocketStream) -> None:
        async with stream:
            request = await stream.receive()
            if b"text/event-stream" not in request:  # the head: GET /changes?limit=1
                await stream.send(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"x-change-head: 7\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]"
                )
                return
            streams.append(request)
            try:
                await stream.send(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"x-change-heartbeat: "
                    + period
                    + b"\r\ntransfer-encoding: chunked\r\n\r\n"
                    + chunk("retry: 1000\n\n")
                )
                while heartbeats:
                    await anyio.sleep(0.05)
                    await stream.send(chunk(": heartbeat\n\n"))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return  # the follower hung up (it stops when the test ends)
            await anyio.sleep_forever()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    live = Live(object(), ShopBus())
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        live.start(f"http://127.0.0.1:{port}/api")
        try:
            await anyio.sleep(1.5)  # 0.3 s of silence, then 0.2 s before the next try
        finally:
            await live.stop()
        tg.cancel_scope.cancel()
    if heartbeats:
        assert len(streams) == 1
    else:
        assert len(streams) >= 2
        assert all(b"last-event-id: 7" in r.lower() for r in streams)  # resumed where it was


def test_the_heartbeat_header_is_read_as_api_py_may_set_it() -> None:
    """Any positive CHANGE_HEARTBEAT is taken as stated (a 2-hour heartbeat must not make
    main.py drop a healthy stream every 45 s); anything else means api.py's default."""
    assert _heartbeat("7200") == 7200 and _heartbeat("0.2") == 0.2
    assert DEFAULT_HEARTBEAT == 15
    for bad in (None, "", "0", "-1", "nan", "inf", "soon"):
        assert _heartbeat(bad) == DEFAULT_HEARTBEAT, bad


# A stdio server that prints a banner to stdout (where JSON-RPC goes) and then answers: the
# banner was only in the log, and a server that never got past it said "'initialize' timed
# out" and nothing else (found from outside). The first of such lines is said in the status.
CHATTY = """
import sys
print("Starting shop server v1.2 on stdio...", flush=True)
print('{"hello": "world"}', flush=True)
if "--answer" in sys.argv:  # then main.py itself
    import runpy
    sys.argv = ["main.py", "--transport", "stdio"]
    runpy.run_path("main.py", run_name="__main__")
else:
    sys.stdin.read()
"""


@pytest.mark.parametrize("answers", [False, True])
async def test_a_stdio_server_s_noise_on_stdout_is_said(answers: bool, tmp_path: Path) -> None:
    script = tmp_path / "chatty.py"
    script.write_text(CHATTY)
    conn = ServerConnection(
        ServerConfig(
            name="chatty",
            transport="stdio",
            command=sys.executable,
            args=[str(script), *(["--answer"] if answers else [])],
            env={"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]},
            cwd=str(ROOT),
        ),
        connect_timeout=3 if answers else 0.5,
        reconnect_max=0.2,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.run)
        with anyio.fail_after(20):
            while conn.status == "connecting":
                await conn._changed.wait()
        if answers:  # lines that are not JSON-RPC are skipped: the session works
            assert conn.status == "connected", conn.last_error
            assert "get_products" in [t.name for t in conn.tools]
        else:
            error = conn.last_error or ""
            assert "'initialize' timed out" in error, error
            assert (
                "stdout: 2 lines that are not JSON-RPC, the first: "
                "'Starting shop server v1.2 on stdio...'" in error
            ), error
        tg.cancel_scope.cancel()


async def test_a_server_that_hangs_once_connected_is_let_go_in_time() -> None:
    """Found from outside: a Streamable HTTP server stopped (SIGSTOP) after connecting stayed
    "connected" for as long as it hung, its tools still offered to the model: the failed ping
    was noted, then closing the session waited on the hung server (the SDK's DELETE, with a
    stream's read timeout) before the status changed. Now the session is given up at once,
    its closing is bounded, and once the server runs again it is reconnected."""
    from tests.servers import start_mini

    server = start_mini()
    conn = ServerConnection(
        ServerConfig(name="hangs", transport="http", url=f"{server.url}/mcp"),
        connect_timeout=0.5,
        ping_interval=0.3,
        reconnect_max=0.2,
    )
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(conn.run)
            with anyio.fail_after(20):
                while conn.status != "connected":
                    await conn._changed.wait()
            os.kill(server.proc.pid, signal.SIGSTOP)
            with anyio.fail_after(5):  # a ping interval, its timeout, a bounded close
                while conn.status == "connected":
                    await conn._changed.wait()
            assert "lost connection" in (conn.last_error or ""), conn.last_error
            os.kill(server.proc.pid, signal.SIGCONT)
            with anyio.fail_after(20):
                while conn.status != "connected":
                    await conn._changed.wait()
            tg.cancel_scope.cancel()
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()
