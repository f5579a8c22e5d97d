"""`subscriptions/listen` (2026-07-28) with the feed seq as a bookmark, as handshake-era
subscriptions have it (live.py): nothing is missed between two streams.

Why: a listen stream has no replay in the SDK ("re-listen and refetch"), so a client whose
stream broke (main.py restarted, a replica died, the network blinked) could not know which
stock changed meanwhile. The SDK's `ListenHandler` still serves every stream (ack first,
filtering, backlog bound); this wrapper adds two things around it:
- each frame carries `_meta: {"shop/seq": S}`: the acknowledgement the position this stream
  starts from, each update the feed seq it stands for (none for events a tool published);
- a listen request with `_meta: {"shop/after": S}` (the last seq the client saw) is sent, right
  after the acknowledgement, one `notifications/resources/updated` per subscribed URI that
  changed after S (and `resources/list_changed` if products were created or archived and it
  asked for that), read from `GET /api/changes?after=S`, oldest first, each with its newest
  seq. Pruned history, too long a gap or api.py not answering count as changed. Until those
  are sent, frames carry S, so a client whose stream breaks again keeps S.
The seq of each event is matched to its frame in order: the handler sends the events it
accepted (the same `event_matches` test) first in, first out.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import ListenHandler, ResourceUpdated, ServerEvent
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import event_matches
from mcp.types import (
    INVALID_PARAMS,
    PromptListChangedNotification,
    ResourceListChangedNotification,
    ResourceUpdatedNotification,
    SubscriptionsAcknowledgedNotification,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    ToolListChangedNotification,
)

from product_mcp.core import mcp_compat
from product_mcp.mcp_server.bus import FeedListChanged, FeedUpdated, ShopBus
from product_mcp.mcp_server.live import AFTER_KEY, MAX_URI_CHARS, SEQ_KEY, Changes, Live

EVENT_FRAMES = (
    ResourceUpdatedNotification,
    ResourceListChangedNotification,
    ToolListChangedNotification,
    PromptListChangedNotification,
)


@dataclasses.dataclass
class _Stream:
    """One listen request: what it asked for, its hint, and the seqs of its queued events."""

    params: SubscriptionsListenRequestParams
    after: int | None  # the client's `shop/after`
    start: int | None = None  # the seq the acknowledgement carries
    catching_up: bool = False
    covered: int = -1  # feed events up to this seq were announced by the catch-up
    held: list[ServerEvent] = dataclasses.field(default_factory=list)  # feed events meanwhile
    seqs: deque[int | None] = dataclasses.field(default_factory=deque)

    def __post_init__(self) -> None:
        # once, not per event: rebuilt for every event and every stream, 150,000 URIs held
        # the event loop for seconds (found from outside)
        self.uris = frozenset(self.params.notifications.resource_subscriptions or ())

    def accepts(self, event: ServerEvent) -> bool:
        return event_matches(self.params.notifications, self.uris, event)

    def seq_of(self, event: ServerEvent) -> int | None:
        if self.catching_up:
            return self.after
        return getattr(event, "seq", None)


_STREAM: ContextVar[_Stream | None] = ContextVar("listen_stream", default=None)


class _StreamBus:
    """The bus as the SDK's handler sees it: subscribing also tracks the stream's seqs and
    starts its catch-up."""

    def __init__(self, bus: ShopBus, live: Live) -> None:
        self.bus, self.live = bus, live
        self._tasks: set[asyncio.Task[None]] = set()

    async def publish(self, event: ServerEvent) -> None:
        await self.bus.publish(event)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        stream = _STREAM.get()
        if stream is None:  # not through ShopListen: nothing to add
            return self.bus.subscribe(listener)

        def send(event: ServerEvent) -> None:
            if stream.accepts(event):
                stream.seqs.append(stream.seq_of(event))
            listener(event)

        def deliver(event: ServerEvent) -> None:
            # A feed event the catch-up accounts for is not said twice: main.py's follower
            # may lag behind what the catch-up read from api.py (seen under load).
            seq = getattr(event, "seq", None)
            if seq is not None and stream.catching_up:
                stream.held.append(event)
            elif seq is None or seq > stream.covered:
                send(event)

        stream.start = self.live.after
        if stream.after is not None:
            stream.start, stream.catching_up = stream.after, True
            task = asyncio.create_task(self._catch_up(stream, send, deliver))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return self.bus.subscribe(deliver)

    async def _catch_up(
        self,
        stream: _Stream,
        send: Callable[[ServerEvent], None],
        deliver: Callable[[ServerEvent], None],
    ) -> None:
        """Announce what changed after the client's seq (read after subscribing, so nothing
        falls between what is read and what the stream hears), then the feed events held
        meanwhile that the catch-up did not cover."""
        assert stream.after is not None
        try:
            changes = await self.live.changes_after(stream.after)
        except Exception:
            changes = Changes(failed=True)
        events = missed(stream.params, changes, stream.after)
        # What it announced covers the feed up to what it read, and never less than the
        # client's own bookmark (a catch-up that found nothing still covers that).
        stream.covered = stream.after if changes.failed else max(stream.after, changes.head)
        stream.catching_up = False
        for event in events:
            send(event)
        held, stream.held = stream.held, []
        for event in held:
            deliver(event)


def missed(
    params: SubscriptionsListenRequestParams, changes: Changes, after: int
) -> list[ServerEvent]:
    """The events a stream asking for `params` missed after seq `after`, oldest first."""
    wanted = params.notifications
    found: list[tuple[int, ServerEvent]] = []
    for uri in wanted.resource_subscriptions or ():
        seq = after if changes.failed else changes.newest(uri)
        if seq is not None:
            found.append((seq, FeedUpdated(uri=uri, seq=seq)))
    if wanted.resources_list_changed:
        news = [s for s in (changes.list_changed, changes.everything) if s is not None]
        if news or changes.failed:
            seq = max(news) if news else after
            found.append((seq, FeedListChanged(seq=seq)))
    found.sort(key=lambda pair: (pair[0], isinstance(pair[1], ResourceUpdated)))
    return [event for _, event in found]


class _Stamping:
    """The request's session, adding `shop/seq` to the frames of one listen stream."""

    def __init__(self, session: Any, stream: _Stream) -> None:
        self._session, self._stream = session, stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    async def send_notification(self, notification: Any, *args: Any, **kw: Any) -> Any:
        stream = self._stream
        seq: int | None = None
        if isinstance(notification, SubscriptionsAcknowledgedNotification):
            seq = stream.start
        elif isinstance(notification, EVENT_FRAMES):
            seq = stream.seqs.popleft() if stream.seqs else None
        if seq is not None and notification.params is not None:
            meta = {**(notification.params.meta or {}), SEQ_KEY: seq}
            params = notification.params.model_copy(update={"meta": meta})
            notification = notification.model_copy(update={"params": params})
        return await self._session.send_notification(notification, *args, **kw)


