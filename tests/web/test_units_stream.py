"""The chat stream's writes: events already queued go out in one write, in order, and an idle
stream still gets its keep-alive comments (chat/stream.py); the model's streamed chunks read
like openai's chunk objects (chat/llm.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from product_mcp.chat import stream
from product_mcp.chat.history import ChatRequest
from product_mcp.chat.llm import Chunk
from product_mcp.chat.turns import Turns


class _Result:
    def as_dict(self) -> dict[str, Any]:
        return {"response": "ok"}


class _Engine:
    """Emits a burst of events at once, then (optionally) waits before finishing."""

    def __init__(self, pause: float = 0.0) -> None:
        self.pause = pause

    async def run(self, message: str, history: list[Any], **kw: Any) -> _Result:
        emit = kw["emit"]
        await emit("tool_call", {"id": "c1"})
        await emit("tool_result", {"id": "c1", "result": "4 products"})
        await emit("token", {"text": "Here"})
        await asyncio.sleep(self.pause)
        return _Result()


async def _chunks(engine: _Engine) -> list[str]:
    response = stream.stream_turn(engine, ChatRequest(message="hi"), None, Turns())  # type: ignore[arg-type]
    return [c async for c in response.body_iterator]  # type: ignore[misc]


def test_queued_events_go_out_in_one_write() -> None:
    chunks = asyncio.run(_chunks(_Engine()))
    text = "".join(chunks)
    kinds = [line[7:] for line in text.splitlines() if line.startswith("event: ")]
    assert kinds == ["turn", "tool_call", "tool_result", "token", "done"]
    # one write for the turn id, one for the burst (and done), not one per event
    assert len(chunks) <= 3, chunks
    assert any(c.count("event: ") >= 3 for c in chunks), chunks


def test_idle_stream_sends_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "KEEP_ALIVE_S", 0.05)
    chunks = asyncio.run(_chunks(_Engine(pause=0.3)))
    assert ": keep-alive\n\n" in chunks
    assert chunks[-1].endswith("\n\n") and "event: done" in chunks[-1]


def test_a_chunk_reads_like_openais_chunk_objects() -> None:
    raw = {
        "choices": [
            {
                "delta": {
                    "content": "hi",
                    "tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f"}}],
                },
                "finish_reason": None,
            }
        ],
        "usage": {"total_tokens": 3},
    }
    chunk = Chunk.of(raw)
    delta = chunk.choices[0].delta
    call = delta.tool_calls[0]
    assert (delta.content, call.index, call.id, call.function.name) == ("hi", 0, "c1", "f")
    assert call.function.arguments is None and delta.role is None  # missing: None
    assert chunk.usage.total_tokens == 3 and chunk.choices[0].finish_reason is None
    assert Chunk.of({"choices": []}).choices == [] and Chunk.of({}).choices is None
    assert chunk == raw  # still the JSON object
