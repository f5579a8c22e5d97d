"""The chat loop: an OpenAI-compatible model driving MCP tools until it has an answer.

The seed stopped after one round and ran tool calls one by one. Here every round offers all
tools, runs a round's calls concurrently, and repeats until the model answers in plain text or
MAX_TOOL_ROUNDS is hit (and says so). Tools that may change data wait for the user's approval
when an approval broker is given (the streaming page); scripts on /api/chat run them directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from product_mcp.chat.approvals import Approvals
from product_mcp.chat.arguments import validate_arguments
from product_mcp.chat.calls import (
    CallAssembler,
    ToolCall,
    assistant_message,
    ids_in,
    parse_arguments,
)
from product_mcp.chat.history import HistoryMessage, fit_for_history, truncate
from product_mcp.chat.llm import NO_LLM_MESSAGE, LLMSettings, explain_llm_error
from product_mcp.chat.manager import McpManager
from product_mcp.chat.media import result_content
from product_mcp.chat.names import build_table
from product_mcp.chat.results import ToolEntry, describe_error, model_text, result_text
from product_mcp.core.errors import LLMError, ProductMcpError, ToolCallError

if TYPE_CHECKING:  # openai (~20 MiB) is imported only once an LLM is configured
    from openai import AsyncOpenAI

log = logging.getLogger("chat")

SYSTEM_PROMPT = (
    "You are the shop assistant of an e-commerce store. Use the tools to look up products, "
    "stock, orders and sales instead of guessing, and check stock before promising anything. "
    "Only create a purchase when the user asked for it, with the customer's name and the "
    "product IDs and quantities. If a tool call is rejected by the user, do not retry it. "
    "Answer concisely in Markdown. If no tool is needed, answer directly."
)

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]


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
            from openai import AsyncOpenAI

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
            messages.append(assistant_message(text, calls))
            for c in calls:
                c.entry = table.get(c.function) if c.name_size == len(c.function) else None
            async with anyio.create_task_group() as tg:
                for c in calls:
                    tg.start_soon(self._execute, c, result.rounds, emit, approvals)
            for c in calls:
                content = truncate(c.tool_message(), self.settings.max_result_chars)
                messages.append({"role": "tool", "tool_call_id": c.id, "content": content})
                result.tool_calls.append(c.record())

        # what the page stores and sends back next turn: capped like tool results, so one long
        # reply cannot make every later request too big (ChatRequest's history limits)
        cap = self.settings.max_result_chars
        result.messages = [fit_for_history(m, cap) for m in messages[first_new:]]
        return result

    async def _complete(
        self, messages: list[dict[str, Any]], table: dict[str, ToolEntry], emit: Emit
    ) -> tuple[str, list[ToolCall]]:
        """One streamed completion: text deltas go out as they come; tool calls are assembled
        (bounded, with unique ids: see calls.py). A stream the client cannot read is a 502."""
        assert self.client is not None
        import openai  # loaded with the client (ChatEngine.__init__)

        text: list[str] = []
        assembler = CallAssembler()
        try:
            stream = await self.client.chat.completions.create(**self._request(messages, table))
            async for chunk in stream:
                delta = chunk.choices[0].delta if chunk.choices else None
                if delta is None:
                    continue
                if delta.content and isinstance(delta.content, str):
                    text.append(delta.content)
                    await emit("token", {"text": delta.content})
                for tc in delta.tool_calls if isinstance(delta.tool_calls, list) else []:
                    assembler.add(tc)
        except openai.OpenAIError as e:
            raise explain_llm_error(e, self.settings) from e
        except ProductMcpError:
            raise
        except Exception as e:  # a chunk the client could not parse: 100,000-deep JSON...
            log.warning("unreadable LLM response: %s", describe_error(e))
            raise LLMError(
                "The LLM provider sent a response that could not be read "
                f"({describe_error(e)[:300]})",
                502,
            ) from e
        note = assembler.dropped_note()
        if note:
            note = ("\n\n" if text else "") + note
            text.append(note)
            await emit("token", {"text": note})
        return "".join(text), assembler.calls(ids_in(messages))

    def _request(
        self, messages: list[dict[str, Any]], table: dict[str, ToolEntry]
    ) -> dict[str, Any]:
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
        return kwargs

    async def _execute(
        self, call: ToolCall, round_no: int, emit: Emit, approvals: Approvals | None
    ) -> None:
        """Run one call and report it; whatever goes wrong becomes the call's error."""
        needs_approval = call.entry is not None and not call.entry.read_only
        needs_approval = needs_approval and approvals is not None
        start = time.monotonic()
        try:
            self._check(call)
            await emit(
                "tool_call", {**call.info(), "round": round_no, "needsApproval": needs_approval}
            )
            start = time.monotonic()
            if call.error is None and needs_approval:
                assert approvals is not None
                await self._approve(call, emit, approvals)
                start = time.monotonic()
            if call.error is None:
                await self._call(call)
        except Exception as e:  # never lose the turn over one call
            log.exception("tool call %s failed", call.id)
            call.error = f"the call could not be run ({describe_error(e)[:300]})"
        call.duration_ms = round((time.monotonic() - start) * 1000)
        payload = {**call.info(), "durationMs": call.duration_ms}
        if call.error is None:
            payload["result"] = call.result
        else:
            payload["error"] = call.error
        if call.content is not None:
            payload["content"] = call.content
        if call.rejected:
            payload["rejected"] = True
        await emit("tool_result", payload)

    def _check(self, call: ToolCall) -> None:
        """Parse and validate the arguments; name the tool when it is unknown."""
        call.arguments, call.error = parse_arguments(call)
        if call.entry is None:
            known = ", ".join(sorted(build_table(self.manager.tools()))) or "none"
            call.error = f"unknown tool '{call.shown_name()}' (available: {known})"
        elif call.error is None:
            call.error = validate_arguments(call.entry, call.arguments)

    async def _approve(self, call: ToolCall, emit: Emit, approvals: Approvals) -> None:
        assert call.entry is not None
        approval_id = approvals.open()
        await emit("approval_required", {**call.info(), "approvalId": approval_id})
        answer = await approvals.wait(approval_id, self.settings.approval_timeout)
        if answer is not True:
            call.rejected = True
            name = call.entry.name
            call.error = (
                f"the user rejected this call; '{name}' was not run"
                if answer is False
                else f"nobody approved this call in time; '{name}' was not run"
            )

    async def _call(self, call: ToolCall) -> None:
        assert call.entry is not None
        try:
            res = await self.manager.call_tool(call.entry.server, call.entry.name, call.arguments)
        except ToolCallError as e:
            call.error = str(e)
            return
        text = result_text(res)
        call.content = result_content(res)
        if res.is_error:
            call.error = text
        else:
            call.result = text
            if call.content is not None:
                call.model_text = model_text(res)
