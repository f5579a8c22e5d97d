"""The change feed's window of recent events (product_mcp/shop/feed.py): a stream takes events
from it only for seqs it covers completely, pages through it in order, and anything older or
newer than the window goes to the table. And the watcher's look for other writers' events on
SQLite, which reads the table only after some connection committed."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from types import SimpleNamespace

from models import Change, PurchaseRequest
from product_mcp.shop import Shop, make_engine
from product_mcp.shop.feed import ChangeFeed, sse


def _feed(base: int, seqs: list[int]) -> ChangeFeed:
    async def make() -> ChangeFeed:
        shop = SimpleNamespace(on_change=[])
        return ChangeFeed(shop, retention=60, heartbeat=15)  # type: ignore[arg-type]

    feed = asyncio.run(make())
    feed._reset(base)
    feed._seqs = list(seqs)
    feed._texts = [
        sse(Change(seq=s, productId=1, kind="purchased", quantity=s, at="2026-01-01T00:00:00Z"))
        for s in seqs
    ]
    feed.latest = seqs[-1] if seqs else base
    return feed


def _ids(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("id:")]


def test_window_covers_only_from_its_base_to_its_latest() -> None:
    feed = _feed(10, [11, 12, 14, 15])  # 13 rolled back on PostgreSQL: seqs may skip
    assert feed.recent(9, 100) is None  # older than the window: the table
    assert feed.recent(16, 100) is None  # newer than anything read yet: the table
    text, last, n = feed.recent(10, 100)  # type: ignore[misc]
    assert (last, n) == (15, 4) and _ids(text) == ["id: 11", "id: 12", "id: 14", "id: 15"]
    assert feed.recent(15, 100) == ("", 15, 0)  # up to date: nothing yet


def test_window_pages_in_order() -> None:
    feed = _feed(10, [11, 12, 14, 15])
    text, last, n = feed.recent(11, 2)  # type: ignore[misc]
    assert (last, n) == (14, 2) and _ids(text) == ["id: 12", "id: 14"]
    text, last, n = feed.recent(13, 2)  # between two seqs: from the next one after it
    assert (last, n) == (15, 2) and _ids(text) == ["id: 14", "id: 15"]


def test_a_reset_window_sends_older_streams_to_the_table() -> None:
    feed = _feed(10, [11, 12])
    feed._reset(40)  # pruned past the window, or the watcher caught up after nobody listened
    assert feed.recent(12, 100) is None
    assert feed.recent(40, 100) == ("", 40, 0)


def test_an_idle_watch_on_sqlite_reads_nothing_and_still_hears_another_writer(
    tmp_path: Path,
) -> None:
    """With a listener, the watcher looks 6-7 times a second; on a SQLite file it asks
    `PRAGMA data_version` first and reads the table only after some connection committed.
    A purchase by another process's connections (a second Shop on the same file) is heard
    without a poke."""
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    shop = Shop(make_engine(url))
    shop.init()
    other = Shop(make_engine(url))  # another API worker: its commits poke nobody here

    async def run() -> tuple[int, int, int]:
        feed = ChangeFeed(shop, retention=60, heartbeat=15)
        await feed.start()
        reads, newest = [], feed._newest
        feed._newest = lambda: reads.append(1) or newest()  # type: ignore[method-assign]
        feed.listeners = 1  # someone follows the feed
        try:
            await asyncio.sleep(1.0)  # idle: 6-7 looks
            idle = len(reads)
            before = feed.latest
            buy = PurchaseRequest(customerName="Ann", items=[{"productId": 1, "quantity": 1}])
            await asyncio.to_thread(other.purchase, buy)
            for _ in range(100):
                if feed.latest > before:
                    break
                await asyncio.sleep(0.05)
            return idle, before, feed.latest
        finally:
            await feed.close()

    idle, before, latest = asyncio.run(run())
    assert idle <= 1  # the first look only (nothing to compare with yet)
    assert latest > before  # heard within ~0.15 s of the other writer's commit
    for s in (shop, other):
        s.engine.dispose()


def test_listeners_cancelled_at_any_moment_never_stall_the_feed() -> None:
    """Found from outside: clients dropping `/api/changes` streams while changes came stalled
    the feed for everyone, for good (`RuntimeError: Lock is not acquired`, then no event, no
    heartbeat, and a shutdown that never ended): on Python 3.11 `wait_for` ran the
    condition's wait as a task of its own, and a cancel landing as its heartbeat timeout
    cancelled that task left the lock held by an orphan. Here waiters with a 2 ms heartbeat
    are cancelled at all moments while changes wake them; then a new waiter still hears the
    next change and the feed closes."""

    async def run() -> None:
        rng = random.Random(14)
        shop = SimpleNamespace(on_change=[])
        feed = ChangeFeed(shop, retention=60, heartbeat=0.002)  # type: ignore[arg-type]
        errors: list[BaseException | None] = []
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx.get("exception")))

        async def changes() -> None:
            while True:
                feed.latest += 1
                await feed._wake()
                await asyncio.sleep(rng.random() * 0.003)

        changing = asyncio.create_task(changes())
        for _ in range(150):
            waiters = [asyncio.create_task(feed.wait_past(feed.latest)) for _ in range(30)]
            await asyncio.sleep(rng.random() * 0.004)
            for task in waiters:
                task.cancel()
                if rng.random() < 0.5:
                    await asyncio.sleep(0)
            async with asyncio.timeout(5):  # a stalled feed fails here, never hangs
                done = await asyncio.gather(*waiters, return_exceptions=True)
            failed = [d for d in done if not isinstance(d, bool | asyncio.CancelledError)]
            assert failed == [] and errors == []
        changing.cancel()
        listener = asyncio.create_task(feed.wait_past(feed.latest))
        await asyncio.sleep(0)
        feed.latest += 1
        async with asyncio.timeout(2):
            await feed._wake()
            assert await listener is True
            await feed.close()

    # Not asyncio.run: its clean-up waits for every task, and a stalled feed's orphan never ends
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
