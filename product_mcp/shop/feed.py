"""The change feed's live side in one API process: one watcher reads new events for all streams.

Why one watcher per process and not one query loop per stream: N streams (every main.py follows
the feed) reading their own pages would cost N queries, N thread hops and N JSON encodings per
change: with 4 followers that doubled api.py's CPU per purchase. Here only the watcher reads
the table, at most once per `BATCH_SECONDS` however busy the shop is, into a window of recent
events kept as SSE text; a stream that is up to date takes its next events from the window and
writes them as one chunk. A stream behind the window (a slow client, a resume from an old seq,
a resync) reads its own pages from the table, so a slow client costs a cursor, not memory.

The window is complete for the seqs it covers: every event with `base < seq <= latest` is in
it, because each read after `latest` returns a complete prefix (commit order, changes.py) and
is appended whole. The watcher learns of a change
- at once when this process committed it (`Database.on_change`, from the writer's thread),
- within `POLL_SECONDS` when another worker did (a `max(seq)` poll, only while someone
  listens; SQLite and PostgreSQL alike: a NOTIFY in the writer's transaction would put every
  commit in one queue on PostgreSQL). On a SQLite file the poll first asks `PRAGMA
  data_version` on a connection of its own, which changes whenever any other connection
  commits: ~4 µs in the event loop instead of ~0.7 ms of a pooled query in a thread, so an
  idle api.py that main.py follows costs a third of the CPU it did.
The watcher also prunes events older than the retention window, once a minute.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar
from urllib.parse import quote

from anyio import to_thread

from models import Change
from product_mcp.shop import Shop, changes

log = logging.getLogger("api.feed")
POLL_SECONDS = 0.1  # how stale another worker's change may be
BATCH_SECONDS = 0.05  # at most one read per this: changes in between go together
RECENT_MAX = 2000  # events the window keeps for streams that are up to date
PRUNE_SECONDS = 60.0
CLOSE_SECONDS = 2.0  # at most this long to stop the watcher and the pruner
T = TypeVar("T")


def sse(change: Change) -> str:
    """One event as Server-Sent Events text: its seq is the SSE id (resume by Last-Event-ID)."""
    data = json.dumps(change.model_dump(), ensure_ascii=False)
    kind = "resync" if change.kind == "resync" else "change"
    return f"id: {change.seq}\nevent: {kind}\ndata: {data}\n\n"


class ChangeFeed:
    """The window of recent events this process knows, and waiting for newer ones."""

    def __init__(self, shop: Shop, *, retention: float, heartbeat: float) -> None:
        self.shop = shop
        self.retention = retention
        self.heartbeat = heartbeat
        self.listeners = 0
        self.closed = asyncio.Event()
        # The window: every event with base < seq <= latest, oldest first, and its SSE text.
        self.latest = 0
        self._base = 0
        self._seqs: list[int] = []
        self._texts: list[str] = []
        self._stale = True  # nobody listened since the last read: the window may be far behind
        # Set (and replaced) at every change: waiters need no lock. A Condition under 3.11's
        # `wait_for` could be left held by an orphaned task when a stream was cancelled as its
        # heartbeat timed out, and then every stream and the shutdown waited for good.
        self._changed = asyncio.Event()
        self._poke = asyncio.Event()
        self._poke_pending = False
        self._loop = asyncio.get_running_loop()
        self._tasks: list[asyncio.Task[None]] = []
        self._probe: sqlite3.Connection | None = None  # PRAGMA data_version (SQLite files)
        self._version: int | None = None

    async def start(self) -> None:
        self._probe = _sqlite_probe(self.shop.engine)
        self.latest = self._base = await to_thread.run_sync(self._read_latest)
        self._stale = False
        self.shop.on_change.append(self.poke_threadsafe)
        self._tasks.append(asyncio.create_task(self._watch()))
        self._tasks.append(asyncio.create_task(self._prune()))

    async def close(self) -> None:
        """End every stream (uvicorn waits for open responses before it shuts down)."""
        self.closed.set()
        await self._wake()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a watcher stuck in a database call (a lock, a dead server) must not
            # hold the shutdown; its thread is abandoned and ends on its own.
            await asyncio.wait(self._tasks, timeout=CLOSE_SECONDS)
        self._tasks.clear()
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    def close_soon(self) -> None:
        """Called as the server starts shutting down (from its loop)."""
        if not self.closed.is_set():
            self.closed.set()
            self._loop.create_task(self.close())

    def poke_threadsafe(self) -> None:
        """A change committed in this process: look now (any thread may call this). Without
        a stream nobody needs to know, and one wake-up of the loop serves a burst."""
        if self.listeners and not self._poke_pending:
            self._poke_pending = True
            self._loop.call_soon_threadsafe(self._poked)

    def _poked(self) -> None:
        self._poke_pending = False
        self._poke.set()

    def _read_latest(self) -> int:
        with self.shop.engine.connect() as conn:
            return changes.latest(conn)

    def _newest(self) -> int:
        with self.shop.engine.connect() as conn:
            return changes.newest(conn)

    def read(self, after: int, limit: int) -> list[Change]:
        with self.shop.engine.connect() as conn:
            return changes.read(conn, after, limit)

    def read_with_head(self, after: int, limit: int) -> tuple[list[Change], int]:
        """A page and the newest seq there is (a new consumer follows on from it)."""
        with self.shop.engine.connect() as conn:
            changes.settle(conn)
            return (
                changes.read(conn, after, limit, settled=True),
                changes.latest(conn, settled=True),
            )

    async def _watch(self) -> None:
        while True:
            poked = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), POLL_SECONDS)
                poked = True
            self._poke.clear()
            if not self.listeners:
                self._stale = True
                continue
            try:
                more = await self._look(poked)
            except Exception as e:  # the database is away: streams wait, we retry
                log.warning("change feed: cannot read the newest events: %s", e)
                await asyncio.sleep(1)
                continue
            if more:
                self._poke.set()  # a full page: read on at once
            else:
                await asyncio.sleep(BATCH_SECONDS)  # pokes meanwhile wait for the next read

    async def _look(self, poked: bool) -> bool:
        """Read the events after `latest` into the window and wake the streams; True if
        there may be more at once."""
        if self._stale:  # start from the head, not from wherever the window stopped
            head = await self._in_thread(self._read_latest)
            self._stale = False
            if head != self.latest:
                self._reset(head)
                await self._wake()
            return False
        if not poked and not self._committed_since():
            return False  # SQLite: no connection committed anything since the last look
        if not poked and await self._in_thread(self._newest) <= self.latest:
            return False  # a poll that found nothing new (no lock taken on PostgreSQL)
        batch = await self._in_thread(self.read, self.latest, RECENT_MAX)
        if not batch:
            return False
        if batch[-1].kind == "resync":  # pruned past the window
            self._reset(batch[-1].seq)
        else:
            self._seqs += [c.seq for c in batch]
            self._texts += [sse(c) for c in batch]
            if len(self._seqs) > RECENT_MAX:
                cut = len(self._seqs) - RECENT_MAX
                self._base = self._seqs[cut - 1]
                del self._seqs[:cut], self._texts[:cut]
            self.latest = batch[-1].seq
        await self._wake()
        return len(batch) == RECENT_MAX

    def _committed_since(self) -> bool:
        """Whether any connection may have committed since the last call (always True
        without a probe, or when SQLite cannot answer at once)."""
        if self._probe is None:
            return True
        try:
            version = self._probe.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return True
        changed = version != self._version
        self._version = version
        return changed

    @staticmethod
    async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
        """The watcher's and pruner's database calls: abandoned, not awaited, on close."""
        return await to_thread.run_sync(fn, *args, abandon_on_cancel=True)

    def _reset(self, seq: int) -> None:
        """An empty window at `seq`: streams before it read the table (and get a resync if
        they are older than the retention window)."""
        self._base = self.latest = seq
        self._seqs, self._texts = [], []

    async def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def recent(self, after: int, page: int) -> tuple[str, int, int] | None:
        """Up to `page` events after `after` from the window: their SSE text, the seq of the
        last one and how many; None if the window does not cover `after`."""
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
                gone = await self._in_thread(self.shop.prune_changes, self.retention)
                if gone:
                    log.info("change feed: pruned %d events older than %gs", gone, self.retention)
            except Exception as e:
                log.warning("change feed: pruning failed: %s", e)
            await asyncio.sleep(PRUNE_SECONDS)

    async def wait_past(self, seq: int) -> bool:
        """Wait until an event after `seq` may exist (True), the heartbeat is due (False) or
        the feed closes (False)."""
        if self.latest > seq:
            return True
        if self.closed.is_set():
            return False
        self._poke.set()  # a first listener: the watcher looks now instead of next tick
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.heartbeat):
                while not (self.latest > seq or self.closed.is_set()):
                    await self._changed.wait()
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
                    if n == page:
                        continue
                else:  # behind the window (or past it): the table
                    batch = await to_thread.run_sync(self.read, after, page)
                    if batch:
                        yield "".join(sse(c) for c in batch)
                        after = batch[-1].seq
                        if len(batch) == page and batch[-1].kind != "resync":
                            continue
                    else:
                        await asyncio.sleep(POLL_SECONDS)  # never spin, whatever `latest` says
                if not await self.wait_past(after) and not self.closed.is_set():
                    yield None
        finally:
            self.listeners -= 1


def _sqlite_probe(engine: Any) -> sqlite3.Connection | None:
    """A connection of the feed's own to the shop's SQLite file, for `PRAGMA data_version`
    (its value changes when any other connection commits; this one never writes). None for
    other databases and in-memory ones (another connection would see another database)."""
    url = engine.url
    path = url.database or ""
    if url.get_backend_name() != "sqlite" or path in ("", ":memory:") or url.query:
        return None
    try:  # mode=rw: never create a file
        probe = sqlite3.connect(
            f"file:{quote(path)}?mode=rw", uri=True, check_same_thread=False, isolation_level=None
        )
        probe.execute("PRAGMA busy_timeout=0")  # never wait in the event loop: just look later
    except sqlite3.Error:
        return None
    return probe
