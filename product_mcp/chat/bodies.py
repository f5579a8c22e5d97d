"""The JSON bodies web.py's routes take, each field bounded (a bad one is a 422 naming it).

Why apart from the routes: they are the page's and scripts' contract with web.py, read on
their own; the routes (web.py) only say what is done with them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from models import ATTACHMENT_MAX_URI, ATTACHMENTS_MAX, MESSAGE_MAX_CHARS
from product_mcp.chat.catalog import Attachment
from product_mcp.chat.history import ChatRequest


class CallToolRequest(BaseModel):
    server: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    args: dict[str, Any] = Field(default_factory=dict)
    # The page sends its "ask before tools that change data" box; without it (scripts, the
    # seed) the tool runs as it always did.
    approval: Literal["ask", "auto"] | None = None
    confirmed: bool = False


class ChatTurn(ChatRequest):
    """A chat message, optionally with MCP resources attached (their text goes to the model
    right before the message, and comes back as `attached` for the history)."""

    attachments: list[Attachment] = Field(default_factory=list, max_length=ATTACHMENTS_MAX)


class PromptRequest(BaseModel):
    server: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    arguments: dict[
        Annotated[str, Field(min_length=1, max_length=200)],
        Annotated[str, Field(max_length=MESSAGE_MAX_CHARS)],
    ] = Field(default_factory=dict, max_length=50)


class ResourceRequest(BaseModel):
    server: str = Field(min_length=1, max_length=200)
    uri: str = Field(min_length=1, max_length=ATTACHMENT_MAX_URI)


class ElicitationAnswer(BaseModel):
    elicitationId: str = Field(min_length=1, max_length=100)
    action: Literal["accept", "decline", "cancel"]
    content: dict[str, Any] | None = None


class StopRequest(BaseModel):
    turnId: str = Field(min_length=1, max_length=100)


class ApprovalAnswer(BaseModel):
    approvalId: str = Field(min_length=1, max_length=100)
    approved: bool
