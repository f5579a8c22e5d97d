"""What the web chat knows about a tool and its results, independent of any connection.

Why apart from the connections: the loop, the routes and the name table all need a tool's
identity and a result's text, and none of them should import the connection machinery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult, Tool

from product_mcp.chat.media import stand_in

# The schema of a tool that declares none (one object, so its compiled validator is reused:
# arguments.py). Never mutated.
NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class ToolEntry:
    """A tool together with the server that offers it."""

    server: str
    tool: Tool

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def read_only(self) -> bool:
        """Only an explicit readOnlyHint counts: anything else may change data."""
        ann = self.tool.annotations
        return bool(ann is not None and ann.read_only_hint is True)

    @property
    def confirms_by_elicitation(self) -> bool:
        """The server asks the user itself before this tool changes anything (its `_meta`
        says so: main.py's create_purchase), so web.py does not ask a second time."""
        meta = self.tool.meta
        return isinstance(meta, dict) and meta.get("product-mcp/confirms") == "elicitation"

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.tool.input_schema or NO_ARGUMENTS


def describe_error(exc: BaseException) -> str:
    """One readable line for an exception, digging into exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, MCPError):
        return exc.error.message
    if isinstance(exc, httpx2.ConnectError):
        return f"connection refused or unreachable ({exc})"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"HTTP {exc.response.status_code} from {exc.request.url}"
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename}" if exc.filename else str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def result_text(result: CallToolResult) -> str:
    """Flatten a tool result into the text a model (or a person) reads.

    Structured content wins when present: a list return arrives as one text block per item,
    which joined is not JSON, while `structuredContent` is (unwrapped from {"result": ...}).
    Pictures, sounds and binary resources become short stand-ins ("[image: image/png, 12 KB]").
    """
    structured = result.structured_content
    if structured is not None and not result.is_error:
        if isinstance(structured, dict) and list(structured) == ["result"]:
            structured = structured["result"]
        if isinstance(structured, str):
            return structured
        return json.dumps(structured, ensure_ascii=False)
    parts: list[str] = []
    for block in result.content:
        if getattr(block, "type", "") == "text":
            parts.append(block.text)  # type: ignore[union-attr]
        else:
            parts.append(stand_in(block) or str(block))
    return "\n".join(parts) if parts else "(the tool returned no content)"


def model_text(result: CallToolResult) -> str:
    """What the model reads: `result_text`, plus stand-ins for the pictures and sounds that
    structured content would otherwise hide from it (the user sees them)."""
    text = result_text(result)
    if result.structured_content is None or result.is_error:
        return text
    notes = [stand_in(b) for b in result.content if _is_media(b)]
    return "\n".join([text, *(n for n in notes if n)])


def _is_media(block: Any) -> bool:
    kind = getattr(block, "type", "")
    if kind == "resource":
        return getattr(block.resource, "text", None) is None
    return kind in ("image", "audio")
