"""api.py's change feed route: GET /api/changes, as a JSON page or a Server-Sent Events stream.

Why one route for both: a consumer catches up with JSON pages (`?after=SEQ`, oldest first) and
follows live by asking the same URL for `text/event-stream`; each event's SSE `id` is its seq,
so a reconnecting EventSource resumes with `Last-Event-ID` exactly where it stopped. A
consumer older than the retention window gets one `resync` event (re-read the catalogue, then
follow on after its seq) instead of a silent gap. Streams per client are bounded
(CHANGE_STREAMS_PER_CLIENT) and send a comment line as a heartbeat when idle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from models import CHANGES_PAGE_DEFAULT, CHANGES_PAGE_MAX, Change
from product_mcp.core.protocol import LOCAL_ADDRESSES
from product_mcp.core.streams import CountedStream
from product_mcp.shop.feed import ChangeFeed

MAX_SEQ = 2**62
HEAD_HEADER = "X-Change-Head"  # JSON pages: the newest seq there is (follow on from it)
router = APIRouter(tags=["changes"])


def _start_after(after: int, last_event_id: str | None) -> int:
    """Where to resume: Last-Event-ID (an EventSource reconnecting) wins over `after`."""
    if last_event_id is None or not last_event_id.strip():
        return after
    value = last_event_id.strip()
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_SEQ:  # int() refuses "²"
        raise RequestValidationError(
            [
                {
                    "loc": ("header", "last-event-id"),
                    "msg": f"must be a seq (a whole number 0..{MAX_SEQ})",
                    "type": "value_error",
                    "input": value,
                }
            ]
        )
    return int(value)


@router.get(
    "/api/changes",
    response_model=list[Change],
    responses={
        200: {
            "description": "Events after `after`, oldest first (JSON), or a stream of them",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        429: {"description": "Too many open streams from this client"},
    },
)
async def get_changes(
    request: Request,
    response: Response,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="Only events with a larger seq")] = 0,
    limit: Annotated[
        int, Query(ge=1, le=CHANGES_PAGE_MAX, description="At most this many (a JSON page)")
    ] = CHANGES_PAGE_DEFAULT,
    last_event_id: Annotated[
        str | None, Header(max_length=40, description="SSE resume point (wins over `after`)")
    ] = None,
    accept: Annotated[str | None, Header(max_length=1000)] = None,
) -> list[Change] | StreamingResponse:
    """The change feed: every change to a product or its stock (purchased, restocked,
    created, updated, archived), each with its seq, the stock and price after it."""
    feed: ChangeFeed = request.app.state.feed
    start = _start_after(after, last_event_id)
    if "text/event-stream" not in (accept or ""):
        events, head = await run_in_threadpool(feed.read_with_head, start, limit)
        response.headers[HEAD_HEADER] = str(head)
        return events
    client = request.client.host if request.client else "?"
    streams: dict[str, int] = request.app.state.change_streams
    # This machine's own addresses (main.py's follower, when it runs here) are not held to
    # the per-client count, as they are not for connections: eight streams from main.py's
    # address locked its follower out, and every MCP client's live stock with it (found from
    # outside). Clients behind a local nginx are counted by the address it forwards
    # (X-Forwarded-For); MAX_CONNECTIONS bounds everyone.
    local = client in LOCAL_ADDRESSES
    if not local and streams.get(client, 0) >= request.app.state.streams_per_client:
        raise HTTPException(
            429,
            f"Too many change streams from {client} (at most "
            f"{request.app.state.streams_per_client}): close one first",
        )
    streams[client] = streams.get(client, 0) + 1

    def release() -> None:
        streams[client] -= 1
        if not streams[client]:
            del streams[client]

    async def body() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        async for chunk in feed.stream(start, limit):
            yield ": heartbeat\n\n" if chunk is None else chunk

    return CountedStream(
        body(),
        release,
        media_type="text/event-stream",
        # The heartbeat's period, so a follower knows how long a silence means a dead stream.
        headers={
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            "X-Change-Heartbeat": f"{feed.heartbeat:g}",
        },
    )
