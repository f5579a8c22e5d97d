"""A server that dies is shown as down at once, not at the next ping.

Found from outside (session 17): with main.py killed, the page kept its green dot and offered
its tools for about 10 s (until web.py's ping, every MCP_PING_INTERVAL), and a message sent
meanwhile failed in the tool. web.py holds an event stream (GET) open to each Streamable HTTP
server; when it breaks, web.py pings at once and marks the server down if that fails."""

from __future__ import annotations

import signal
import time
from typing import Any

import httpx

from tests.stack import Stack, stack_fixture


@stack_fixture(scope="function")
def env(s: Stack) -> None:
    mini = s.mini()
    s.web(
        {"mini": {"url": f"{mini.url}/mcp"}},
        {"OPENAI_API_KEY": "k", "MCP_PING_INTERVAL": "120"},
    )


def status(web: Any) -> str:
    servers = httpx.get(f"{web.url}/api/servers").json()["servers"]
    return next(s["status"] for s in servers if s["name"] == "mini")


def test_a_killed_server_is_down_before_the_next_ping(env: Stack) -> None:
    web, mini = env["web"], env["mini"]
    r = httpx.post(
        f"{web.url}/api/call-tool", json={"server": "mini", "name": "echo", "args": {"text": "a"}}
    )
    assert r.status_code == 200, r.text
    mini.stop(signal.SIGKILL)
    deadline = time.monotonic() + 30  # a bound, not a speed check: the ping is 120 s away
    while status(web) == "connected":
        assert time.monotonic() < deadline, "still 'connected' 30 s after the server died"
        time.sleep(0.2)
