"""Keeping the HTTP connection of a reply the MCP SDK closes early.

The SDK stops reading a `tools/call` SSE reply at its result and closes it, a moment before
the server ends the stream. httpcore keeps a connection only once a reply was read to its end,
so every tool call opened a new TCP connection (web.py and main.py each paid the connect,
accept and close). Like Go's HTTP client, this transport reads what is left of such a reply,
if it ends soon and is small, so the connection goes back to the pool; otherwise it closes
it, as before. It uses only httpx's public transport and stream interfaces. (Under it now,
aiohttp keeps a connection whose reply's end had already arrived, as a quick server's usually
has; the drain covers an end that comes a moment later.)

The other way round, a call web.py gave up on (timed out, stopped): the SDK went on reading its
reply for as long as the server sent (found from outside: a tool streaming progress and never
answering, 2 MB/s for good after the 504). `cut(marker)` ends the reply of the POST whose body
carries `marker` (the call's own id in its `_meta`) at its next chunk, with the SSE error the
SDK answers by closing the reply without resuming it; the connection is closed.

And the server's event stream (the session's GET): when it breaks, `on_stream_end` is called,
so web.py asks the server at once whether it is still there (a killed main.py stayed
"connected" until the next ping, 15 s later; found from outside).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any

import anyio
import httpx2

DRAIN_MAX_BYTES = 64 * 1024  # more than the end of a reply: not worth a connection
DRAIN_SECONDS = 0.25  # a stream the server does not end at once is closed, as before


class _DrainOnClose(httpx2.AsyncByteStream):
    """A reply body that, closed before its end, first reads the rest if it comes at once."""

    def __init__(self, stream: httpx2.AsyncByteStream, open_replies: dict[Any, bytes]) -> None:
        self._stream = stream
        self._chunks = stream.__aiter__()  # one iterator over the body, the reader's and ours
        self._ended = False
        self._cut = False
        self._open = open_replies  # the transport's: this reply is in it until it ends

    def cut(self) -> None:
        self._cut = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # Not `async for`: the reader dropping this generator must leave the body's iterator
        # open for aclose (an abandoned generator is closed later, by the garbage collector).
        while True:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._ended = True
                self._open.pop(self, None)
                return
            if self._cut:
                raise httpx2.SSEError("the call was given up: its reply is not read further")
            yield chunk

    async def aclose(self) -> None:
        self._open.pop(self, None)
        try:
            if not self._ended and not self._cut:
                await self._drain()
        finally:
            try:
                if isinstance(self._chunks, AsyncGenerator):
                    await self._chunks.aclose()  # not at the end: the connection is closed
            finally:
                await self._stream.aclose()

    async def _drain(self) -> None:
        left = DRAIN_MAX_BYTES
        with anyio.move_on_after(DRAIN_SECONDS):
            try:
                while left >= 0:
                    left -= len(await self._chunks.__anext__())
            except StopAsyncIteration:
                self._ended = True
            except httpx2.TransportError:
                pass  # the connection is gone anyway: closing it is all that is left


class _NoticeEnd(httpx2.AsyncByteStream):
    """The server's event stream, calling `ended` when it breaks or ends."""

    def __init__(self, stream: httpx2.AsyncByteStream, ended: Callable[[], object]) -> None:
        self._stream = stream
        self._ended = ended

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        finally:
            self._ended()

    async def aclose(self) -> None:
        await self._stream.aclose()


class KeepAliveTransport(httpx2.AsyncBaseTransport):
    """httpx's own transport, with POST replies closed early read to their end first.

    Only POST replies: a GET is the server's long-lived event stream, which never ends soon.
    """

    def __init__(
        self, inner: httpx2.AsyncBaseTransport, on_stream_end: Callable[[], object] | None = None
    ) -> None:
        self._inner = inner
        self._open: dict[Any, bytes] = {}  # POST replies being read: their request's body
        self._on_stream_end = on_stream_end

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        stream = response.stream
        if not isinstance(stream, httpx2.AsyncByteStream):
            return response
        if request.method == "POST":
            reply = _DrainOnClose(stream, self._open)
            self._open[reply] = request.content
            response.stream = reply
        elif request.method == "GET" and response.is_success and self._on_stream_end is not None:
            response.stream = _NoticeEnd(stream, self._on_stream_end)
        return response

    def cut(self, marker: str) -> None:
        """End the replies of the POSTs whose body carries `marker` (calls given up on)."""
        needle = marker.encode()
        for reply, body in list(self._open.items()):
            if needle in body:
                reply.cut()

    async def aclose(self) -> None:
        await self._inner.aclose()
