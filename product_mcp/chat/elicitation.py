"""Questions servers ask during a tool call (MCP elicitation), and the call's live progress.

Why a broker and routes: a server's `elicitation/create` and `notifications/progress` arrive on
the connection's own task, not the chat turn's, so each running call registers a `CallRoute`
saying where its events go: the page's stream (the question becomes an `elicitation` event,
answered through POST /api/chat/elicitation) or nobody (a script on /api/chat or the tool form:
a pure confirmation is accepted when the user let the call run, anything else is cancelled).
Every wait is bounded; a question left open when its call ends is closed as "stopped".
A question may carry a quote in its `_meta` (main.py's create_purchase, QUOTE_META_KEY): passed
on only if it is a well-formed, bounded `Quote`, so the page draws it instead of the Markdown.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import jsonschema
from mcp.types import ElicitRequestParams, ElicitResult
from pydantic import ValidationError

from models import MAX_ITEMS, MAX_PRODUCT_NAME, QUOTE_META_KEY, Quote
from product_mcp.chat.schema_errors import first_problem
from product_mcp.core.errors import ProductMcpError

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
PROGRESS_EVERY_S = 0.1  # at most ~10 progress events per second per call
MAX_MESSAGE = 20_000  # characters of a server's question passed on to the page
MAX_URL = 8_192  # characters of a URL-mode question's link: a longer one is not shown


def quote_of(params: ElicitRequestParams) -> dict[str, Any] | None:
    """The question's quote (`_meta`, QUOTE_META_KEY) as the page draws it, or None when there
    is none or it is not a `Quote` of at most MAX_ITEMS items with names of a product's length
    (a server's `_meta` is as untrusted as the rest of what it sends)."""
    meta = getattr(params, "meta", None)
    raw = meta.get(QUOTE_META_KEY) if isinstance(meta, dict) else None
    items = raw.get("items") if isinstance(raw, dict) else None
    if not isinstance(items, list) or len(items) > MAX_ITEMS:
        return None
    try:
        quote = Quote.model_validate(raw)
    except ValidationError:
        return None
    if any(len(i.name) > MAX_PRODUCT_NAME for i in quote.items):
        return None
    numbers = [quote.totalAmount, *(n for i in quote.items for n in (i.unitPrice, i.lineTotal))]
    if not all(math.isfinite(n) for n in numbers):  # NaN would break the page's JSON.parse
        return None
    return quote.model_dump()


@dataclass
class CallRoute:
    """Where the server-side events of one running tool call go."""

    call_id: str | None = None
    tool: str | None = None
    emit: Emit | None = None  # the page's stream; None: nobody can be asked
    let_run: bool = False  # the user already let this call run (auto mode, or confirmed)
    auto: bool = False  # TOOL_APPROVAL auto: pure confirmations are accepted without asking
    patience: float = 0.0  # seconds added to the call's time limit: it may wait on the user
    open_questions: set[str] = field(default_factory=set)
    _last_progress: float = 0.0

    async def progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self.emit is None:
            return
        now = time.monotonic()
        final = total is not None and progress >= total
        if not final and now - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = now
        await self.emit(
            "progress",
            {
                "id": self.call_id,
                "progress": progress,
                "total": total,
                "message": message[:500] if isinstance(message, str) else None,
            },
        )


def pure_confirmation(params: ElicitRequestParams) -> dict[str, Any] | None:
    """The content that accepts a form asking nothing but yes/no (every field has a default),
    or None when it needs answers (or is URL mode)."""
    schema = getattr(params, "requested_schema", None)
    if not isinstance(schema, dict):
        return None
    props = schema.get("properties") or {}
    if not isinstance(props, dict):
        return None
    content: dict[str, Any] = {}
    for name, prop in props.items():
        if isinstance(prop, dict) and "default" in prop:
            content[name] = prop["default"]
        elif name in (schema.get("required") or []):
            return None
    return content


def unattended(route: CallRoute | None, params: ElicitRequestParams) -> ElicitResult:
    """The answer when there is no page to ask: accept a pure confirmation of a call the
    user let run; cancel everything else."""
    content = pure_confirmation(params)
    if route is not None and route.let_run and content is not None:
        return ElicitResult(action="accept", content=content)
    return ElicitResult(action="cancel")


@dataclass
class _Question:
    route: CallRoute
    schema: dict[str, Any] | None
    done: anyio.Event = field(default_factory=anyio.Event)
    answer: ElicitResult | None = None
    reason: str = "answered"


class Elicitations:
    """Open questions from servers to the page, by random id (one page cannot guess another's)."""

    def __init__(self, time_limit: float = 600.0) -> None:
        self.time_limit = time_limit
        self._open: dict[str, _Question] = {}

    async def ask(self, route: CallRoute, server: str, params: ElicitRequestParams) -> ElicitResult:
        if route.emit is None or (route.auto and pure_confirmation(params) is not None):
            return unattended(route, params)
        qid = uuid.uuid4().hex
        schema = getattr(params, "requested_schema", None)
        question = _Question(route, schema if isinstance(schema, dict) else None)
        self._open[qid] = question
        route.open_questions.add(qid)
        mode = "url" if getattr(params, "mode", None) == "url" else "form"
        event: dict[str, Any] = {
            "elicitationId": qid,
            "id": route.call_id,
            "server": server,
            "tool": route.tool,
            "mode": mode,
            "message": str(params.message)[:MAX_MESSAGE],
            "quote": quote_of(params),
            "timeoutSeconds": self.time_limit,
        }
        if mode == "url":
            url = getattr(params, "url", None)
            event["url"] = url if isinstance(url, str) and len(url) <= MAX_URL else None
        else:
            event["requestedSchema"] = question.schema or {"type": "object", "properties": {}}
        try:
            await route.emit("elicitation", event)
            with anyio.move_on_after(self.time_limit):
                await question.done.wait()
            if question.answer is None:
                question.reason = "timeout" if question.reason == "answered" else question.reason
                question.answer = ElicitResult(action="cancel")
            return question.answer
        finally:
            self._open.pop(qid, None)
            route.open_questions.discard(qid)
            action = question.answer.action if question.answer else "cancel"
            with anyio.CancelScope(shield=True):
                await route.emit(
                    "elicitation_done",
                    {"elicitationId": qid, "action": action, "reason": question.reason},
                )

    def answer(self, qid: str, action: str, content: dict[str, Any] | None) -> None:
        """The page's answer; 404 if the question is gone, 422 (still open) if the content
        does not fit the requested form."""
        question = self._open.get(qid)
        if question is None or question.done.is_set():
            raise ProductMcpError(
                "No open question with that id (already answered, timed out or stopped)", 404
            )
        if action == "accept":
            content = content if content is not None else {}
            problem = _misfit(question.schema, content)
            if problem:
                raise ProductMcpError(problem, 422)
            question.answer = ElicitResult(action="accept", content=content)
        else:
            question.answer = ElicitResult(action=action)  # type: ignore[arg-type]
        question.done.set()

    def close(self, route: CallRoute) -> None:
        """The call ended (finished, stopped): its open questions are cancelled."""
        for qid in list(route.open_questions):
            question = self._open.get(qid)
            if question is not None and not question.done.is_set():
                question.reason = "stopped"
                question.answer = ElicitResult(action="cancel")
                question.done.set()


def _misfit(schema: dict[str, Any] | None, content: dict[str, Any]) -> str | None:
    if not schema:
        return None
    try:
        cls = jsonschema.validators.validator_for(schema)
        errors = list(cls(schema).iter_errors(content))
    except Exception:
        return None  # a schema we cannot use: the server judges the answer
    return first_problem(errors, root="content")
