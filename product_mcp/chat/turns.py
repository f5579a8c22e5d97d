"""Chat turns in progress, so POST /api/chat/stop can end one and keep what it said.

Why cancel scopes and not the task: the loop must survive its own stop to write down what
was said (the text so far, each cut tool call with an error) and send `done` with a history
the next turn accepts. Each phase that Stop may cut (the model's stream, a round's tool calls)
runs in a scope registered here; cancelling it also cancels in-flight MCP calls, which makes
the SDK send `notifications/cancelled` to their servers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import anyio

STOPPED = "stopped by the user; the call was cancelled"


class Turn:
    """One reply in progress."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self.stopped = False
        self._scopes: set[anyio.CancelScope] = set()

    @contextmanager
    def stoppable(self) -> Iterator[anyio.CancelScope]:
        with anyio.CancelScope() as scope:
            if self.stopped:
                scope.cancel()
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)

    def stop(self) -> None:
        self.stopped = True
        for scope in list(self._scopes):
            scope.cancel()


class Turns:
    """The turns streaming now, by random id (one page cannot stop another's by guessing)."""

    def __init__(self) -> None:
        self._running: dict[str, Turn] = {}

    def open(self) -> Turn:
        turn = Turn()
        self._running[turn.id] = turn
        return turn

    def close(self, turn: Turn) -> None:
        self._running.pop(turn.id, None)

    def stop(self, turn_id: str) -> bool:
        turn = self._running.get(turn_id)
        if turn is None:
            return False
        turn.stop()
        return True
