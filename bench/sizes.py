"""How much of everything the bench does: the full run and the smoke run the tests use.

Its own module so every measuring module can read `b.sizes` without importing the runner.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    """How much of everything; `smoke` keeps the same shape with tiny numbers."""

    products: int
    warmup: int
    calls: int
    per_connection_calls: int
    throughput_seconds: float
    sessions: tuple[int, ...]
    purchase_attempts: int
    search_calls: int
    chat_turns: int
    mem_sessions: int
    mem_sse: int
    cold_starts: int
    restores: int  # sessions restored by another replica (bench/scale.py)
    page_turns: int  # the long chat's turns (bench/page.py)
    page_sends: int  # real turns sent through the page on a fresh chat, and again at its end
    page_renders: int  # new messages timed at the end of that chat
    live_changes: int  # purchases timed until the subscribed client hears (bench/live.py)
    live_sessions: int  # subscribed sessions one change fans out to
    live_fanouts: int  # changes timed until the last of them hears
    live_page_changes: int  # purchases timed until a page's stock changes (bench/live_page.py)


FULL = Sizes(
    products=100_000,
    warmup=50,
    calls=400,
    per_connection_calls=40,
    throughput_seconds=4.0,
    sessions=(1, 8, 64),
    purchase_attempts=2_000,
    search_calls=120,
    chat_turns=60,
    mem_sessions=1_000,
    mem_sse=500,
    cold_starts=3,
    restores=200,
    page_turns=200,
    page_sends=8,
    page_renders=30,
    live_changes=100,
    live_sessions=500,
    live_fanouts=5,
    live_page_changes=30,
)
SMOKE = Sizes(
    products=2_000,
    warmup=3,
    calls=15,
    per_connection_calls=3,
    throughput_seconds=0.5,
    sessions=(1, 8, 64),
    purchase_attempts=96,
    search_calls=8,
    chat_turns=3,
    mem_sessions=40,
    mem_sse=20,
    cold_starts=1,
    restores=5,
    page_turns=6,
    page_sends=2,
    page_renders=3,
    live_changes=5,
    live_sessions=20,
    live_fanouts=2,
    live_page_changes=3,
)
