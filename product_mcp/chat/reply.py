"""Reading one streamed completion, within bounds.

Why apart from the loop: a model may stream for ever, and what bounds it (characters of text,
chunks without any, seconds) is its own concern, tested on its own (tests/web/test_endless.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from models import REPLY_MAX_CHARS
from product_mcp.chat.calls import CallAssembler


@dataclass(frozen=True)
class ReplyBounds:
    """How much of one streamed completion is read before it is cut: a model may stream for
    ever (content, or only reasoning), and LLM_TIMEOUT bounds only the silence between chunks
    (found from outside: 537 MiB in 40 s). Text (content and reasoning) counts in characters,
    so a long answer in one-token chunks is not cut early; chunks with no text (a stream of
    nothing) are counted. Past a bound the stream is closed (the provider stops), the text so
    far kept with a note, and any half-made tool calls dropped."""

    chars: int = REPLY_MAX_CHARS
    chunks: int = 50_000  # chunks carrying no text at all
    seconds: float = 600.0


async def read_reply(
    stream: Any,
    bounds: ReplyBounds,
    emit: Callable[[str, dict[str, Any]], Awaitable[None]],
    text: list[str],
    assembler: CallAssembler,
) -> str | None:
    """Read a completion's stream to its end, or to a bound: then say why it was cut. Text
    deltas go out (`emit`) as they come and into `text`; tool-call deltas to `assembler`.
    The time bound holds between chunks too: bytes that never make a chunk (SSE comments, an
    endless chunk extension) keep LLM_TIMEOUT's silence from ever coming."""
    with anyio.move_on_after(bounds.seconds):
        return await _read(stream, bounds, emit, text, assembler)
    return f"(The reply was cut: it passed {bounds.seconds:g} seconds.)"


async def _read(
    stream: Any,
    bounds: ReplyBounds,
    emit: Callable[[str, dict[str, Any]], Awaitable[None]],
    text: list[str],
    assembler: CallAssembler,
) -> str | None:
    chars = silent = 0
    async for chunk in stream:  # each field read once: a long reply is hundreds of chunks
        choices = chunk.choices
        delta = choices[0].delta if choices else None
        content = delta.content if delta is not None else None
        said = len(content) if content and isinstance(content, str) else 0
        if delta is not None:
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            said += len(thought) if isinstance(thought, str) else 0
        tool_calls = delta.tool_calls if delta is not None else None
        if not said:  # nothing to read, or only a piece of a tool call: counted, not endless
            silent += 1
            if silent > bounds.chunks:
                return f"(The reply was cut: {bounds.chunks:,} chunks came without a word.)"
            if not tool_calls:
                continue
        chars += said
        if chars > bounds.chars:
            return f"(The reply was cut: it passed {bounds.chars:,} characters.)"
        if isinstance(content, str) and content:
            text.append(content)
            await emit("token", {"text": content})
        for tc in tool_calls if isinstance(tool_calls, list) else []:
            assembler.add(tc)
    return None
