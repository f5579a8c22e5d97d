"""A model that never stops, and a client that goes away or stops reading: web.py bounds them.

Found from outside (session 17): a model streaming content forever took web.py from 108 to
537 MiB in 40 s (nothing bounded a reply's length or time, only the silence between chunks);
one streaming only reasoning never ended; a `POST /api/chat` whose client gave up kept running,
held its place under the per-client limit (8 such, and that address got 429 for good) and
held SIGTERM; a page that never read `/api/chat/stream` grew web.py's memory without bound.

Now a reply is cut at its characters, chunks or seconds (chat/reply.py; ChatEngine.reply_bounds
lowered here so the test is quick: the same code runs with the defaults), a `POST /api/chat` whose
client is gone is cancelled, a page that stops reading ends its turn, and web.py shuts down
within its grace period with a reply still streaming."""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from product_mcp.chat.reply import ReplyBounds
from product_mcp.mcp_server import mcp as shop_server
from tests.fake_llm import Endless, FakeLLM, Reply
from tests.inproc import InProcessWeb, web_app
from tests.stack import Stack


@pytest.fixture
def bounds(web: InProcessWeb) -> Iterator[None]:
    assert web.chat is not None
    engine = web.chat.engine
    saved = engine.reply_bounds
    engine.reply_bounds = ReplyBounds(chars=5_000, chunks=400, seconds=3.0)
    yield
    engine.reply_bounds = saved


def _closed(turn: Endless, within: float = 10.0) -> bool:
    return turn.closed.wait(within)  # a bound, not a speed check


@pytest.mark.parametrize(
    ("delta", "why"),
    [
        ({"content": "x" * 100}, "characters"),
        ({"reasoning_content": "hmm"}, "characters"),  # thinking counts as text
        ({}, "chunks came without a word"),
        # pieces of a tool call, for ever: counted too (bounded by 600 s alone before)
        ({"tool_calls": [{"index": 0, "function": {"arguments": "x"}}]}, "without a word"),
    ],
)
def test_an_endless_reply_is_cut(
    web: InProcessWeb, fake: FakeLLM, bounds: None, delta: dict[str, str], why: str
) -> None:
    endless = Endless(delta)
    fake.script(f"never stop ({why})", endless)
    r = web.post("/api/chat", json={"message": f"never stop ({why})"})
    assert r.status_code == 200, r.text[:300]
    answer = r.json()["response"]
    assert "(The reply was cut: " in answer and why in answer, answer
    assert len(answer) < 5_000 + 500
    assert _closed(endless), "web.py kept reading the model's stream"


def test_a_long_answer_in_small_chunks_is_whole(
    web: InProcessWeb, fake: FakeLLM, bounds: None
) -> None:
    """Chunks of text do not count against the chunk bound, only their characters: real
    providers send a few characters a chunk, and a chunk bound cut a long answer at ~200,000
    characters however high the character bound was (found in review)."""
    answer = "ab" * 1000  # 1,000 chunks of two characters: more chunks than the bound (400)
    fake.script("many small chunks", Reply(answer, chunks=1000, delay=0))
    r = web.post("/api/chat", json={"message": "many small chunks"})
    assert r.status_code == 200 and r.json()["response"] == answer, r.text[-300:]


def test_a_slow_endless_reply_is_cut_by_time(
    web: InProcessWeb, fake: FakeLLM, bounds: None
) -> None:
    endless = Endless({"content": "."}, delay=0.05)
    fake.script("drip forever", endless)
    r = web.post("/api/chat", json={"message": "drip forever"})
    assert r.status_code == 200 and "seconds" in r.json()["response"], r.text[:300]
    assert _closed(endless)


def test_a_chat_request_its_client_gave_up_on_is_cancelled(
    web: InProcessWeb, fake: FakeLLM
) -> None:
    """Eight abandoned requests from one address: each model stream is closed, and the
    address is served again (it got 429 "Too many requests running" for good)."""
    turns = []
    for i in range(8):
        endless = Endless({"reasoning_content": "thinking"}, delay=0.05)
        fake.script(f"abandoned {i}", endless)
        turns.append(endless)
        with pytest.raises(httpx.ReadTimeout):
            web.post("/api/chat", json={"message": f"abandoned {i}"}, timeout=0.5)
    assert all(_closed(t) for t in turns), [t.sent for t in turns]
    r = web.post("/api/call-tool", json={"server": "shop", "name": "get_inventory"})
    assert r.status_code == 200, r.text[:300]


