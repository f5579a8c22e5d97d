"""The chat loop: an OpenAI-compatible model driving MCP tools until it has an answer.

The seed stopped after one round and ran tool calls one by one. Here every round offers all
tools, runs a round's calls concurrently, and repeats until the model answers in plain text or
MAX_TOOL_ROUNDS is hit (and says so). Tools that may change data wait for the user's approval
when an approval broker is given (the streaming page); scripts on /api/chat run them directly.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import jsonschema
import openai
from openai import AsyncOpenAI
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mcp_manager import McpManager, ToolCallError, ToolEntry, describe_error, result_text
from tool_names import build_table

log = logging.getLogger("chat")

NO_LLM_MESSAGE = (
    "No LLM configured: set OPENAI_API_KEY (and OPENAI_API_BASE for other providers) in .env"
)
SYSTEM_PROMPT = (
    "You are the shop assistant of an e-commerce store. Use the tools to look up products, "
    "stock, orders and sales instead of guessing, and check stock before promising anything. "
    "Only create a purchase when the user asked for it, with the customer's name and the "
    "product IDs and quantities. If a tool call is rejected by the user, do not retry it. "
    "Answer concisely in Markdown. If no tool is needed, answer directly."
)

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]

# Limits of what the page sends back each turn. They hang together: web.py refuses bodies over
# MAX_BODY_BYTES, and a history at HISTORY_MAX_CHARS characters of text (content, arguments,
# ids, names) stays under it even as 3-byte UTF-8 (about 3.2 MB with the JSON around it). The page
# reads them from /api/config and sends only the most recent whole turns that fit.
MAX_BODY_BYTES = 4 * 1024 * 1024
MESSAGE_MAX_CHARS = 20_000
HISTORY_MAX_MESSAGES = 1000
HISTORY_MAX_CHARS = 1_000_000
HISTORY_MAX_CONTENT = 200_000
HISTORY_MAX_TOOL_CALLS = 64
HISTORY_MAX_ARGUMENTS = 100_000
HISTORY_MAX_NAME = 128
HISTORY_MAX_ID = 200
HISTORY_LIMITS = {
    "maxBodyBytes": MAX_BODY_BYTES,
    "maxMessageChars": MESSAGE_MAX_CHARS,
    "maxMessages": HISTORY_MAX_MESSAGES,
    "maxChars": HISTORY_MAX_CHARS,
    "maxContentChars": HISTORY_MAX_CONTENT,
    "maxToolCalls": HISTORY_MAX_TOOL_CALLS,
    "maxArgumentsChars": HISTORY_MAX_ARGUMENTS,
    "maxNameChars": HISTORY_MAX_NAME,
    "maxIdChars": HISTORY_MAX_ID,
}


# ---------------------------------------------------------------- settings and errors


@dataclass(frozen=True)
class LLMSettings:
    api_key: str | None = None
    base_url: str | None = None
    model: str = "deepseek-chat"
    timeout: float = 60.0
    max_retries: int = 1
    max_tool_rounds: int = 8
    max_result_chars: int = 20_000
    approval_timeout: float = 600.0

    @property
    def configured(self) -> bool:
        return bool(self.api_key)


class LLMError(Exception):
    """The model could not be reached or refused; the message is shown to the user."""

    def __init__(self, message: str, status_code: int = 502) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


def explain_llm_error(exc: Exception, settings: LLMSettings) -> LLMError:
    """Turn openai's exceptions into a sentence a user can act on."""
    where = settings.base_url or "the default OpenAI endpoint"
    if isinstance(exc, openai.AuthenticationError):
        return LLMError(
            "The LLM provider rejected the API key (HTTP 401). Check OPENAI_API_KEY.", 502
        )
    if isinstance(exc, openai.PermissionDeniedError):
        return LLMError("The LLM provider denied access (HTTP 403). Check the key's rights.", 502)
    if isinstance(exc, openai.RateLimitError):
        return LLMError(
            "The LLM provider is rate-limiting requests (HTTP 429). Wait a moment and try again.",
            429,
        )
    if isinstance(exc, openai.NotFoundError):
        return LLMError(
            f"The LLM provider does not know model '{settings.model}' or the URL is wrong "
            f"(HTTP 404). Check LLM_MODEL and OPENAI_API_BASE ({where}).",
            502,
        )
    if isinstance(exc, openai.APITimeoutError):
        return LLMError(
            f"The LLM provider did not answer within {settings.timeout:g}s ({where}).", 504
        )
    if isinstance(exc, openai.APIConnectionError):
        return LLMError(
            f"Cannot reach the LLM provider at {where}: connection refused or network error.", 502
        )
    if isinstance(exc, openai.APIStatusError):
        detail = exc.message or ""
        return LLMError(f"The LLM provider answered HTTP {exc.status_code}: {detail}", 502)
    return LLMError(f"LLM request failed: {describe_error(exc)}", 502)


