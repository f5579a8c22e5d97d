"""A reply an MCP server sends beyond web.py's bounds (core/aiohttp_transports.py, PeerBounds):
compressed, which was not asked for, or an event-stream line over the bound. Found from
outside: the refusal was raised where the SDK takes any error for a broken transport, so it
dropped the whole session and the call said only "Connection closed" or "SSE stream ended
without a response"; before the bounds, a line over the SDK's limit said so. Now the call
fails with the reason, and the session stays."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from product_mcp.chat import session_open
from tests.inproc import web_app
from tests.mini_mcp import build_app, make_server
from tests.servers import ThreadServer
from tests.web_helpers import take_body

LINE_BOUND = 64 * 1024


class Squeeze:
    """ASGI middleware: the reply to a POST whose body asks for it ("squeeze" in the echo's
    text) is sent gzip-compressed, whatever the client asked for."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body, again = await take_body(receive)
        if b"squeeze" not in body:
            return await self.app(scope, again, send)
        start: dict[str, Any] = {}
        sent = b""

        async def capture(message: dict[str, Any]) -> None:
            nonlocal sent
            if message["type"] == "http.response.start":
                start.update(message)
                return
            sent += message.get("body", b"")
            if not message.get("more_body", False):
                packed = gzip.compress(sent)
                headers = [
                    (k, v) for k, v in start["headers"] if k.lower() != b"content-length"
                ] + [(b"content-encoding", b"gzip"), (b"content-length", b"%d" % len(packed))]
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": packed})

        await self.app(scope, again, capture)


@pytest.fixture
def small_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_open, "MAX_EVENT_BYTES", LINE_BOUND)


def _app(replies: str) -> Any:
    if replies == "json":
        return make_server().streamable_http_app(json_response=True)
    return build_app(make_server())


@pytest.mark.parametrize("replies", ["sse", "json"])
@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("squeeze", "the reply is compressed (gzip), which was not asked for"),
        ("x" * (2 * LINE_BOUND), "is over 65,536 bytes: not read further"),
    ],
    ids=["compressed", "too-long"],
)
def test_a_reply_beyond_the_bounds_says_why(
    small_bound: None, tmp_path: Path, replies: str, text: str, words: str
) -> None:
    """The call fails with the reason. A JSON reply fails its call alone; a failed event
    stream is a lost connection to web.py (connection.py), which reconnects, as it did for an
    event over the SDK's limit before the bounds."""
    with (
        ThreadServer(Squeeze(_app(replies))) as served,
        web_app(tmp_path, {"mini": {"url": f"{served.url}/mcp"}}) as web,
    ):
        before = web.get("/api/servers").json()["servers"][0]
        call = {"server": "mini", "name": "echo", "args": {"text": text}}
        r = web.post("/api/call-tool", json=call)
        assert r.status_code >= 500 and words in r.json()["detail"], r.text[:300]
        if replies == "json":  # the server answered: only this reply was refused
            after = web.get("/api/servers").json()["servers"][0]
            assert (after["status"], after["attempts"]) == ("connected", before["attempts"])
        echo = {"server": "mini", "name": "echo", "args": {"text": "hi"}}
        r = web.post("/api/call-tool", json=echo)
        assert r.status_code == 200 and r.json()["result"] == "echo: hi", r.text[:300]
