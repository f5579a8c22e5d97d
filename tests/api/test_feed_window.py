"""The change feed's in-memory window (feed.py): a stream takes events from it only for seqs it
covers completely, and pages through it in order; anything older goes to the table."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from models import Change
from product_mcp.shop.feed import ChangeFeed, sse


def _feed(base: int, seqs: list[int]) -> ChangeFeed:
    async def make() -> ChangeFeed:
        return ChangeFeed(
            SimpleNamespace(dialect="sqlite", on_change=[]), retention=60, heartbeat=15
        )  # type: ignore[arg-type]

    feed = asyncio.run(make())
    feed._base, feed.latest = base, seqs[-1] if seqs else base
    changes = [
        Change(seq=s, productId=1, kind="purchased", quantity=s, at="2026-01-01T00:00:00Z")
        for s in seqs
    ]
    feed._seqs, feed._texts = list(seqs), [sse(c) for c in changes]
    return feed


def test_window_covers_only_from_its_base() -> None:
    feed = _feed(10, [11, 12, 14, 15])  # 13 rolled back on PostgreSQL: seqs may skip
    assert feed.recent(9, 100) is None  # older than the window: read the table
    assert feed.recent(16, 100) is None  # newer than anything known
    text, last, n = feed.recent(10, 100)  # type: ignore[misc]
    assert (last, n) == (15, 4) and text.startswith("id: 11\n") and "id: 15\n" in text
    assert feed.recent(15, 100) == ("", 15, 0)  # up to date: nothing yet


def test_window_pages_in_order() -> None:
    feed = _feed(10, [11, 12, 14, 15])
    text, last, n = feed.recent(11, 2)  # type: ignore[misc]
    assert (last, n) == (14, 2) and [ln for ln in text.splitlines() if ln.startswith("id:")] == [
        "id: 12",
        "id: 14",
    ]
    text, last, n = feed.recent(13, 2)  # between two seqs: the next one after it
    assert (last, n) == (15, 2)
