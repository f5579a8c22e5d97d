"""A streamed response that gives back what it holds when it ends.

Why: both of our long-lived event streams (api.py's change feed, web.py's page events) count
streams per client, and a count must come back however the stream ends: finished, cut by the
client, cancelled at shutdown, or never started because the client left first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

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
