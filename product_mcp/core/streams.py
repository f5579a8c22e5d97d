"""A streamed response that gives back what it holds when it ends, and work that ends when
its client leaves.

Why: both of our long-lived event streams (api.py's change feed, web.py's page events) count
streams per client, and a count must come back however the stream ends: finished, cut by the
client, cancelled at shutdown, or never started because the client left first. And a long
request that is not a stream (web.py's `POST /api/chat`) is not cancelled by Starlette when
its client goes: it ran on, holding the client's place and the model's stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class CountedStream(StreamingResponse):
    """A stream that calls `release` when it ends, however it ends (even unstarted)."""

    def __init__(self, body: AsyncIterator[str], release: Callable[[], None], **kw: Any) -> None:
        super().__init__(body, **kw)
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


async def until_disconnected(receive: Receive, work: Callable[[], Awaitable[None]]) -> bool:
    """Run `work`, cancelled if the client disconnects first (call it once the request's body
    has been read); whether it ran to its end. Its own errors come out as they are (the
    service's handlers answer them), not wrapped in a task group's ExceptionGroup."""

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        scope.cancel()

    with anyio.CancelScope() as scope:
        watcher = asyncio.create_task(watch())
        try:
            await work()
        finally:
            watcher.cancel()
    return not scope.cancelled_caught
