"""Give every MCP tool a unique OpenAI-safe function name, and map it back by table.

OpenAI wants `^[a-zA-Z0-9_-]{1,64}$`; MCP allows dots, slashes and 128 characters, and two
servers may both have `get_products`. The seed split `server_tool` on the first underscore,
which breaks for any server or tool name holding one. We never parse names: we look them up.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from product_mcp.chat.results import ToolEntry

MAX_LEN = 64
VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_BAD = re.compile(r"[^a-zA-Z0-9_-]+")


def _clean(text: str) -> str:
    return _BAD.sub("_", text).strip("_") or "tool"


def _fit(name: str, server: str, tool: str) -> str:
    """Shorten to 64 characters, keeping it unique with a hash of the real identity."""
    if len(name) <= MAX_LEN:
        return name
    digest = hashlib.sha1(f"{server}\0{tool}".encode()).hexdigest()[:8]
    return f"{name[: MAX_LEN - 9]}_{digest}"


def build_table(entries: Iterable[ToolEntry]) -> dict[str, ToolEntry]:
    """openai_name → tool. A tool keeps its own name when that is valid and unique;
    otherwise it is `server__tool` (cleaned, shortened with a hash if needed)."""
    items = list(entries)
    counts = Counter(e.name for e in items)
    table: dict[str, ToolEntry] = {}
    for e in items:
        if counts[e.name] == 1 and VALID.match(e.name):
            candidate = e.name
        else:
            candidate = _fit(f"{_clean(e.server)}__{_clean(e.name)}", e.server, e.name)
        if candidate in table:
            digest = hashlib.sha1(f"{e.server}\0{e.name}".encode()).hexdigest()[:8]
            candidate = f"{candidate[: MAX_LEN - 9]}_{digest}"
        n = 2
        while candidate in table:  # pathological: identical hashes; stay unique anyway
            candidate = f"{candidate[: MAX_LEN - 4]}_{n}"
            n += 1
        table[candidate] = e
    return table


def reverse(table: dict[str, ToolEntry]) -> dict[tuple[str, str], str]:
    return {(e.server, e.name): name for name, e in table.items()}


def functions(table: dict[str, ToolEntry]) -> list[dict[str, Any]]:
    """The tools as a Chat Completions request offers them (`tools`), under their table names."""
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": f"[{e.server}] {e.tool.description or e.name}"[:4000],
                "parameters": {"type": "object", "properties": {}, **e.input_schema},
            },
        }
        for name, e in table.items()
    ]