def test_pages_that_stop_reading_end_their_turns_and_give_their_places_back(
    fake: FakeLLM,
    shop_api: Any,
    chat_settings: dict[str, str],
    tmp_path: Path,
) -> None:
    """The page's stream is held to a bounded queue; a page that reads nothing for
    WEB_SEND_TIMEOUT has its turn ended (its memory grew 175 → 491 MiB in 30 s) and its
    connection dropped: eight such held their address's places for as long as their sockets
    stayed open, and it got 429 (found in review)."""
    settings = {**chat_settings, "WEB_SEND_TIMEOUT": "1"}
    turns = [Endless({"content": "y" * 2000}) for _ in range(8)]
    with web_app(tmp_path, in_memory={"shop": shop_server}, **settings) as web:
        assert web.chat is not None
        web.chat.engine.reply_bounds = ReplyBounds(chars=10**12, chunks=10**9, seconds=600)
        host, port = web.url.removeprefix("http://").split(":")
        socks = []
        try:
            for i, endless in enumerate(turns):
                fake.script(f"flood a page that never reads {i}", endless)
                body = json.dumps({"message": f"flood a page that never reads {i}"}).encode()
                sock = socket.create_connection((host, int(port)))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(
                    f"POST /api/chat/stream HTTP/1.1\r\nHost: {host}:{port}\r\n".encode()
                    + b"Content-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                socks.append(sock)
            for endless in turns:
                assert _closed(endless, 20), f"a turn went on: {endless.sent} chunks"
                # the queue and the sockets' buffers (loopback grows them to megabytes)
                assert endless.sent < 20_000, endless.sent
            assert "the page read nothing" in web.log()
            # the sockets are still open: their places were given back all the same
            deadline = time.monotonic() + 20
            while True:
                r = web.post("/api/call-tool", json={"server": "shop", "name": "get_inventory"})
                if r.status_code != 429 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert r.status_code == 200, r.text[:300]
        finally:
            for sock in socks:
                sock.close()


def test_shutdown_is_not_held_by_a_streaming_reply(fake: FakeLLM, tmp_path: Path) -> None:
    endless = Endless({"content": "z"}, delay=0.05)
    fake.script("stream through shutdown", endless)
    with Stack(tmp_path) as s:
        web = s.web({}, {"OPENAI_API_KEY": "k", "OPENAI_API_BASE": fake.base_url})
        with (
            httpx.Client(timeout=30) as client,
            client.stream(
                "POST", f"{web.url}/api/chat/stream", json={"message": "stream through shutdown"}
            ) as r,
        ):
            lines = r.iter_lines()
            assert next(line for line in lines if line.startswith("event: token"))
            started = time.monotonic()
            code = web.stop(timeout=30)  # SIGKILL after 30 s if it hangs
            assert code == -signal.SIGTERM, web.log()[-2000:]
            assert time.monotonic() - started < 25


@pytest.mark.parametrize(
    "after_head",
    [
        b"Content-Type: text/event-stream\r\n\r\n" + b": ping\n\n" * 5,  # SSE comments only
        # a chunk extension without end: aiohttp's parser takes it, and no byte of body comes
        b"Transfer-Encoding: chunked\r\n\r\n1;" + b"x" * 5_000,
    ],
    ids=["sse-comments", "chunk-extension"],
)
def test_a_reply_that_never_yields_a_chunk_is_cut_by_time(after_head: bytes) -> None:
    """Found from outside (session 18, openai's aiohttp transport): the reply's time bound was
    checked only when a chunk came, so a provider that kept sending bytes that never made one
    (SSE comments, or an endless chunk extension, which aiohttp's parser reads without end at
    ~90 % of a CPU) was never silent for LLM_TIMEOUT and held the turn for ever."""
    import asyncio
    import threading
    from contextlib import suppress

    import anyio

    from product_mcp.chat.llm import LLMSettings
    from product_mcp.chat.loop import ChatEngine
    from product_mcp.chat.manager import McpManager
    from product_mcp.chat.mcp_config import McpConfig

    srv = socket.create_server(("127.0.0.1", 0))
    closed = threading.Event()

    def serve() -> None:
        with suppress(OSError):
            conn, _ = srv.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\n" + after_head)
                with suppress(OSError):
                    while True:
                        conn.sendall(after_head[-100:] if b"1;" in after_head else b": ping\n\n")
                        time.sleep(0.05)
        closed.set()

    threading.Thread(target=serve, daemon=True).start()
    base = f"http://127.0.0.1:{srv.getsockname()[1]}/v1"
    engine = ChatEngine(
        McpManager(McpConfig(servers=[])),
        LLMSettings(api_key="k", base_url=base, max_retries=0, timeout=5),
    )
    engine.reply_bounds = ReplyBounds(chars=5_000, chunks=400, seconds=1.0)

    async def turn() -> str:
        try:
            with anyio.fail_after(15):  # the test's own bound: the turn used to never end
                return (await engine.run("hello", [])).response
        finally:
            await engine.aclose()

    try:
        answer = asyncio.run(turn())
    finally:
        srv.close()
    assert "(The reply was cut: it passed 1 seconds.)" in answer, answer
    assert closed.wait(10), "web.py kept reading the model's stream"
