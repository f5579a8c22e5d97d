"""The chat loop: an OpenAI-compatible model driving MCP tools until it has an answer.

The seed stopped after one round and ran tool calls one by one. Here every round offers all
tools, runs a round's calls concurrently, and repeats until the model answers in plain text or
MAX_TOOL_ROUNDS is hit (and says so). Tools that may change data wait for the user's approval
when an approval broker is given (the streaming page); scripts on /api/chat run them directly.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import openai
from openai import AsyncOpenAI

from product_mcp.chat.approvals import Approvals
from product_mcp.chat.arguments import validate_arguments
from product_mcp.chat.history import HistoryMessage, fit_for_history, truncate
from product_mcp.chat.llm import NO_LLM_MESSAGE, LLMSettings, explain_llm_error
from product_mcp.chat.manager import McpManager
from product_mcp.chat.names import build_table
from product_mcp.chat.results import ToolEntry, result_text
from product_mcp.core.errors import LLMError, ToolCallError

SYSTEM_PROMPT = (
    "You are the shop assistant of an e-commerce store. Use the tools to look up products, "
    "stock, orders and sales instead of guessing, and check stock before promising anything. "
    "Only create a purchase when the user asked for it, with the customer's name and the "
    "product IDs and quantities. If a tool call is rejected by the user, do not retry it. "
    "Answer concisely in Markdown. If no tool is needed, answer directly."
)

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]


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

    def record(self) -> dict[str, Any]:
        """The call as /api/chat reports it in `toolCalls`."""
        record: dict[str, Any] = {
            "name": self.entry.name if self.entry else self.function,
            "server": self.entry.server if self.entry else None,
            "function": self.function,
            "arguments": self.info()["arguments"],
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


def _assistant_calls(text: str, calls: list[_Call]) -> dict[str, Any]:
    """The assistant message that asked for `calls`, as the next request must repeat it."""
    return {
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
            messages.append(_assistant_calls(text, calls))
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
                result.tool_calls.append(c.record())

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
