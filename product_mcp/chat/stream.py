"""One chat turn as Server-Sent Events: `turn` (its id, for Stop) first, then tokens, tool
calls, approvals, questions and progress, then `done` or `error`.

Why a queue and a worker task: the loop emits events from concurrent tool calls while the
response body is being written; when the page goes away the worker is cancelled, which stops
the model and drops pending approvals. Events already queued go out together, in one write.
The queue is bounded: a page that reads slowly slows the turn down to its pace, and one that
reads nothing for WEB_SEND_TIMEOUT has its turn ended (the queue grew without bound: 175 → 491
MiB in 30 s with a model that never stopped; found from outside); the same setting drops its
connection (core/slow_readers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
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
QUEUE_MAX = 256  # events waiting for the page


def sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def stream_turn(
    engine: ChatEngine,
    req: ChatRequest,
    approvals: Approvals | None,
    turns: Turns,
    attached: list[HistoryMessage] | None = None,
    stall: float = 60.0,
) -> StreamingResponse:
    """The turn as an SSE response; `stall`: seconds a full queue waits for the page."""
    queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(QUEUE_MAX)
    turn = turns.open()
    queue.put_nowait(("turn", {"turnId": turn.id}))
    running: list[asyncio.Task[None]] = []

    async def emit(kind: str, data: dict[str, Any]) -> None:
        try:
            queue.put_nowait((kind, data))  # the usual case: no deadline to set up per token
            return
        except asyncio.QueueFull:
            pass
        try:
            async with asyncio.timeout(stall):
                await queue.put((kind, data))
        except TimeoutError:
            log.warning("chat turn ended: the page read nothing for %gs", stall)
            running[0].cancel()  # the whole turn: its tool calls run in tasks of their own
            raise asyncio.CancelledError from None

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
            with contextlib.suppress(asyncio.QueueFull):  # a stalled page hears no end
                queue.put_nowait(None)

    async def body() -> AsyncIterator[str]:
        task = asyncio.create_task(worker())
        running.append(task)
        try:
            while True:
                try:
                    async with asyncio.timeout(KEEP_ALIVE_S):
                        item = await queue.get()
                except TimeoutError:
                    if task.done() and queue.empty():
                        break  # ended while the page was not reading
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
