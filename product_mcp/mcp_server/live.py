"""Live inventory for MCP clients: api.py's change feed turned into resource notifications.

Why one follower per process: every change is read once from `GET /api/changes` (SSE, resumed
with Last-Event-ID after an API outage, from the seq it last saw) and fanned out in memory to
this process's subscribers, so each subscriber, on whichever replica its session lives, gets
each change once. Two eras, one source:
- handshake era (/mcp legacy sessions, /sse): `resources/subscribe` / `resources/unsubscribe`
  (registered here, so `resources.subscribe` is advertised) and
  `notifications/resources/updated` to the sessions that subscribed to the URI;
- 2026-07-28: the server's `SubscriptionBus` (bus.py; `subscriptions/listen` streams), on
  this process only (`publish_here`: every replica follows the feed itself). Events a tool
  publishes on the bus reach this process's handshake-era subscribers too (`_bridged`).
URIs: `shop://products/{id}` and `shop://inventory` (any stock change); products created or
archived also send `notifications/resources/list_changed`. Bursts are coalesced per URI within
`WINDOW` seconds: a URI changed ten times in a flash sale is announced once, after the last
change, so the client re-reads the last state.

With REDIS_URL a legacy session's URIs are also kept in its Redis record (a `SubscriptionKeeper`,
shared_sessions.py), and a replica that restores the session re-adds them (`Subscribers.restore`),
so after its replica's death the session keeps hearing updates without subscribing again.

Missed while away (main.py restarted, or the client reconnected): the feed's seq is the
bookmark, held by the client, so main.py keeps no state. A subscribe answers
`_meta: {"shop/seq": S}` (the feed position it has handled) and each update carries
`_meta: {"shop/seq": S}`; a client that subscribes again with `_meta: {"shop/after": S}` is
sent `notifications/resources/updated` at once if that URI changed after S (read from
`GET /api/changes?after=S`; pruned history or a very long gap counts as changed). Listen
streams get the same from listen.py, through `changes_after`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourcesListChanged, ResourceUpdated, ServerEvent
from mcp.types import INVALID_PARAMS, EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from product_mcp.core import mcp_compat
from product_mcp.core.config import Settings
from product_mcp.mcp_server.bus import FeedListChanged, FeedUpdated, ShopBus

log = logging.getLogger("mcp.live")
INVENTORY_URI = "shop://inventory"
WINDOW = 0.1  # seconds a burst of changes to one URI is gathered into one notification
MAX_URIS_PER_SESSION = 1000  # default of MCP_MAX_SUBSCRIPTIONS
MAX_URI_CHARS = 2048  # a subscribed URI's length at most (it is kept per session, maybe in Redis)
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
# A feed stream that said nothing, not even its heartbeat, for this many of its heartbeat
# periods (`X-Change-Heartbeat`; api.py's default when absent) is taken for dead: a connection
# whose far end vanished without a FIN (a host gone, a proxy that dropped it) would otherwise
# be waited on forever, and live notifications would stop without a word.
SILENT_HEARTBEATS = 3
DEFAULT_HEARTBEAT: float = Settings.model_fields["CHANGE_HEARTBEAT"].default
SEQ_KEY, AFTER_KEY = "shop/seq", "shop/after"  # _meta keys: the feed position, the hint
CATCH_UP_PAGES = 10  # pages of 1000 events read for a hint; a longer gap counts as changed


def _heartbeat(header: str | None) -> float:
    """The feed's heartbeat period from its header (any CHANGE_HEARTBEAT api.py accepts);
    api.py's default if absent (an older api.py) or not a positive number."""
    try:
        seconds = float(header) if header else DEFAULT_HEARTBEAT
    except ValueError:
        return DEFAULT_HEARTBEAT
    return seconds if 0 < seconds < math.inf else DEFAULT_HEARTBEAT


def product_uri(product_id: int) -> str:
    return f"shop://products/{product_id}"


@dataclass
class Changes:
    """What the feed says changed after some seq: URI -> the newest seq that touched it."""

    touched: dict[str, int] = field(default_factory=dict)
    list_changed: int | None = None  # newest seq that created or archived a product
    everything: int | None = None  # pruned history or too long a gap: all may have changed
    failed: bool = False  # api.py could not be read (what is here is partial)
    head: int = 0  # the newest seq read: the feed's events up to it are accounted for

    def add(self, seq: int, change: dict[str, Any]) -> None:
        if change["kind"] == "resync":
            self.everything = seq
            return
        for uri in Live._uris_of(change):
            self.touched[uri] = seq
        if change["kind"] in ("created", "archived"):
            self.list_changed = seq

    def newest(self, uri: str) -> int | None:
        seqs = [s for s in (self.touched.get(uri), self.everything) if s is not None]
        return max(seqs) if seqs else None


class SubscriptionKeeper(Protocol):
    """Where a legacy session's subscriptions outlive its replica (shared_sessions.py)."""

    async def subscribed(self, session_id: str, uri: str, limit: int) -> None: ...

    async def unsubscribed(self, session_id: str, uri: str) -> None: ...


