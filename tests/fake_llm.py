"""A scripted OpenAI-compatible Chat Completions server for tests: real HTTP, real SSE.

web.py reaches it through the real `openai` client (OPENAI_API_BASE = `fake.base_url`).
Scripts are keyed by the conversation's latest user message, and the turn played is the number
of assistant messages after it, so concurrent conversations never disturb each other:

    fake.script("what do you sell?", Calls(("get_products", {})), Reply("We sell watches."))

`Raw` streams deltas exactly as given (what no well-behaved model sends: repeated or missing
tool-call ids, chunks that are not JSON), for the tests of absurd model output.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Union

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.servers import ThreadServer, free_port


@dataclass
class Reply:
    """A plain answer, streamed in `chunks` pieces, `delay` seconds apart."""

    text: str
    chunks: int = 3
    delay: float = 0.01


@dataclass
class Calls:
    """One assistant turn with tool calls. A call is (selector, arguments): the selector is
    a function name, a tool name (matched against `x__tool` too), or `server/tool`.
    Arguments may be a dict or a raw string (to send broken JSON)."""

    calls: list[tuple[str, Any]]
    text: str = ""

    def __init__(self, *calls: tuple[str, Any], text: str = "") -> None:
        self.calls = list(calls)
        self.text = text


@dataclass
class Fail:
    """Answer with an HTTP error, OpenAI style."""

    status: int
    message: str = "scripted failure"


@dataclass
class Hang:
    """Say nothing for a while (to trip the client's timeout)."""

    seconds: float


@dataclass
class Raw:
    """One assistant turn streamed exactly as given: a dict is one chunk's `delta`, a str is
    sent as the raw `data:` of an SSE event (to send what is not even JSON). Streamed only."""

    deltas: list[dict[str, Any] | str] = field(default_factory=list)
    finish: str = "tool_calls"


@dataclass
class Endless:
    """A reply that never ends: `delta` (e.g. `{"content": "x"}` or `{"reasoning_content":
    "hmm"}`) streamed again and again, `delay` seconds apart, until the client goes away:
    then `closed` is set. `sent` counts the deltas."""

    delta: dict[str, Any]
    delay: float = 0.0
    sent: int = 0
    closed: threading.Event = field(default_factory=threading.Event)


def tc(index: int | None, id: str | None, name: str | None, arguments: Any) -> dict[str, Any]:
    """One tool-call delta for `Raw`; None leaves a field out."""
    call: dict[str, Any] = {"type": "function", "function": {}}
    if index is not None:
        call["index"] = index
    if id is not None:
        call["id"] = id
    if name is not None:
        call["function"]["name"] = name
    if arguments is not None:
        call["function"]["arguments"] = arguments
    return {"tool_calls": [call]}


Turn = Union[Reply, Calls, Fail, Hang, Raw, Endless, Callable[[dict[str, Any]], "Turn"]]  # noqa: UP007


def _resolve(selector: str, tools: list[dict[str, Any]]) -> str:
    funcs = [t["function"] for t in tools]
    server = None
    name = selector
    if "/" in selector:
        server, name = selector.split("/", 1)
    for f in funcs:
        if server is not None and not f.get("description", "").startswith(f"[{server}]"):
            continue
        if f["name"] == name or f["name"].endswith("__" + name):
            return f["name"]
    return name


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


@dataclass
class FakeLLM:
    port: int = field(default_factory=free_port)
    scripts: dict[str, list[Turn]] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, user_message: str, *turns: Turn) -> None:
        self.scripts[user_message] = list(turns)

    def requests_for(self, user_message: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if _last_user(r["messages"]) == user_message]

    # ------------------------------------------------------------ HTTP side

    async def _completions(self, request: Request) -> Response:
        body = await request.json()
        body["_auth"] = request.headers.get("authorization")
        body["_headers"] = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(body)
        messages = body.get("messages", [])
        key = _last_user(messages)
        turns = self.scripts.get(key or "")
        if turns is None:
            turn: Turn = Reply(f"(no script for {key!r})")
        else:
            idx = _assistants_after_last_user(messages)
            turn = turns[idx] if idx < len(turns) else Reply("(script exhausted)")
        while callable(turn) and not isinstance(turn, Reply | Calls | Fail | Hang | Raw | Endless):
            turn = turn(body)
        if isinstance(turn, Hang):
            await asyncio.sleep(turn.seconds)
            turn = Reply("too late")
        if isinstance(turn, Fail):
            err = {"error": {"message": turn.message, "type": "fake_error", "code": turn.status}}
            return JSONResponse(err, status_code=turn.status)
        tools = body.get("tools") or []
        if isinstance(turn, Endless):
            return StreamingResponse(self._endless(turn), media_type="text/event-stream")
        if body.get("stream"):
            return StreamingResponse(self._stream(turn, tools), media_type="text/event-stream")
        return JSONResponse(self._whole(turn, tools))

    async def _stream(
        self, turn: Reply | Calls | Raw, tools: list[dict[str, Any]]
    ) -> AsyncIterator[str]:
        yield _chunk({"role": "assistant", "content": ""})
        if isinstance(turn, Raw):
            for delta in turn.deltas:
                yield _chunk(delta) if isinstance(delta, dict) else f"data: {delta}\n\n"
            yield _chunk({}, turn.finish)
            yield "data: [DONE]\n\n"
            return
        text = turn.text
        if text:
            n = max(1, turn.chunks if isinstance(turn, Reply) else 1)
            size = max(1, -(-len(text) // n))
            for i in range(0, len(text), size):
                yield _chunk({"content": text[i : i + size]})
                await asyncio.sleep(turn.delay if isinstance(turn, Reply) else 0.01)
        if isinstance(turn, Calls):
            for i, (selector, args) in enumerate(turn.calls):
                raw = args if isinstance(args, str) else json.dumps(args)
                head = {
                    "index": i,
                    "id": f"call_{uuid.uuid4().hex[:10]}",
                    "type": "function",
                    "function": {"name": _resolve(selector, tools), "arguments": ""},
                }
                yield _chunk({"tool_calls": [head]})
                half = len(raw) // 2
                for piece in (raw[:half], raw[half:]):
                    yield _chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
            yield _chunk({}, "tool_calls")
        else:
            yield _chunk({}, "stop")
        yield "data: [DONE]\n\n"

    @staticmethod
    async def _endless(turn: Endless) -> AsyncIterator[str]:
        try:
            yield _chunk({"role": "assistant", "content": ""})
            while True:
                yield _chunk(turn.delta)
                turn.sent += 1
                await asyncio.sleep(turn.delay)
        finally:
            turn.closed.set()

    def _whole(self, turn: Reply | Calls, tools: list[dict[str, Any]]) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
        finish = "stop"
        if isinstance(turn, Calls):
            finish = "tool_calls"
            msg["tool_calls"] = [
                {
                    "id": f"call_{uuid.uuid4().hex[:10]}",
                    "type": "function",
                    "function": {
                        "name": _resolve(sel, tools),
                        "arguments": args if isinstance(args, str) else json.dumps(args),
                    },
                }
                for sel, args in turn.calls
            ]
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "fake",
            "choices": [{"index": 0, "message": msg, "finish_reason": finish}],
        }

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeLLM:
        app = Starlette(routes=[Route("/v1/chat/completions", self._completions, methods=["POST"])])
        self._server = ThreadServer(app, self.port).start(timeout=10)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()


def _last_user(messages: list[dict[str, Any]]) -> str | None:
    for m in reversed(messages):
        if m.get("role") == "user":
            return m.get("content")
    return None


def _assistants_after_last_user(messages: list[dict[str, Any]]) -> int:
    n = 0
    for m in reversed(messages):
        if m.get("role") == "user":
            break
        if m.get("role") == "assistant":
            n += 1
    return n
