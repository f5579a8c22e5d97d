"""Quick replies: a Streamable HTTP request whose answer is its only message gets that answer
as one JSON body; a request that reports progress, asks a question or runs long gets its SSE
stream as before.

Why: the SDK chooses JSON or SSE for a whole server (`--json-response`), and SSE is the only
choice that lets a tool report progress or elicit a confirmation. But nearly every call is
answered in milliseconds with nothing before the answer, and for those the stream cost main.py
an SSE framer with tasks of its own and four writes per reply (head, priming event, message,
end), and the client an SSE parser: about a third of main.py's CPU for a `get_products` call,
and ~1 ms of an SDK client's wait (docs/benchmarks.md, session 14). The spec lets a server
answer any request either way, and every client must accept both.

How: the answer is awaited for up to QUICK_REPLY seconds before anything is sent. If it comes
first, it goes out as `application/json` (same id, same session header; the priming event
stored for it is never needed, as there is no stream to resume). If anything else comes first
(progress, a log message, an elicitation request) or the time runs out, the SDK's SSE reply
starts as it always did, with the priming event first and what was read put back in front, so
nothing is lost or reordered and a resuming client sees what it saw before. A client that
wants every reply as a resumable stream says so in its Accept header, by giving
`application/json` a lower q-value than `text/event-stream`.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

import anyio
from mcp.server import streamable_http
from mcp.server.streamable_http import EventMessage
from mcp.types import JSONRPCError, JSONRPCResponse
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

# Seconds an answer may take and still go out as JSON: quick tools answer within a few
# milliseconds (a search of 100,000 products in ~20), and a client waits this long at most
# for the head of a stream that will report progress later.
QUICK_REPLY = 0.2
ENDED = (anyio.EndOfStream, anyio.ClosedResourceError)
SSE, JSON = "text/event-stream", "application/json"
_QVALUE = re.compile(r"0(\.\d{0,3})?|1(\.0{0,3})?")  # RFC 9110's qvalue


class _PutBack:
    """A request's event stream with one event already read put back in front."""

    def __init__(self, first: EventMessage, rest: Any) -> None:
        self._first: EventMessage | None = first
        self._rest = rest

    async def __aenter__(self) -> _PutBack:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._rest.aclose()

    def __aiter__(self) -> _PutBack:
        return self

    async def __anext__(self) -> EventMessage:
        first, self._first = self._first, None
        if first is not None:
            return first
        try:
            return await self._rest.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None


class QuickReply:
    """Stands in for the SDK's SSE reply to one POSTed request (see the module's docstring)."""

    def __init__(self, sender: partial[Any], content: Any, headers: Any, options: Any) -> None:
        self.sender = sender
        self.content = content
        self.headers = headers
        self.options = options

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        transport = self.sender.func.__self__
        request_id, sse_writer, events, priming = self.sender.args
        first: EventMessage | None = None
        ended = False
        if not prefers_stream(scope):
            try:
                with anyio.move_on_after(QUICK_REPLY):
                    first = await events.receive()
            except ENDED:
                ended = True
            except BaseException:  # cancelled while waiting: no writer will clean up after it
                with anyio.CancelScope(shield=True):
                    await self._done(transport, request_id, sse_writer)
                raise
        if first is not None and isinstance(first.message, JSONRPCResponse | JSONRPCError):
            await self._done(transport, request_id, sse_writer)
            await transport._create_json_response(first.message)(scope, receive, send)
            return
        if ended:
            # Unanswered yet ended (the session closed, or the tool closed its stream to be
            # polled): as the SDK's stream would, the priming event alone, to resume from.
            await self._done(transport, request_id, sse_writer)
            primed, content = anyio.create_memory_object_stream[Any](1)
            if priming is not None:
                primed.send_nowait(priming)
            primed.close()
            stream = EventSourceResponse(content=content, headers=self.headers, **self.options)
            return await stream(scope, receive, send)
        if first is not None:
            events = _PutBack(first, events)
        writer = partial(self.sender.func, request_id, sse_writer, events, priming)
        stream = EventSourceResponse(
            content=self.content, data_sender_callable=writer, headers=self.headers, **self.options
        )
        await stream(scope, receive, send)

    @staticmethod
    async def _done(transport: Any, request_id: Any, sse_writer: Any) -> None:
        """What the SDK's SSE writer does once a request's reply has ended."""
        await sse_writer.aclose()
        transport._sse_stream_writers.pop(request_id, None)
        await transport._clean_up_memory_streams(request_id)


def prefers_stream(scope: Scope) -> bool:
    """Whether the client's Accept header ranks `text/event-stream` above `application/json`.

    As RFC 9110 (12.5.1) reads it: each type's quality is the q of the most specific range
    that matches it (the type itself, then `text/*` or `application/*`, then `*/*`; the highest
    if one range is given twice), 0 if none does; a q-value that is not one is taken as 1."""
    accept = b",".join(v for k, v in scope["headers"] if k == b"accept").decode("latin-1")
    best: dict[str, tuple[int, float]] = {}  # media type: (how specific its range, q)
    for part in accept.lower().split(","):
        media_range, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q" and _QVALUE.fullmatch(value.strip()):
                q = float(value)
        for media_type in (SSE, JSON):
            fit = _fit(media_range, media_type)
            if fit is not None and (fit, q) > best.get(media_type, (-1, 0.0)):
                best[media_type] = (fit, q)
    return best.get(SSE, (0, 0.0))[1] > best.get(JSON, (0, 0.0))[1]


def _fit(media_range: str, media_type: str) -> int | None:
    """How specifically `media_range` matches `media_type` (2: itself ... 0: `*/*`)."""
    if media_range == media_type:
        return 2
    if media_range == media_type.split("/")[0] + "/*":
        return 1
    return 0 if media_range == "*/*" else None


def _reply(
    content: Any, data_sender_callable: Any = None, headers: Any = None, **options: Any
) -> Any:
    sender = data_sender_callable
    if isinstance(sender, partial) and getattr(sender.func, "__name__", "") == "_run_sse_writer":
        return QuickReply(sender, content, headers, options)
    return EventSourceResponse(
        content=content, data_sender_callable=sender, headers=headers, **options
    )


def install_quick_replies(seconds: float = QUICK_REPLY) -> None:
    """Answer quick requests (within `seconds`: MCP_QUICK_REPLY) as JSON in every Streamable
    HTTP session of this process."""
    global QUICK_REPLY
    QUICK_REPLY = seconds
    streamable_http.EventSourceResponse = _reply  # type: ignore[assignment,misc]
