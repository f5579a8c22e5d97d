"""One chat turn as Server-Sent Events: `turn` (its id, for Stop) first, then tokens, tool
calls, approvals, questions and progress, then `done` or `error`.

Why a queue and a worker task: the loop emits events from concurrent tool calls while the
response body is being written; when the page goes away the worker is cancelled, which stops
the model and drops pending approvals. Events already queued go out together, in one write.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from product_mcp.chat.approvals import Approvals
from product_mcp.chat.history import ChatRequest, HistoryMessage
from product_mcp.chat.loop import ChatEngine
from product_mcp.chat.results import describe_error
from product_mcp.chat.turns import Turns
from product_mcp.core.errors import LLMError

log = logging.getLogger("web")
KEEP_ALIVE_S = 15


def sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def stream_turn(
    engine: ChatEngine,
    req: ChatRequest,
    approvals: Approvals | None,
    turns: Turns,
    attached: list[HistoryMessage] | None = None,
) -> StreamingResponse:
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
    turn = turns.open()
    queue.put_nowait(("turn", {"turnId": turn.id}))

    async def emit(kind: str, data: dict[str, Any]) -> None:
        await queue.put((kind, data))

    async def worker() -> None:
        try:
            result = await engine.run(
                req.message,
                req.history,
                emit=emit,
                approvals=approvals,
                turn=turn,
                attached=attached,
            )
            await emit("done", result.as_dict())
        except LLMError as e:
            await emit("error", {"message": e.message, "status": e.status})
        except Exception as e:
            log.exception("chat failed")
            await emit("error", {"message": f"Internal error: {describe_error(e)}", "status": 500})
        finally:
            turns.close(turn)
            await queue.put(None)

    async def body() -> AsyncIterator[str]:
        task = asyncio.create_task(worker())
        try:
            while True:
                try:
                    async with asyncio.timeout(KEEP_ALIVE_S):
                        item = await queue.get()
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                text, ended = _drain(queue, item)
                if text:
                    yield text
                if ended:
                    break
        finally:
            task.cancel()  # the page went away: stop the model and drop pending approvals
            turns.close(turn)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _drain(
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None], item: tuple[str, dict[str, Any]] | None
) -> tuple[str, bool]:
    """`item` and every event already queued behind it as one piece of SSE text (one write,
    not one per event: a tool call's start, result and the next tokens often come together),
    and whether the stream's end was among them."""
    parts: list[str] = []
    while item is not None:
        parts.append(sse(*item))
        if queue.empty():
            return "".join(parts), False
        item = queue.get_nowait()
    return "".join(parts), True
