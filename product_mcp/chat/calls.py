"""The tool calls a model asks for, made safe to run and to send back, whatever it streamed.

Why so defensive: a model's output is untrusted input. Models repeat tool-call ids, leave them
out, reuse one stream index for two calls, send arguments as objects, nest arrays 100,000
deep, write NaN or 5,000-digit numbers, invent names of any length, or ask for hundreds of
calls at once. Each of those once ended a turn with a 500, or returned `messages` the next
turn's history checks refused. Here every call gets an id unique in the conversation (the
model's own when it is usable), bounded name and arguments, and a sentence when it cannot run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from models import HISTORY_MAX_ID, HISTORY_MAX_NAME, HISTORY_MAX_TOOL_CALLS
from product_mcp.chat.names import VALID
from product_mcp.chat.results import ToolEntry

MAX_CALLS = HISTORY_MAX_TOOL_CALLS  # calls run per model response; the rest are dropped
# Characters of arguments kept and parsed per call, and per model response. Larger than the
# history's HISTORY_MAX_ARGUMENTS on purpose: a model may write a long document into a call;
# the page's history keeps a stand-in for it (fit_for_history).
MAX_ARGUMENTS = 1024 * 1024
MAX_ARGUMENTS_TOTAL = 4 * 1024 * 1024
MAX_DEPTH = 64  # nesting levels of arguments accepted
ARGUMENTS_SHOWN = 2_000  # characters of unusable arguments shown to the page
NAME_SHOWN = 100  # characters of an unknown name quoted in the error
INVALID_NAME = "invalid_tool_name"  # what the model is told it called when its name was unusable


@dataclass
class ToolCall:
    """One call as the model asked for it, and what became of it."""

    id: str
    function: str  # the name the model used, cut to HISTORY_MAX_NAME characters
    raw_arguments: str  # cut to what the limits let us keep
    arguments_size: int = 0  # how many characters the model really sent
    name_size: int = 0
    entry: ToolEntry | None = None
    arguments: Any = None
    result: str | None = None
    model_text: str | None = None  # what the model reads when it differs from `result`
    content: list[dict[str, Any]] | None = None  # non-text result blocks for the page
    error: str | None = None
    rejected: bool = False
    stopped: bool = False  # cut by Stop
    unavailable: bool = False  # its server is down
    reported: bool = False  # its tool_result was sent
    duration_ms: int = 0
    started: float | None = None  # time.monotonic() when it began (a stopped call's duration)

    def shown_arguments(self) -> Any:
        if self.arguments is not None:
            return self.arguments
        if self.arguments_size <= ARGUMENTS_SHOWN:
            return self.raw_arguments
        return f"{self.raw_arguments[:ARGUMENTS_SHOWN]}… ({self.arguments_size} characters)"

    def shown_name(self) -> str:
        name = "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in self.function)
        if self.name_size > NAME_SHOWN or len(name) > NAME_SHOWN:
            return f"{name[:NAME_SHOWN]}… ({self.name_size} characters)"
        return name

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "function": self.shown_name(),
            "server": self.entry.server if self.entry else None,
            "tool": self.entry.name if self.entry else self.shown_name(),
            "arguments": self.shown_arguments(),
        }

    def outcome(self) -> dict[str, Any]:
        """The `tool_result` event's fields beyond `info()`."""
        payload: dict[str, Any] = {"durationMs": self.duration_ms}
        if self.error is None:
            payload["result"] = self.result
        else:
            payload["error"] = self.error
        if self.content is not None:
            payload["content"] = self.content
        for flag in ("rejected", "stopped", "unavailable"):
            if getattr(self, flag):
                payload[flag] = True
        return payload

    def record(self) -> dict[str, Any]:
        """The call as /api/chat reports it in `toolCalls`."""
        record: dict[str, Any] = {
            "name": self.entry.name if self.entry else self.shown_name(),
            "server": self.entry.server if self.entry else None,
            "function": self.shown_name(),
            "arguments": self.shown_arguments(),
            "tool_call_id": self.id,
            "duration_ms": self.duration_ms,
        }
        if self.error is None:
            record["result"] = self.result
        else:
            record["error"] = self.error
        if self.rejected:
            record["rejected"] = True
        return record

    def message_call(self) -> dict[str, Any]:
        """The call as the assistant message repeats it to the model (and the page keeps it):
        a name the provider accepts and arguments within the history limit."""
        usable = self.entry is not None or (
            self.name_size <= HISTORY_MAX_NAME and VALID.match(self.function) is not None
        )
        arguments = self.raw_arguments
        if self.arguments_size > len(self.raw_arguments):
            arguments = json.dumps(
                {"_truncated": f"{self.arguments_size} characters of arguments left out"}
            )
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.function if usable else INVALID_NAME, "arguments": arguments},
        }

    def tool_message(self) -> str:
        if self.error is not None:
            return f"Error: {self.error}"
        return self.model_text if self.model_text is not None else self.result or ""


def assistant_message(text: str, calls: list[ToolCall]) -> dict[str, Any]:
    """The assistant message that asked for `calls`, as the next request must repeat it."""
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [c.message_call() for c in calls],
    }


# ------------------------------------------------------------------ assembling the stream