class Subscribers:
    """Handshake-era connections and the URIs each subscribed to (held weakly: a closed one
    just disappears)."""

    def __init__(self) -> None:
        self._uris: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
        self.limit = MAX_URIS_PER_SESSION  # URIs per session (MCP_MAX_SUBSCRIPTIONS)

    def add(self, session: Any, uri: str) -> None:
        if len(uri) > MAX_URI_CHARS:
            raise MCPError(INVALID_PARAMS, f"uri: at most {MAX_URI_CHARS} characters")
        uris = self._uris.setdefault(session, set())
        if len(uris) >= self.limit and uri not in uris:
            raise MCPError(
                INVALID_PARAMS,
                f"uri: at most {self.limit} subscriptions per session (unsubscribe one first)",
            )
        uris.add(uri)

    def restore(self, session: Any, uris: list[str]) -> None:
        """A restored session's recorded URIs (within today's bounds)."""
        kept = [u for u in sorted(uris) if len(u) <= MAX_URI_CHARS][: self.limit]
        if kept:
            self._uris[session] = set(kept)

    def remove(self, session: Any, uri: str) -> None:
        self._uris.get(session, set()).discard(uri)

    def forget(self, session_id: str) -> None:
        """Tell the session `session_id` nothing more here (another replica serves it now)."""
        for session in [s for s in list(self._uris) if mcp_compat.session_id_of(s) == session_id]:
            self._uris.pop(session, None)

    def sessions(self, uri: str | None = None) -> list[Any]:
        return [s for s, uris in list(self._uris.items()) if uri is None or uri in uris]

    async def send(self, uris: set[str], list_changed: bool, seq: int | None = None) -> None:
        if not uris and not list_changed:
            return
        meta = {SEQ_KEY: seq} if seq is not None else None
        for session in self.sessions():
            mine = self._uris.get(session, set())
            try:
                for uri in sorted(uris & mine):
                    await session.send_resource_updated(uri, meta=meta)
                if list_changed and mine:
                    await session.send_resource_list_changed()
            except Exception as e:  # a gone session: forget it, keep the others
                log.warning("dropping a subscriber: %r", e)
                self._uris.pop(session, None)


