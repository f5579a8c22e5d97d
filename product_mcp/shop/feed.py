"""The change feed's live side in one API process: knows the newest seq, wakes the streams.

Why one watcher per process and not one query loop per stream: the streams of a worker all
wait on one `asyncio.Condition`; only this watcher asks the database whether anything is new
(`SELECT max(seq)`, an index lookup) and only while someone is listening. It learns of a change
- at once, when this process committed it (`Database.on_change`, called from the writer's
  thread),
- within `POLL_SECONDS`, when another worker (SQLite) did, by polling,
- at once on PostgreSQL through LISTEN (a NOTIFY that `changes.append` sends at commit), with
  a slower poll as the fallback: the table stays the truth, a lost notification only delays.
Streams then read their own pages from the table, so a slow client costs a cursor, not memory.
The watcher also prunes events older than the retention window, once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
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
CLOSE_SECONDS = 2.0  # at most this long to stop the watcher and the pruner


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

    async def start(self) -> None:
        self.latest = await to_thread.run_sync(self._read_latest)
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
        if self._tasks:
            # Bounded: a watcher stuck in a database call (a lock, a dead server) must not
            # hold the shutdown; its thread is abandoned and ends on its own.
            await asyncio.wait(self._tasks, timeout=CLOSE_SECONDS)
        self._tasks.clear()

    def close_soon(self) -> None:
        """Called as the server starts shutting down (from its loop)."""
        if not self.closed.is_set():
            self.closed.set()
            self._loop.create_task(self.close())

    def poke_threadsafe(self) -> None:
        """A change committed in this process: look now (any thread may call this)."""
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
                newest = await to_thread.run_sync(self._read_latest, abandon_on_cancel=True)
            except Exception as e:  # the database is away: streams wait, we retry
                log.warning("change feed: cannot read the newest seq: %s", e)
                await asyncio.sleep(1)
                continue
            if newest != self.latest:
                self.latest = newest
                async with self._changed:
                    self._changed.notify_all()

    async def _prune(self) -> None:
        while True:
            try:
                gone = await to_thread.run_sync(
                    self.shop.prune_changes, self.retention, abandon_on_cancel=True
                )
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

    async def stream(self, after: int, page: int) -> AsyncIterator[Change | None]:
        """Every event after `after`, in order, as they come; None when a heartbeat is due.
        Ends when the feed closes."""
        self.listeners += 1
        try:
            while not self.closed.is_set():
                batch = await to_thread.run_sync(self.read, after, page)
                for change in batch:
                    yield change
                if batch:
                    after = batch[-1].seq
                    if len(batch) == page and batch[-1].kind != "resync":
                        continue
                else:
                    await asyncio.sleep(POLL_SECONDS)  # never spin, whatever `latest` says
                if not await self.wait_past(after) and not self.closed.is_set():
                    yield None
        finally:
            self.listeners -= 1