# ---------------------------------------------------------------- validated history


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


# ---------------------------------------------------------------- approvals


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


# ---------------------------------------------------------------- the loop


@dataclass
class _Call:
    id: str
    function: str
    raw_arguments: str
    entry: ToolEntry | None = None
    arguments: Any = None
    result: str | None = None
    error: str | None = None
    rejected: bool = False
    duration_ms: int = 0

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "function": self.function,
            "server": self.entry.server if self.entry else None,
            "tool": self.entry.name if self.entry else self.function,
            "arguments": self.arguments if self.arguments is not None else self.raw_arguments,
        }


@dataclass
class ChatResult:
    response: str
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    rounds: int = 0
    max_rounds_reached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "response": self.response,
            "toolCalls": self.tool_calls,
            "messages": self.messages,
            "rounds": self.rounds,
            "maxRoundsReached": self.max_rounds_reached,
        }


async def _no_emit(_kind: str, _data: dict[str, Any]) -> None:
    return None


_unusable_schemas: set[tuple[str, str]] = set()


def validate_arguments(entry: ToolEntry, args: Any) -> str | None:
    """The first schema violation as a sentence, or None when args fit the input schema."""
    if not isinstance(args, dict):
        return "arguments must be a JSON object"
    schema = entry.input_schema
    try:
        cls = jsonschema.validators.validator_for(schema)
        errors = sorted(cls(schema).iter_errors(args), key=lambda e: list(e.path))
    except Exception as e:
        # A schema jsonschema cannot use (invalid, a $ref pointing nowhere, an unknown remote
        # reference...) says nothing about the arguments: let the server judge the call.
        key = (entry.server, entry.name)
        if key not in _unusable_schemas:
            _unusable_schemas.add(key)
            log.warning(
                "tool '%s' on server '%s': input schema unusable (%s: %s); "
                "arguments go to the server unchecked",
                entry.name,
                entry.server,
                type(e).__name__,
                describe_error(e),
            )
        return None
    if not errors:
        return None
    err = errors[0]
    where = "/".join(str(p) for p in err.absolute_path) or "(arguments)"
    return f"invalid arguments for '{entry.name}' at {where}: {err.message}"


