"""The change feed's live side in one API process: knows the newest seq, wakes the streams.

Why one watcher per process and not one query loop per stream: the streams of a worker all
wait on one `asyncio.Condition`; only this watcher asks the database whether anything is new
(`SELECT max(seq)`, an index lookup) and only while someone is listening. It learns of a change
- at once, when this process committed it (`Database.on_change`, called from the writer's
  thread),
- within `POLL_SECONDS`, when another worker (SQLite) did, by polling,
- at once on PostgreSQL through LISTEN (a NOTIFY that `changes.append` sends at commit), with
  a slower poll as the fallback: the table stays the truth, a lost notification only delays.
The watcher reads the new events itself, once for all streams, into a short window of recent
events (each already written as its SSE text), at most once per `BATCH_SECONDS`: a stream that
is up to date takes its next events from that window, so N followers and a busy shop cost one
query per batch, not N per purchase (4 MCP servers following the feed had doubled api.py's CPU
per purchase). A stream behind the window (a slow client, a resume) reads its own pages from the
table, so a slow client costs a cursor, not memory. The window is complete for the seqs it
covers: it holds every event read after the seq it starts from, and a read after seq S sees
every event up to the last one returned (commit order, see changes.py).
The watcher also prunes events older than the retention window, once a minute.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator

from anyio import to_thread
from sqlalchemy.engine import make_url

from models import Change
from product_mcp.shop import Shop, changes

log = logging.getLogger("api.feed")
POLL_SECONDS = 0.1  # SQLite: how stale another worker's change may be
PG_POLL_SECONDS = 1.0  # PostgreSQL: LISTEN wakes us; this is the fallback
PRUNE_SECONDS = 60.0
BATCH_SECONDS = 0.05  # at most one look per this, however busy: changes in between go together
RECENT_MAX = 2000  # events kept in memory for streams that are up to date


def sse(change: Change) -> str:
    """One event as Server-Sent Events text: its seq is the SSE id (resume by Last-Event-ID)."""
    data = json.dumps(change.model_dump(), ensure_ascii=False)
    kind = "resync" if change.kind == "resync" else "change"
    return f"id: {change.seq}\nevent: {kind}\ndata: {data}\n\n"


class ChangeFeed:
    """The newest seq this process knows, and waiting for a newer one."""

    def __init__(self, shop: Shop, *, retention: float, heartbeat: float) -> None:
        self.shop = shop
        self.retention = retention
        self.heartbeat = heartbeat
        self.latest = 0
        self.listeners = 0
        self.closed = asyncio.Event()
        self._changed = asyncio.Condition()
        self._poke = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop_listen = threading.Event()
        # The window: every event with base < seq <= latest, oldest first, and its SSE text.
        self._base = 0
        self._seqs: list[int] = []
        self._texts: list[str] = []

    async def start(self) -> None:
        self.latest = self._base = await to_thread.run_sync(self._read_latest)
        self.shop.on_change.append(self.poke_threadsafe)
        self._tasks.append(asyncio.create_task(self._watch()))
        self._tasks.append(asyncio.create_task(self._prune()))
        if self.shop.dialect == "postgresql":
            threading.Thread(target=self._listen, name="feed-listen", daemon=True).start()

    async def close(self) -> None:
        """End every stream (uvicorn waits for open responses before it shuts down)."""
        self.closed.set()
        self._stop_listen.set()
        async with self._changed:
            self._changed.notify_all()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def close_soon(self) -> None:
        """Called as the server starts shutting down (from its loop)."""
        if not self.closed.is_set():
            self.closed.set()
            self._loop.create_task(self.close())

    def poke_threadsafe(self) -> None:
        """A change committed in this process: look now (any thread may call this). Without
        a stream nobody needs to know: a purchase then costs no wake-up of the loop."""
        if self.listeners:
            self._loop.call_soon_threadsafe(self._poke.set)

    def _read_latest(self) -> int:
        with self.shop.engine.connect() as conn:
            return changes.latest(conn)

    def read(self, after: int, limit: int) -> list[Change]:
        with self.shop.engine.connect() as conn:
            return changes.read(conn, after, limit)

    def read_with_head(self, after: int, limit: int) -> tuple[list[Change], int]:
        """A page and the newest seq there is (a new consumer follows on from it)."""
        with self.shop.engine.connect() as conn:
            return changes.read(conn, after, limit), changes.latest(conn)

    async def _watch(self) -> None:
        interval = PG_POLL_SECONDS if self.shop.dialect == "postgresql" else POLL_SECONDS
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), interval)
            self._poke.clear()
            if not self.listeners:
                continue
            try:
                more = await self._look()
            except Exception as e:  # the database is away: streams wait, we retry
                log.warning("change feed: cannot read the newest events: %s", e)
                await asyncio.sleep(1)
                continue
            if more:
                self._poke.set()  # a full page: read on at once
            else:
                await asyncio.sleep(BATCH_SECONDS)  # pokes meanwhile wait for the next look

    async def _look(self) -> bool:
        """Read the events after `latest` into the window and wake the streams; True if
        there may be more at once."""
        after = self.latest
        batch = await to_thread.run_sync(self.read, after, RECENT_MAX)
        if not batch:
            return False
        if batch[-1].kind == "resync":  # pruned past us (no listener for a long while)
            self._base = self.latest = batch[-1].seq
            self._seqs, self._texts = [], []
        else:
            self._seqs += [c.seq for c in batch]
            self._texts += [sse(c) for c in batch]
            if len(self._seqs) > RECENT_MAX:
                cut = len(self._seqs) - RECENT_MAX
                self._base = self._seqs[cut - 1]
                del self._seqs[:cut], self._texts[:cut]
            self.latest = batch[-1].seq
        async with self._changed:
            self._changed.notify_all()
        return len(batch) == RECENT_MAX

    def recent(self, after: int, page: int) -> tuple[str, int, int] | None:
        """Up to `page` events after `after` from the window: their SSE text, the seq of the
        last one and how many; None if the window does not reach back to `after`."""
        if not self._base <= after <= self.latest:
            return None
        start = bisect.bisect_right(self._seqs, after)
        end = min(start + page, len(self._seqs))
        if start == end:
            return "", after, 0
        return "".join(self._texts[start:end]), self._seqs[end - 1], end - start

    async def _prune(self) -> None:
        while True:
            try:
                gone = await to_thread.run_sync(self.shop.prune_changes, self.retention)
                if gone:
                    log.info("change feed: pruned %d events older than %gs", gone, self.retention)
            except Exception as e:
                log.warning("change feed: pruning failed: %s", e)
            await asyncio.sleep(PRUNE_SECONDS)

    def _listen(self) -> None:
        """PostgreSQL: wake the watcher on each NOTIFY (reconnecting after an outage)."""
        import psycopg  # here, not atop: on SQLite the API never loads the driver

        url = make_url(str(self.shop.engine.url.render_as_string(hide_password=False)))
        conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop_listen.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {changes.CHANNEL}")
                    self.poke_threadsafe()  # anything missed while we were not listening
                    while not self._stop_listen.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self.poke_threadsafe()
            except Exception as e:
                log.warning("change feed: LISTEN failed (%s); polling meanwhile", e)
                self._stop_listen.wait(2.0)

    async def wait_past(self, seq: int) -> bool:
        """Wait until an event after `seq` may exist (True), the heartbeat is due (False) or
        the feed closes (False)."""
        if self.latest > seq:
            return True
        if self.closed.is_set():
            return False
        self._poke.set()  # a first listener: the watcher looks now instead of next tick
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.latest > seq or self.closed.is_set()),
                    self.heartbeat,
                )
        return self.latest > seq

    async def stream(self, after: int, page: int) -> AsyncIterator[str | None]:
        """Every event after `after`, in order, as they come, as SSE text (one chunk per
        batch); None when a heartbeat is due. Ends when the feed closes."""
        self.listeners += 1
        try:
            while not self.closed.is_set():
                window = self.recent(after, page)
                if window is not None:
                    text, after, n = window
                    if n:
                        yield text
                    full = n == page
                else:
                    batch = await to_thread.run_sync(self.read, after, page)
                    if batch:
                        yield "".join(sse(c) for c in batch)
                        after = batch[-1].seq
                        full = len(batch) == page and batch[-1].kind != "resync"
                    else:
                        full = False
                        await asyncio.sleep(POLL_SECONDS)  # never spin, whatever `latest` says
                if full:
                    continue
                if not await self.wait_past(after) and not self.closed.is_set():
                    yield None
        finally:
            self.listeners -= 1
