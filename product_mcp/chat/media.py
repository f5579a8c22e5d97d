"""Pictures, sounds and embedded resources in tool results: what the page may show, and what
the model reads instead.

Why so picky: the data comes from any MCP server and ends up in the user's page, so only types
a browser shows inertly pass (PNG, JPEG, GIF, WebP; WAV, MP3, OGG, WebM audio; no SVG, which
can carry script), only when the bytes really are of that type, and only up to a size the page
can hold. Everything else is described, not passed. The model never gets base64: a short
stand-in such as "[image: image/png, 12 KB]" tells it what the user sees.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from mcp.types import CallToolResult

MEDIA_MAX_BYTES = 2 * 1024 * 1024  # one picture or sound passed to the page (decoded)
MEDIA_MAX_TOTAL = 4 * 1024 * 1024  # all of them in one tool result
CONTENT_MAX_ITEMS = 100  # content blocks listed for the page per result
TEXT_MAX_CHARS = 100_000  # a text block in the list (the full text is in `result`)
URI_MAX_CHARS = 2048

_MIME = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")
_ALIASES = {
    "image/jpg": "image/jpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/mp3": "audio/mpeg",
}


def _riff(kind: bytes) -> Callable[[bytes], bool]:
    return lambda b: b[:4] == b"RIFF" and b[8:12] == kind


def _starts(*heads: bytes) -> Callable[[bytes], bool]:
    return lambda b: b.startswith(heads)


# mime type → (what it is called, how its bytes begin)
SAFE: dict[str, tuple[str, Callable[[bytes], bool]]] = {
    "image/png": ("PNG image", _starts(b"\x89PNG\r\n\x1a\n")),
    "image/jpeg": ("JPEG image", _starts(b"\xff\xd8\xff")),
    "image/gif": ("GIF image", _starts(b"GIF87a", b"GIF89a")),
    "image/webp": ("WebP image", _riff(b"WEBP")),
    "audio/wav": ("WAV sound", _riff(b"WAVE")),
    "audio/mpeg": ("MP3 sound", _starts(b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2")),
    "audio/ogg": ("OGG sound", _starts(b"OggS")),
    "audio/webm": ("WebM sound", _starts(b"\x1a\x45\xdf\xa3")),
}
SAFE_NAMES = "PNG, JPEG, GIF or WebP images and WAV, MP3, OGG or WebM sounds"


def clean_mime(mime: Any) -> str | None:
    """A lower-case `type/subtype` (aliases folded), or None when absent or not a mime type."""
    if not isinstance(mime, str) or not mime.strip():
        return None
    mime = mime.split(";", 1)[0].strip().lower()
    mime = _ALIASES.get(mime, mime)
    return mime if _MIME.match(mime) else "unknown type"


def b64_size(data: str) -> int:
    """The decoded size of base64 `data`, without decoding it."""
    data = data.strip()
    return max(0, len(data) * 3 // 4 - data[-2:].count("="))


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{round(n / 1024)} KB"
    return f"{n / 1024 / 1024:.1f} MB"


def stand_in(block: Any) -> str | None:
    """What the model reads for a non-text block (None for text)."""
    kind = getattr(block, "type", "")
    if kind in ("image", "audio"):
        mime = clean_mime(block.mime_type) or "unknown type"
        return f"[{kind}: {mime}, {human_size(b64_size(block.data))}]"
    if kind == "resource":
        res = block.resource
        text = getattr(res, "text", None)
        if text is not None:
            return text
        what = ", ".join(
            p for p in (clean_mime(res.mime_type), human_size(b64_size(res.blob))) if p
        )
        return f"[resource: {str(res.uri)[:URI_MAX_CHARS]}, {what}]"
    if kind == "resource_link":
        return f"[resource link: {str(getattr(block, 'uri', ''))[:URI_MAX_CHARS]}]"
    return None


class _Budget:
    def __init__(self) -> None:
        self.left = MEDIA_MAX_TOTAL


def _media(family: str | None, mime: str | None, data: str, budget: _Budget) -> dict[str, Any]:
    """`mimeType`, `bytes` and either `data` (safe to show) or `omitted` (why not)."""
    size = b64_size(data)
    item: dict[str, Any] = {"mimeType": mime, "bytes": size} if mime else {"bytes": size}
    safe = SAFE.get(mime or "")
    if safe is None or (family is not None and not (mime or "").startswith(family + "/")):
        shown = mime or "content without a mime type"
        return item | {"omitted": f"{shown} is not shown (only {SAFE_NAMES})"}
    if size > MEDIA_MAX_BYTES:
        limit = human_size(MEDIA_MAX_BYTES)
        return item | {"omitted": f"{human_size(size)} is larger than the {limit} a page is given"}
    if size > budget.left:
        total = human_size(MEDIA_MAX_TOTAL)
        return item | {"omitted": f"this result's pictures and sounds exceed {total} in total"}
    try:
        raw = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        return item | {"omitted": "the data is not valid base64"}
    label, looks_right = safe
    if not looks_right(raw):
        return item | {"omitted": f"the data is not a {label}"}
    budget.left -= len(raw)
    return item | {"bytes": len(raw), "data": base64.b64encode(raw).decode()}


def _item(block: Any, budget: _Budget) -> dict[str, Any] | None:
    kind = getattr(block, "type", "")
    if kind == "text":
        return {"type": "text", "text": _cut(block.text, TEXT_MAX_CHARS)}
    if kind in ("image", "audio"):
        return {"type": kind, **_media(kind, clean_mime(block.mime_type), block.data, budget)}
    if kind == "resource":
        res = block.resource
        item: dict[str, Any] = {"type": "resource", "uri": str(res.uri)[:URI_MAX_CHARS]}
        mime = clean_mime(res.mime_type)
        text = getattr(res, "text", None)
        if mime:
            item["mimeType"] = mime
        if text is not None:
            return item | {"text": _cut(text, TEXT_MAX_CHARS)}
        return item | _media(None, mime, res.blob, budget)
    if kind == "resource_link":
        link = {"type": "resource_link", "uri": str(block.uri)[:URI_MAX_CHARS], "name": block.name}
        mime = clean_mime(block.mime_type)
        return link | ({"mimeType": mime} if mime else {})
    return None


def _cut(text: str, cap: int) -> str:
    if len(text) <= cap:
        return text
    return text[:cap] + f"\n[truncated: {len(text) - cap} more characters]"


def result_content(result: CallToolResult) -> list[dict[str, Any]] | None:
    """The result's blocks for the page, in order, when any is not plain text (else None:
    `result` says it all). Pictures and sounds are bounded and checked (see module doc)."""
    if all(getattr(b, "type", "") == "text" for b in result.content):
        return None
    budget = _Budget()
    items: list[dict[str, Any]] = []
    for block in result.content[:CONTENT_MAX_ITEMS]:
        item = _item(block, budget)
        if item is not None:
            items.append(item)
    left_out = len(result.content) - CONTENT_MAX_ITEMS
    if left_out > 0:
        items.append({"type": "text", "text": f"[{left_out} more content blocks left out]"})
    return items
