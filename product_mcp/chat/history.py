"""The conversation the page sends back each turn, validated, and the turn it gets to keep.

Why so strict: the history comes from the browser, so it is hostile input like any other. Every
message is bounded (models.py names the limits, the page reads them from /api/config), tool
messages must answer the tool calls right before them, and what we return is cut to fit, so a
long reply can never make every later request too big.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models import (
    HISTORY_MAX_ARGUMENTS,
    HISTORY_MAX_CHARS,
    HISTORY_MAX_CONTENT,
    HISTORY_MAX_ID,
    HISTORY_MAX_MESSAGES,
    HISTORY_MAX_NAME,
    HISTORY_MAX_TOOL_CALLS,
    MESSAGE_MAX_CHARS,
)


class FunctionCall(BaseModel):
    name: str = Field(min_length=1, max_length=HISTORY_MAX_NAME)
    arguments: str = Field(default="{}", max_length=HISTORY_MAX_ARGUMENTS)


class HistoryToolCall(BaseModel):
    id: str = Field(min_length=1, max_length=HISTORY_MAX_ID)
    type: Literal["function"] = "function"
    function: FunctionCall


class HistoryMessage(BaseModel):
    """One earlier message as the page stores it (OpenAI chat format, no system role)."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["user", "assistant", "tool"]
    content: str | None = Field(default=None, max_length=HISTORY_MAX_CONTENT)
    tool_calls: list[HistoryToolCall] | None = Field(
        default=None, max_length=HISTORY_MAX_TOOL_CALLS
    )
    tool_call_id: str | None = Field(default=None, max_length=HISTORY_MAX_ID)

    @model_validator(mode="after")
    def _shape(self) -> HistoryMessage:
        if self.role == "user" and (self.content is None or self.tool_calls or self.tool_call_id):
            raise ValueError("a user message needs text content and nothing else")
        if self.role == "assistant" and self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs content or tool_calls")
        if self.role == "tool" and (not self.tool_call_id or self.content is None):
            raise ValueError("a tool message needs tool_call_id and content")
        return self

    def text_size(self) -> int:
        """Characters of text this message carries (what HISTORY_MAX_CHARS counts)."""
        size = len(self.content or "") + len(self.tool_call_id or "")
        for c in self.tool_calls or []:
            size += len(c.id) + len(c.function.name) + len(c.function.arguments)
        return size

    def to_openai(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [c.model_dump() for c in self.tool_calls]
        if self.tool_call_id:
            msg["tool_call_id"] = self.tool_call_id
        return msg


def check_history(history: list[HistoryMessage]) -> list[HistoryMessage]:
    """Tool messages must answer the assistant tool calls right before them, all of them."""
    pending: set[str] = set()
    for i, msg in enumerate(history):
        if msg.role == "tool":
            if msg.tool_call_id not in pending:
                raise ValueError(
                    f"history[{i}]: tool message answers unknown tool_call_id {msg.tool_call_id!r}"
                )
            pending.discard(msg.tool_call_id)
            continue
        if pending:
            raise ValueError(
                f"history[{i}]: tool calls {sorted(pending)} were not answered by tool messages"
            )
        if msg.role == "assistant" and msg.tool_calls:
            ids = [c.id for c in msg.tool_calls]
            if len(set(ids)) != len(ids):
                raise ValueError(f"history[{i}]: duplicate tool call ids")
            pending = set(ids)
    if pending:
        raise ValueError(f"history ends with unanswered tool calls {sorted(pending)}")
    return history


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, max_length=MESSAGE_MAX_CHARS)
    history: list[HistoryMessage] = Field(default_factory=list, max_length=HISTORY_MAX_MESSAGES)
    approval: Literal["auto", "ask"] | None = Field(
        default=None, description="Stream only: ask before tools that change data (default ask)"
    )

    @field_validator("message")
    @classmethod
    def _not_blank(cls, message: str) -> str:
        if not message.strip():  # a model asked about nothing answers at a cost, about nothing
            raise ValueError("must not be blank")
        return message

    @model_validator(mode="after")
    def _valid_history(self) -> ChatRequest:
        total = sum(m.text_size() for m in self.history)
        if total > HISTORY_MAX_CHARS:
            raise ValueError(
                f"history carries {total} characters of text, more than {HISTORY_MAX_CHARS}: "
                "send only the most recent turns"
            )
        check_history(self.history)
        return self


def truncate(text: str, cap: int) -> str:
    """`text` cut to `cap` characters plus a visible marker saying how much was cut."""
    if len(text) <= cap:
        return text
    return text[:cap] + f"\n[truncated: {len(text) - cap} more characters]"


def fit_for_history(msg: dict[str, Any], content_cap: int) -> dict[str, Any]:
    """A copy of a message from this turn that the next request's history checks accept:
    long text is cut with a marker, oversized tool-call fields are shortened."""
    out = dict(msg)
    # leave room for the marker under the per-message limit
    cap = max(1, min(content_cap, HISTORY_MAX_CONTENT - 100))
    if isinstance(out.get("content"), str):
        out["content"] = truncate(out["content"], cap)
    if isinstance(out.get("tool_call_id"), str):
        out["tool_call_id"] = out["tool_call_id"][:HISTORY_MAX_ID]
    if out.get("tool_calls"):
        calls = []
        for c in out["tool_calls"]:
            fn = dict(c["function"])
            fn["name"] = fn["name"][:HISTORY_MAX_NAME] or "unknown"
            if len(fn["arguments"]) > HISTORY_MAX_ARGUMENTS:
                fn["arguments"] = json.dumps(
                    {"_truncated": f"{len(fn['arguments'])} characters of arguments left out"}
                )
            calls.append({**c, "id": c["id"][:HISTORY_MAX_ID], "function": fn})
        out["tool_calls"] = calls
    return out
