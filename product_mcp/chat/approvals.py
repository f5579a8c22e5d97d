"""Pending yes/no questions to the user, answered through POST /api/chat/approve.

Why a broker: the chat loop waits inside a streamed response while the answer arrives on
another request; ids are random so one page cannot answer another's question by guessing.
"""

from __future__ import annotations

import uuid

import anyio


class Approvals:
    """Pending yes/no questions to the user, answered through POST /api/chat/approve."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[anyio.Event, list[bool]]] = {}

    def open(self) -> str:
        approval_id = uuid.uuid4().hex
        self._waiting[approval_id] = (anyio.Event(), [])
        return approval_id

    def resolve(self, approval_id: str, approved: bool) -> bool:
        slot = self._waiting.get(approval_id)
        if slot is None or slot[0].is_set():
            return False
        slot[1].append(approved)
        slot[0].set()
        return True

    async def wait(self, approval_id: str, time_limit: float) -> bool | None:
        """True/False once answered; None when nobody answered in time."""
        event, answer = self._waiting[approval_id]
        try:
            with anyio.move_on_after(time_limit):
                await event.wait()
            return answer[0] if answer else None
        finally:
            self._waiting.pop(approval_id, None)
