"""main.py over stdio, fed lines a client should not send: each gets a JSON-RPC error with
`"id": null` (or the line's own id) and the session goes on; a line over the size limit is
refused without being held whole.

Found from outside (session 16): the SDK's reader answered nothing to a line that is not a
JSON-RPC message, so a client that sent one waited forever, and it read a line of any length
into memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from models import MAX_BODY_BYTES
from tests.mcp_helpers import INIT
from tests.servers import ROOT, dead_port


class StdioServer:
    """main.py --transport stdio as a child, its stdout read line by line in a thread."""

    def __init__(self, api_url: str) -> None:
        env = {**os.environ, "PRODUCT_API_URL": api_url}
        self.proc = subprocess.Popen(
            [sys.executable, "main.py", "--transport", "stdio"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self.lines: list[dict[str, Any]] = []
        self.ready = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self.ready:
                self.lines.append(json.loads(raw))
                self.ready.notify_all()

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def answer(self, index: int, timeout: float = 20) -> dict[str, Any]:
        """The index-th line main.py wrote (a bound, not a speed check)."""
        with self.ready:
            if not self.ready.wait_for(lambda: len(self.lines) > index, timeout):
                raise AssertionError(f"no line {index} from main.py; so far: {self.lines}")
            return self.lines[index]


@pytest.fixture
def server() -> Iterator[StdioServer]:
    with dead_port() as port:
        s = StdioServer(f"http://127.0.0.1:{port}/api")
        try:
            yield s
        finally:
            s.proc.kill()
            s.proc.wait(10)


def test_lines_that_are_not_messages_are_answered(server: StdioServer) -> None:
    server.send(b"hello there\n")
    bad = server.answer(0)
    assert bad["id"] is None and bad["error"]["code"] == -32700
    assert "not JSON" in bad["error"]["message"]

    server.send(b"\n   \n")  # blank lines are skipped, as between messages
    server.send(b"[1, 2]\n")
    bad = server.answer(1)
    assert bad["id"] is None and bad["error"]["code"] == -32600
    assert "JSON object" in bad["error"]["message"]

    server.send(json.dumps({"jsonrpc": "2.0", "id": 7, "method": 12}).encode() + b"\n")
    bad = server.answer(2)
    assert bad["id"] == 7 and bad["error"]["code"] == -32600
    assert "method" in bad["error"]["message"]

    server.send(json.dumps({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}).encode() + b"\n")
    bad = server.answer(3)  # an id of the wrong type read as a notification: dropped unanswered
    assert bad["id"] is None and bad["error"]["code"] == -32600 and "id" in bad["error"]["message"]

    # ... and the session goes on.
    server.send(json.dumps(INIT).encode() + b"\n")
    ok = server.answer(4)
    assert ok["id"] == INIT["id"] and "serverInfo" in ok["result"]


def test_a_line_over_the_limit_is_refused_and_the_next_one_read(server: StdioServer) -> None:
    huge = b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "'
    huge += b"a" * (MAX_BODY_BYTES + 1024) + b'"}}\n'
    server.send(huge)
    bad = server.answer(0)
    assert bad["id"] is None and bad["error"]["code"] == -32600
    assert str(MAX_BODY_BYTES) in bad["error"]["message"]
    server.send(json.dumps(INIT).encode() + b"\n")
    ok = server.answer(1)
    assert ok["id"] == INIT["id"] and "serverInfo" in ok["result"]