class Live:
    """The follower, the coalescer and both eras' delivery, for one MCP server object."""

    def __init__(self, server: Any, bus: ShopBus) -> None:
        self.server = server
        self.bus = bus
        self._sending: set[asyncio.Task[None]] = set()  # bridged sends under way
        self.subscribers = Subscribers()
        self.after: int | None = None  # the last seq handled (None: not started)
        self._pending: set[str] = set()
        self._list_changed = False
        self._flush: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._base = ""  # api.py's base URL, once following
        self._http: httpx.AsyncClient | None = None
        self.delivered = 0  # notifications flushed (tests and the bench read it)
        self.keeper: SubscriptionKeeper | None = None  # with REDIS_URL: the session records

    # --- handshake-era requests ------------------------------------------------------------

    def register(self) -> None:
        self.bus.bridge(self._bridged)
        mcp_compat.add_request_handler(
            self.server, "resources/subscribe", SubscribeRequestParams, self._subscribe
        )
        mcp_compat.add_request_handler(
            self.server, "resources/unsubscribe", UnsubscribeRequestParams, self._unsubscribe
        )

    def keep(self, keeper: SubscriptionKeeper) -> bool:
        """Record legacy subscriptions with `keeper` too (False if one already does: a second
        app built in the same process leaves it alone)."""
        if self.keeper is not None:
            return False
        self.keeper = keeper
        return True

    def unkeep(self) -> None:
        self.keeper = None

    async def _subscribe(
        self, ctx: ServerRequestContext[Any], params: SubscribeRequestParams
    ) -> EmptyResult:
        connection, uri = mcp_compat.connection(ctx.session), str(params.uri)
        self.subscribers.add(connection, uri)
        session_id = mcp_compat.session_id_of(connection)
        if self.keeper is not None and session_id:  # before the answer: a restore sees it
            await self.keeper.subscribed(session_id, uri, self.subscribers.limit)
        seq = self.after
        after = (params.meta or {}).get(AFTER_KEY)
        if isinstance(after, int) and not isinstance(after, bool) and after >= 0:
            head = await self._changed_since(after, uri)
            if head is not None:  # it changed while this client was away: tell it now
                await connection.send_resource_updated(uri, meta={SEQ_KEY: head})
                seq = max(seq or 0, head)
        return EmptyResult(_meta={SEQ_KEY: seq} if seq is not None else None)

    async def _unsubscribe(
        self, ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams
    ) -> EmptyResult:
        connection, uri = mcp_compat.connection(ctx.session), str(params.uri)
        self.subscribers.remove(connection, uri)
        session_id = mcp_compat.session_id_of(connection)
        if self.keeper is not None and session_id:
            await self.keeper.unsubscribed(session_id, uri)
        return EmptyResult()

    async def _changed_since(self, after: int, uri: str) -> int | None:
        """The newest seq after `after` that touched `uri` (None: unchanged, or unknown
        because api.py is not reachable: then the follower's own notifications follow)."""
        return (await self.changes_after(after)).newest(uri)

    async def changes_after(self, after: int) -> Changes:
        """What changed after seq `after`, read from `GET /api/changes` (at most
        CATCH_UP_PAGES pages; a longer gap, or pruned history, counts as everything)."""
        changes = Changes()
        if self._http is None:
            changes.failed = True
            return changes
        try:
            for _ in range(CATCH_UP_PAGES):
                r = await self._http.get(
                    f"{self._base}/changes", params={"after": after, "limit": 1000}, timeout=10
                )
                r.raise_for_status()
                page = r.json()
                for change in page:
                    after = changes.head = int(change["seq"])
                    changes.add(after, change)
                if len(page) < 1000:
                    return changes
            changes.everything = after  # too long a gap to read: count it as changed
        except (httpx.HTTPError, KeyError, ValueError, TypeError) as e:
            log.info("could not read the changes after seq %d: %s", after, e)
            changes.failed = True
        return changes

    @staticmethod
    def _uris_of(change: dict[str, Any]) -> set[str]:
        return {product_uri(change["productId"]), INVENTORY_URI}

    def _bridged(self, event: ServerEvent) -> None:
        """An event a tool published on the bus (here or on another replica): the legacy
        subscribers of this replica hear it too."""
        if isinstance(event, ResourceUpdated):
            uris, list_changed = {event.uri}, False
        elif isinstance(event, ResourcesListChanged):
            uris, list_changed = set(), True
        else:
            return
        task = asyncio.create_task(self.subscribers.send(uris, list_changed))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    # --- following the feed ----------------------------------------------------------------

    def start(self, api_base: str) -> bool:
        """Start following (once per process: False if already following, e.g. a second app
        built in the same process, whose lifespan must then leave it alone)."""
        if self._task is not None and not self._task.done():
            return False
        self._base = api_base.rstrip("/")
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(10, read=None))
        self._task = asyncio.create_task(self._follow(self._http, self._base))
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _follow(self, http: httpx.AsyncClient, base: str) -> None:
        """Follow the feed forever: from the newest seq at first, then from the last seen."""
        failures = 0
        while True:
            try:
                if self.after is None:
                    r = await http.get(f"{base}/changes", params={"limit": 1})
                    r.raise_for_status()
                    head = r.headers.get("x-change-head")
                    if head is None:  # a proxy between may drop it: said in words, not KeyError
                        raise ValueError("the API's answer has no X-Change-Head header")
                    self.after = int(head)
                await self._stream(http, base)
                failures = 0
            except (httpx.HTTPError, KeyError, ValueError, TimeoutError) as e:
                delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                why = str(e) or type(e).__name__
                log.info("change feed unavailable (%s); retrying in %gs", why, delay)
                await asyncio.sleep(delay)

    async def _stream(self, http: httpx.AsyncClient, base: str) -> None:
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(self.after)}
        async with http.stream("GET", f"{base}/changes", headers=headers) as r:
            r.raise_for_status()
            quiet = SILENT_HEARTBEATS * _heartbeat(r.headers.get("x-change-heartbeat"))
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(quiet) as deadline:
                    async for line in r.aiter_lines():
                        deadline.reschedule(loop.time() + quiet)
                        if line.startswith("data: "):
                            self.handle(json.loads(line[6:]))
            except TimeoutError:
                raise TimeoutError(f"the stream was silent for {quiet:g}s") from None

    def handle(self, change: dict[str, Any]) -> None:
        """One feed event: mark what it changed (sent once the burst window closes). An event
        at or before the last seq handled (a stream re-sending it) is not news."""
        seq = int(change["seq"])
        if self.after is not None and seq <= self.after:
            return
        self.after = seq
        if change["kind"] == "resync":  # events were pruned: everything may have changed
            self._mark({INVENTORY_URI}, list_changed=True)
            return
        self._mark(
            self._uris_of(change),
            list_changed=change["kind"] in ("created", "archived"),
        )

    # --- coalescing and delivery -----------------------------------------------------------

    def _mark(self, uris: set[str], *, list_changed: bool) -> None:
        self._pending |= uris
        self._list_changed |= list_changed
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(WINDOW, self._flush_soon)

    def _flush_soon(self) -> None:
        self._flush = None
        uris, self._pending = self._pending, set()
        list_changed, self._list_changed = self._list_changed, False
        task = asyncio.create_task(self._deliver(uris, list_changed, self.after))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _deliver(self, uris: set[str], list_changed: bool, seq: int | None) -> None:
        events: list[ServerEvent] = [FeedUpdated(uri=uri, seq=seq) for uri in sorted(uris)]
        if list_changed:
            events.append(FeedListChanged(seq=seq))
        self.bus.publish_here(events)  # every replica follows the feed: not through Redis
        await self.subscribers.send(uris, list_changed, seq)
        self.delivered += len(uris)