class ChatEngine:
    def __init__(self, manager: McpManager, settings: LLMSettings) -> None:
        self.manager = manager
        self.settings = settings
        self.client: AsyncOpenAI | None = None
        if settings.configured:
            self.client = AsyncOpenAI(
                api_key=settings.api_key,
                base_url=settings.base_url or None,
                timeout=settings.timeout,
                max_retries=settings.max_retries,
            )

    async def run(
        self,
        message: str,
        history: list[HistoryMessage],
        *,
        emit: Emit | None = None,
        approvals: Approvals | None = None,
    ) -> ChatResult:
        """One user turn. With `approvals`, tools that are not read-only wait for a yes."""
        if self.client is None:
            raise LLMError(NO_LLM_MESSAGE, 503)
        emit = emit or _no_emit
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT}]
        messages += [m.to_openai() for m in history]
        messages.append({"role": "user", "content": message})
        first_new = len(messages)
        result = ChatResult(response="")
        limit = self.settings.max_tool_rounds

        while True:
            table = build_table(self.manager.tools())
            offer = result.rounds < limit
            text, calls = await self._complete(messages, table if offer else {}, emit)
            if not calls or not offer:
                if not offer:
                    result.max_rounds_reached = True
                    note = f"(Stopped after {limit} rounds of tool calls: MAX_TOOL_ROUNDS={limit}.)"
                    sep = "\n\n" if text else ""
                    await emit("token", {"text": sep + note})
                    text = text + sep + note
                messages.append({"role": "assistant", "content": text})
                result.response = text
                break
            result.rounds += 1
            messages.append(
                {
                    "role": "assistant",
                    "content": text or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.function, "arguments": c.raw_arguments},
                        }
                        for c in calls
                    ],
                }
            )
            for c in calls:
                c.entry = table.get(c.function)
            async with anyio.create_task_group() as tg:
                for c in calls:
                    tg.start_soon(self._execute, c, result.rounds, emit, approvals)
            for c in calls:
                content = c.result if c.error is None else f"Error: {c.error}"
                assert content is not None
                content = truncate(content, self.settings.max_result_chars)
                messages.append({"role": "tool", "tool_call_id": c.id, "content": content})
                record: dict[str, Any] = {
                    "name": c.entry.name if c.entry else c.function,
                    "server": c.entry.server if c.entry else None,
                    "function": c.function,
                    "arguments": c.info()["arguments"],
                    "tool_call_id": c.id,
                    "duration_ms": c.duration_ms,
                }
                if c.error is None:
                    record["result"] = c.result
                else:
                    record["error"] = c.error
                if c.rejected:
                    record["rejected"] = True
                result.tool_calls.append(record)

        # what the page stores and sends back next turn: capped like tool results, so one long
        # reply cannot make every later request too big (ChatRequest's history limits)
        cap = self.settings.max_result_chars
        result.messages = [fit_for_history(m, cap) for m in messages[first_new:]]
        return result

    async def _complete(
        self, messages: list[dict[str, Any]], table: dict[str, ToolEntry], emit: Emit
    ) -> tuple[str, list[_Call]]:
        """One streamed completion: text deltas go out as they come; tool calls are assembled."""
        assert self.client is not None
        kwargs: dict[str, Any] = {
            "model": self.settings.model,
            "messages": messages,
            "stream": True,
        }
        if table:
            kwargs["tools"] = [
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
            kwargs["tool_choice"] = "auto"
        text: list[str] = []
        slots: dict[int, dict[str, str]] = {}
        try:
            stream = await self.client.chat.completions.create(**kwargs)
            async for chunk in stream:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                if delta is None:
                    continue
                if delta.content:
                    text.append(delta.content)
                    await emit("token", {"text": delta.content})
                for tc in delta.tool_calls or []:
                    slot = slots.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    if tc.id:
                        slot["id"] = tc.id
                    if tc.function is not None:
                        slot["name"] += tc.function.name or ""
                        slot["arguments"] += tc.function.arguments or ""
        except openai.OpenAIError as e:
            raise explain_llm_error(e, self.settings) from e
        calls = [
            _Call(
                id=s["id"] or f"call_{uuid.uuid4().hex[:12]}",
                function=s["name"],
                raw_arguments=s["arguments"] or "{}",
            )
            for _, s in sorted(slots.items())
        ]
        return "".join(text), calls

    async def _execute(
        self, call: _Call, round_no: int, emit: Emit, approvals: Approvals | None
    ) -> None:
        entry = call.entry
        try:
            call.arguments = json.loads(call.raw_arguments)
        except json.JSONDecodeError as e:
            call.error = f"arguments are not valid JSON ({e.msg} at column {e.colno})"
        needs_approval = entry is not None and not entry.read_only and approvals is not None
        await emit("tool_call", {**call.info(), "round": round_no, "needsApproval": needs_approval})
        start = time.monotonic()
        if entry is None:
            known = ", ".join(sorted(build_table(self.manager.tools()))) or "none"
            call.error = f"unknown tool '{call.function}' (available: {known})"
        elif call.error is None:
            call.error = validate_arguments(entry, call.arguments)
        if call.error is None and entry is not None:
            if needs_approval:
                assert approvals is not None
                approval_id = approvals.open()
                await emit("approval_required", {**call.info(), "approvalId": approval_id})
                answer = await approvals.wait(approval_id, self.settings.approval_timeout)
                if answer is not True:
                    call.rejected = True
                    call.error = (
                        f"the user rejected this call; '{entry.name}' was not run"
                        if answer is False
                        else f"nobody approved this call in time; '{entry.name}' was not run"
                    )
                start = time.monotonic()
            if not call.rejected:
                try:
                    res = await self.manager.call_tool(entry.server, entry.name, call.arguments)
                    text = result_text(res)
                    if res.is_error:
                        call.error = text
                    else:
                        call.result = text
                except ToolCallError as e:
                    call.error = str(e)
        call.duration_ms = round((time.monotonic() - start) * 1000)
        payload = {**call.info(), "durationMs": call.duration_ms}
        if call.error is None:
            payload["result"] = call.result
        else:
            payload["error"] = call.error
        if call.rejected:
            payload["rejected"] = True
        await emit("tool_result", payload)
