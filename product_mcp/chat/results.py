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
    def input_schema(self) -> dict[str, Any]:
        return self.tool.input_schema or {"type": "object", "properties": {}}


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
        return f"command not found: {exc.filename or exc}"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def result_text(result: CallToolResult) -> str:
    """Flatten a tool result into the text a model (or a person) reads.

    Structured content wins when present: a list return arrives as one text block per item,
    which joined is not JSON, while `structuredContent` is (unwrapped from {"result": ...}).
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
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)  # type: ignore[union-attr]
        elif kind in ("image", "audio"):
            parts.append(f"[{kind}: {getattr(block, 'mime_type', '')}]")
        elif kind == "resource":
            res = block.resource  # type: ignore[union-attr]
            text = getattr(res, "text", None)
            parts.append(text if text is not None else f"[resource: {res.uri}]")
        elif kind == "resource_link":
            parts.append(f"[resource link: {getattr(block, 'uri', '')}]")
        else:
            parts.append(str(block))
    return "\n".join(parts) if parts else "(the tool returned no content)"
