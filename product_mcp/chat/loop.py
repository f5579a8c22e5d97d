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
from product_mcp.chat.elicitation import CallRoute
from product_mcp.chat.history import HistoryMessage, fit_for_history, truncate
from product_mcp.chat.llm import (
    NO_LLM_MESSAGE,
    LLMSettings,
    completions_url,
    encode_body,
    explain_llm_error,
    make_client,
    stream_chat,
)
from product_mcp.chat.manager import McpManager, Offer
from product_mcp.chat.media import result_content
from product_mcp.chat.reply import ReplyBounds, read_reply
from product_mcp.chat.results import describe_error, model_text, result_text
from product_mcp.chat.turns import STOPPED, Turn
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
    # The attached resources' messages, for the page to keep right before the user's message,
    # so later turns still see what was attached.
    attached: list[dict[str, Any]] = field(default_factory=list)
    rounds: int = 0
    max_rounds_reached: bool = False
    stopped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "response": self.response,
            "toolCalls": self.tool_calls,
            "messages": self.messages,
            "attached": self.attached,
            "rounds": self.rounds,
            "maxRoundsReached": self.max_rounds_reached,
            "stopped": self.stopped,
        }


def unavailable_note(down: list[dict[str, Any]]) -> str:
    """What the model is told about servers that are down: their tools are not offered."""
    if not down:
        return ""
    parts = [
        f"'{d['name']}'" + (f" (tools: {', '.join(d['tools'][:30])})" if d["tools"] else "")
        for d in down
    ]
    return (
        "\n\nThese MCP servers are unavailable right now, so their tools cannot be used: "
        + "; ".join(parts)
        + ". If the user needs them, say so instead of guessing."
    )


async def _no_emit(_kind: str, _data: dict[str, Any]) -> None:
    return None