class ShopListen:
    """The `subscriptions/listen` handler: the SDK's, with seqs and catch-up."""

    def __init__(self, bus: ShopBus, live: Live) -> None:
        self.handler = ListenHandler(_StreamBus(bus, live))
        self.live = live

    def register(self, server: Any) -> None:
        mcp_compat.add_request_handler(
            server, "subscriptions/listen", SubscriptionsListenRequestParams, self
        )

    async def __call__(
        self, ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        self._check(params)
        after = (params.meta or {}).get(AFTER_KEY)
        valid = isinstance(after, int) and not isinstance(after, bool) and after >= 0
        stream = _Stream(params, after if valid else None)
        token = _STREAM.set(stream)
        try:
            stamped = dataclasses.replace(ctx, session=_Stamping(ctx.session, stream))
            return await self.handler(stamped, params)
        finally:
            _STREAM.reset(token)

    def _check(self, params: SubscriptionsListenRequestParams) -> None:
        """At most MCP_MAX_SUBSCRIPTIONS URIs of MAX_URI_CHARS each, as resources/subscribe
        (there was no bound: 150,000 URIs in one listen)."""
        uris = params.notifications.resource_subscriptions or []
        where = "Invalid request parameters: params.notifications.resourceSubscriptions"
        limit = self.live.subscribers.limit
        if len(uris) > limit:
            raise MCPError(
                INVALID_PARAMS,
                f"{where}: at most {limit} URIs in one listen (MCP_MAX_SUBSCRIPTIONS); "
                f"this one names {len(uris)}",
            )
        if any(len(uri) > MAX_URI_CHARS for uri in uris):
            raise MCPError(INVALID_PARAMS, f"{where}: a URI of at most {MAX_URI_CHARS} characters")
