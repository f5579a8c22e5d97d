"""Give memory back after a client that parked a lot of it is gone.

Why: an SSE client that never reads had up to 32 messages of 1 MB accepted before the guard
refused more; when its stream was dropped, the SDK's request tasks for them were cancelled,
and RSS stayed ~130 MiB above idle for as long as anyone watched. Nothing of ours kept them:

- anyio's task group (`TaskGroup._spawn.task_done`, anyio 4.16) keeps a cancelled task's
  CancelledError in a local of its own frame, so the error's traceback holds that frame and
  the frame holds the error: a reference cycle. Through the error's `__context__` the cycle
  holds every frame of the cancelled task, with the 1 MB request and reply in their locals.
  Only the cyclic garbage collector frees that, and an idle server does not allocate enough
  to ever start a full collection.
- Once freed, glibc keeps the pages in its heap (the blocks are below its adaptive mmap
  threshold) until `malloc_trim` hands them back.

So after such a drop, `Reclaimer.soon()` runs one full collection and `malloc_trim(0)` a
moment later (the cancelled tasks finish first). A full collection costs ~0.1 s of CPU on a
busy heap, so it runs at most once every `every` seconds however many clients are dropped.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Callable

log = logging.getLogger("product_mcp.memory")


def _find_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None elsewhere (musl, macOS, Windows): nothing to trim."""
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (AttributeError, OSError, TypeError):
        return None


_malloc_trim = _find_trim()


def reclaim() -> int:
    """Free unreachable reference cycles now and return freed heap pages to the OS;
    how many unreachable objects the collection found."""
    found = gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    return found


class Reclaimer:
    """`reclaim()` `delay` s after `soon()`, and never twice within `every` s."""

    def __init__(
        self, delay: float = 1.0, every: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.delay = delay
        self.every = every
        self.clock = clock
        self.last = float("-inf")  # time.monotonic() of the last run
        self._pending: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._asked = float("-inf")  # time.monotonic() of the last soon()

    def soon(self) -> None:
        """Ask for a reclaim on the running loop (one pending at a time)."""
        loop = asyncio.get_running_loop()
        self._asked = self.clock()
        if self._pending is not None and self._loop is loop and not loop.is_closed():
            return  # already due: it will see this drop's garbage too, or run once more
        wait = max(self.delay, self.last + self.every - self.clock())
        self._loop, self._pending = loop, loop.call_later(wait, self._run)

    def _run(self) -> None:
        self._pending = None
        started = self.last = self.clock()
        found = reclaim()
        log.info("reclaimed memory after a dropped client (%d unreachable objects)", found)
        if self._asked > started - self.delay and self._loop is not None:
            # Asked again less than `delay` before this run (500 streams closing take a
            # while): what those drops left may not have been garbage yet. Once more, later.
            self._pending = self._loop.call_later(self.every, self._run)


reclaimer = Reclaimer()  # one per process: the heap is the process's