class ChatEngine:
    def __init__(self, manager: McpManager, settings: LLMSettings) -> None:
        self.manager = manager
        self.settings = settings
        self.client: AsyncOpenAI | None = None
        self.url = ""
        self.reply_bounds = ReplyBounds()
        if settings.configured:
            self.client = make_client(settings)
            self.url = completions_url(self.client)

    async def aclose(self) -> None:
        """Close the LLM client's connections at shutdown (aiohttp warns of an unclosed
        session otherwise); a fresh client, connected lazily, serves a later start."""
        if self.client is not None:
            await self.client.close()
            self.client = make_client(self.settings)

    async def run(
        self,
        message: str,
        history: list[HistoryMessage],
        *,
        emit: Emit | None = None,
        approvals: Approvals | None = None,
        turn: Turn | None = None,
        attached: list[HistoryMessage] | None = None,
    ) -> ChatResult:
        """One user turn. With `approvals`, tools that are not read-only wait for a yes (unless
        their server asks the user itself); with `emit`, a page follows it live; `turn.stop()`
        ends it early, keeping what was said. `attached`: resources' text, told right before
        the message."""
        if self.client is None:
            raise LLMError(NO_LLM_MESSAGE, 503)
        page = emit is not None
        emit = emit or _no_emit
        turn = turn or Turn()
        kept = [m.to_openai() for m in attached or []]
        messages = await self._opening(message, history, emit)
        messages[-1:-1] = kept
        first_new = len(messages)
        result = ChatResult(response="", attached=kept)
        while await self._round(messages, result, emit, approvals, turn, page):
            pass

        # what the page stores and sends back next turn: capped like tool results, so one long
        # reply cannot make every later request too big (ChatRequest's history limits)
        cap = self.settings.max_result_chars
        result.messages = [fit_for_history(m, cap) for m in messages[first_new:]]
        return result

    async def _opening(
        self, message: str, history: list[HistoryMessage], emit: Emit
    ) -> list[dict[str, Any]]:
        """The system prompt (naming the servers that are down), the history, the message."""
        await self.manager.reconnect_down()
        down = self.manager.unavailable()
        if down:
            await emit("servers_unavailable", {"servers": down})
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT + unavailable_note(down)}
        ]
        messages += [m.to_openai() for m in history]
        messages.append({"role": "user", "content": message})
        return messages

    async def _round(
        self,
        messages: list[dict[str, Any]],
        result: ChatResult,
        emit: Emit,
        approvals: Approvals | None,
        turn: Turn,
        page: bool,
    ) -> bool:
        """One round: the model speaks and may call tools, which run concurrently. False when
        the turn is over (a plain answer, Stop, or MAX_TOOL_ROUNDS reached)."""
        limit = self.settings.max_tool_rounds
        tools = self.manager.offer()
        offer = result.rounds < limit
        said: list[str] = []
        calls: list[ToolCall] = []
        with turn.stoppable():
            calls = await self._complete(messages, tools if offer else None, emit, said)
        text = "".join(said)
        if turn.stopped:
            result.stopped = True
            if text:
                messages.append({"role": "assistant", "content": text})
            result.response = text
            return False
        if not calls or not offer:
            if not offer:
                result.max_rounds_reached = True
                note = f"(Stopped after {limit} rounds of tool calls: MAX_TOOL_ROUNDS={limit}.)"
                sep = "\n\n" if text else ""
                await emit("token", {"text": sep + note})
                text = text + sep + note
            messages.append({"role": "assistant", "content": text})
            result.response = text
            return False
        result.rounds += 1
        messages.append(assistant_message(text, calls))
        for c in calls:
            c.entry = tools.table.get(c.function) if c.name_size == len(c.function) else None
        with turn.stoppable():
            async with anyio.create_task_group() as tg:
                for c in calls:
                    tg.start_soon(self._execute, c, result.rounds, emit, approvals, page)
        for c in calls:
            if not c.reported:  # cut by Stop
                c.error, c.stopped = STOPPED, True
                if c.started is not None:  # how long it ran (or waited for its approval)
                    c.duration_ms = round((time.monotonic() - c.started) * 1000)
                await emit("tool_result", {**c.info(), **c.outcome()})
            content = truncate(c.tool_message(), self.settings.max_result_chars)
            messages.append({"role": "tool", "tool_call_id": c.id, "content": content})
            result.tool_calls.append(c.record())
        if turn.stopped:
            result.stopped = True
            result.response = text
            return False
        return True

    async def _complete(
        self,
        messages: list[dict[str, Any]],
        tools: Offer | None,
        emit: Emit,
        text: list[str],
    ) -> list[ToolCall]:
        """One streamed completion offering `tools` (None: no tools): text deltas go out as
        they come and into `text` (so a stopped stream keeps them); tool calls are assembled
        (bounded, with unique ids: see calls.py). A stream the client cannot read is a 502."""
        assert self.client is not None
        import openai  # loaded with the client (ChatEngine.__init__)

        assembler = CallAssembler()
        try:
            body = self._request(messages, tools.functions if tools else [])
            content = encode_body(body, tools.functions_json if tools else None)
            stream = await stream_chat(self.client, self.url, content)
            async with stream:  # closed on Stop (or a bound): the provider stops generating
                cut = await read_reply(stream, self.reply_bounds, emit, text, assembler)
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
        note = cut or assembler.dropped_note()
        if note:
            note = ("\n\n" if text else "") + note
            text.append(note)
            await emit("token", {"text": note})
        return [] if cut else assembler.calls(ids_in(messages))

    def _request(
        self, messages: list[dict[str, Any]], functions: list[dict[str, Any]]
    ) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.settings.model,
            "messages": messages,
            "stream": True,
        }
        if functions:
            kwargs["tools"] = functions
            kwargs["tool_choice"] = "auto"
        return kwargs

    async def _execute(
        self,
        call: ToolCall,
        round_no: int,
        emit: Emit,
        approvals: Approvals | None,
        page: bool = False,
    ) -> None:
        """Run one call and report it; whatever goes wrong becomes the call's error."""
        entry = call.entry
        needs_approval = entry is not None and not entry.read_only and approvals is not None
        needs_approval = needs_approval and not (page and entry.confirms_by_elicitation)
        call.started = time.monotonic()
        try:
            self._check(call)
            await emit(
                "tool_call", {**call.info(), "round": round_no, "needsApproval": needs_approval}
            )
            call.started = time.monotonic()
            if call.error is None and needs_approval:
                assert approvals is not None
                await self._approve(call, emit, approvals)
                call.started = time.monotonic()
            if call.error is None:
                await self._call(call, emit if page else None, auto=approvals is None)
        except Exception as e:  # never lose the turn over one call
            log.exception("tool call %s failed", call.id)
            call.error = f"the call could not be run ({describe_error(e)[:300]})"
        call.duration_ms = round((time.monotonic() - call.started) * 1000)
        call.reported = True
        await emit("tool_result", {**call.info(), **call.outcome()})

    def _check(self, call: ToolCall) -> None:
        """Parse and validate the arguments; name the tool when it is unknown, and its
        server when that server is down (never "unknown tool" for a known server's tool)."""
        call.arguments, call.error = parse_arguments(call)
        if call.entry is None:
            known = self.manager.known_tool(call.function)
            if known is not None:
                call.entry, call.unavailable = known, True
                conn = self.manager.connections[known.server]
                why = f": {conn.last_error}" if conn.last_error else ""
                call.error = (
                    f"MCP server '{known.server}' is unavailable ({conn.status}{why}); "
                    f"'{known.name}' was not run"
                )
                return
            names = ", ".join(sorted(self.manager.offer().table)) or "none"
            call.error = f"unknown tool '{call.shown_name()}' (available: {names})"
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

    async def _call(self, call: ToolCall, emit: Emit | None, *, auto: bool) -> None:
        """The MCP call; a page (`emit`) gets its progress and its server's questions."""
        assert call.entry is not None
        route = CallRoute(
            call_id=call.id,
            tool=call.entry.name,
            emit=emit,
            let_run=True,  # approved, auto, or confirmed by the server's own question
            auto=auto,
            patience=self.settings.approval_timeout if emit and not call.entry.read_only else 0,
        )
        try:
            res = await self.manager.call_tool(
                call.entry.server, call.entry.name, call.arguments, route=route
            )
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
