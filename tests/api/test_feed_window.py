"""The change feed's window of recent events (product_mcp/shop/feed.py): a stream takes events
from it only for seqs it covers completely, pages through it in order, and anything older or
newer than the window goes to the table."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from models import Change
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