def _text(value: Any) -> str:
    """A delta field as text: providers that send arguments as an object get them as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return "<arguments that are not JSON>"


@dataclass
class _Slot:
    id: str = ""
    name: str = ""
    name_size: int = 0
    pieces: list[str] = field(default_factory=list)
    kept: int = 0  # characters in pieces
    size: int = 0  # characters sent

    def add(self, name: str, arguments: str, room: int) -> int:
        """Take a delta's pieces, keeping at most `room` characters of arguments (and never
        more than MAX_ARGUMENTS in all); returns how many were kept."""
        self.name_size += len(name)
        if len(self.name) < HISTORY_MAX_NAME:
            self.name = (self.name + name)[:HISTORY_MAX_NAME]
        self.size += len(arguments)
        if self.kept < self.size - len(arguments):  # already cut: keep nothing more
            return 0
        piece = arguments[: max(0, min(room, MAX_ARGUMENTS - self.kept))]
        if piece:
            self.pieces.append(piece)
            self.kept += len(piece)
        return len(piece)


class CallAssembler:
    """Streamed tool-call deltas → calls, at most MAX_CALLS, each bounded in size.

    Deltas are matched by `index`; since some providers send every call at index 0, or no
    index at all, another id once a call has begun, or a new name after its arguments, starts
    a new call."""

    def __init__(self) -> None:
        self.slots: list[_Slot] = []
        self.current: dict[Any, _Slot | None] = {}  # index → its call (None: dropped)
        self.asked = 0  # calls the model asked for, dropped ones included
        self.kept = 0  # characters of arguments kept, all calls together

    def add(self, delta: Any) -> None:
        index = getattr(delta, "index", None)
        key = index if isinstance(index, int) and not isinstance(index, bool) else None
        new_id = getattr(delta, "id", None)
        new_id = new_id if isinstance(new_id, str) else ""
        fn = getattr(delta, "function", None)
        name = _text(getattr(fn, "name", None))
        arguments = _text(getattr(fn, "arguments", None))
        slot = self.current.get(key, False)
        if slot is False or (slot is not None and _starts_another(slot, new_id, name)):
            slot = self._open(key)
        if slot is None:
            return
        if new_id and slot.id == new_id and name == slot.name:
            name = ""  # a provider that repeats the id and name in every delta
        if new_id:
            slot.id = new_id
        self.kept += slot.add(name, arguments, MAX_ARGUMENTS_TOTAL - self.kept)

    def _open(self, key: Any) -> _Slot | None:
        self.asked += 1
        slot = _Slot() if len(self.slots) < MAX_CALLS else None
        if slot is not None:
            self.slots.append(slot)
        self.current[key] = slot
        return slot

    def calls(self, taken: set[str]) -> list[ToolCall]:
        """The assembled calls, with ids unique among `taken` and each other."""
        ids = unique_ids([s.id for s in self.slots], taken)
        return [
            ToolCall(
                id=call_id,
                function=s.name,
                raw_arguments="".join(s.pieces) or "{}",
                arguments_size=s.size,
                name_size=s.name_size,
            )
            for call_id, s in zip(ids, self.slots, strict=True)
        ]

    def dropped_note(self) -> str | None:
        if self.asked <= MAX_CALLS:
            return None
        return (
            f"(The model asked for {self.asked} tool calls at once; "
            f"only the first {MAX_CALLS} were run.)"
        )


def _starts_another(slot: _Slot, new_id: str, name: str) -> bool:
    """Whether a delta for `slot`'s index is really a new call: another id once the call
    has begun, or (without an id) a new name after the call's arguments."""
    if new_id:
        return bool(slot.id) and new_id != slot.id and bool(slot.name or slot.size)
    return bool(name) and bool(slot.name) and slot.size > 0


def unique_ids(wanted: list[str], taken: set[str]) -> list[str]:
    """Ids for calls that asked for `wanted`: the model's own where it is usable and new in
    the conversation; otherwise `<id>_2`, `<id>_3`… (or `call_1`… when it sent none).
    Deterministic, and at most HISTORY_MAX_ID characters, so history keeps them as they are."""
    used = set(taken)
    out: list[str | None] = []
    for w in wanted:
        keep = 0 < len(w) <= HISTORY_MAX_ID and w not in used
        out.append(w if keep else None)
        if keep:
            used.add(w)
    for i, w in enumerate(wanted):
        if out[i] is not None:
            continue
        stem, n = (w[: HISTORY_MAX_ID - 12], 2) if w else ("call", 1)
        while f"{stem}_{n}" in used:
            n += 1
        out[i] = f"{stem}_{n}"
        used.add(f"{stem}_{n}")
    return [i or "" for i in out]


def ids_in(messages: list[dict[str, Any]]) -> set[str]:
    """Every tool-call id already in the conversation."""
    return {c["id"] for m in messages for c in (m.get("tool_calls") or []) if isinstance(c, dict)}


# ------------------------------------------------------------------ parsing the arguments


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether `value` nests deeper than `limit` (iterative: no recursion to run out of)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, dict | list):
            continue
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children)
    return False


def parse_arguments(call: ToolCall) -> tuple[Any, str | None]:
    """(arguments, None), or (None, why they cannot be used). Bounded: only what the size
    limits kept is parsed, and depth is checked without recursion."""
    if call.arguments_size > MAX_ARGUMENTS:
        return None, (
            f"arguments are {call.arguments_size} characters, more than the limit of "
            f"{MAX_ARGUMENTS}; send smaller arguments"
        )
    if call.arguments_size > len(call.raw_arguments):
        return None, (
            f"the tool calls of this response carry more than the limit of "
            f"{MAX_ARGUMENTS_TOTAL} characters of arguments together; make fewer or smaller calls"
        )
    too_deep = f"arguments are nested too deeply (more than {MAX_DEPTH} levels)"
    try:
        value = json.loads(call.raw_arguments, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:
        return None, too_deep
    except json.JSONDecodeError as e:
        return None, f"arguments are not valid JSON ({e.msg} at column {e.colno})"
    except ValueError as e:
        return None, f"arguments are not valid JSON ({str(e)[:200]})"
    if _depth_over(value, MAX_DEPTH):
        return None, too_deep
    return value, None
