"""Questions servers ask during a tool call (MCP elicitation), and the call's live progress.

Why a broker and routes: a server's `elicitation/create` and `notifications/progress` arrive on
the connection's own task, not the chat turn's, so each running call registers a `CallRoute`
saying where its events go: the page's stream (the question becomes an `elicitation` event,
answered through POST /api/chat/elicitation) or nobody (a script on /api/chat or the tool form:
a pure confirmation is accepted when the user let the call run, anything else is cancelled).
Every wait is bounded; a question left open when its call ends is closed as "stopped".
A question may carry a quote in its `_meta` (main.py's create_purchase, QUOTE_META_KEY): passed
on only if it is a well-formed, bounded `Quote`, so the page draws it instead of the Markdown.

A form question must be in MCP's restricted form (`form_problem`: a flat object of string,
number, integer, boolean and enum fields) and within bounds (fields, options, text lengths,
bytes): a server once sent 20,000 fields of 50 options each, a 26.8 MB event that froze the
page. One that is not is refused to the server (a JSON-RPC error saying why), and the page is
told in one line (`refused` on the `elicitation` event, then `elicitation_done`).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, overload

import anyio
from mcp.types import (
    INVALID_PARAMS,
    ElicitRequestParams,
    ElicitRequestURLParams,
    ElicitResult,
    ErrorData,
)
from pydantic import ValidationError

from models import MAX_ITEMS, MAX_PRODUCT_NAME, QUOTE_META_KEY, Quote
from product_mcp.chat.arguments import checker
from product_mcp.chat.schema_errors import first_problem
from product_mcp.core.errors import ProductMcpError

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
PROGRESS_EVERY_S = 0.1  # at most ~10 progress events per second per call
MAX_MESSAGE = 20_000  # characters of a server's question passed on to the page
MAX_URL = 8_192  # characters of a URL-mode question's link: a longer one is not shown
# A form question's bounds (public/js/elicit.js draws no more than MAX_FIELDS and MAX_OPTIONS)
MAX_FIELDS = 50
MAX_OPTIONS = 100  # choices of one enum field
MAX_NAME = 200  # characters of a field's name, title, option label or value
MAX_DESCRIPTION = 2_000  # characters of a field's description
MAX_SCHEMA_BYTES = 64 * 1024  # the requested schema as JSON
FIELD_TYPES = ("string", "number", "integer", "boolean", "array")
FORMATS = ("email", "uri", "date", "date-time")


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


def _text(value: Any, limit: int, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{what} is not text"
    if len(value) > limit:
        return f"{what} is {len(value):,} characters (at most {limit:,})"
    return None


def _options(prop: dict[str, Any], where: str) -> tuple[list[Any] | None, str | None]:
    """An enum field's values (`enum`, or `oneOf`/`anyOf` of `const`s), None if it has none,
    or why they cannot be shown."""
    if "enum" in prop:
        values = prop["enum"]
        labels = prop.get("enumNames")
        if not isinstance(values, list) or not values:
            return None, f"{where}.enum is not a list of values"
        if len(values) > MAX_OPTIONS:
            return None, f"{where} has {len(values):,} options (at most {MAX_OPTIONS})"
        if labels is not None and (not isinstance(labels, list) or len(labels) > len(values)):
            return None, f"{where}.enumNames does not match its enum"
        for label in labels or []:
            if problem := _text(label, MAX_NAME, f"a label of {where}"):
                return None, problem
        return values, None
    for key in ("oneOf", "anyOf"):
        if key not in prop:
            continue
        alts = prop[key]
        if not isinstance(alts, list) or not alts:
            return None, f"{where}.{key} is not a list of options"
        if len(alts) > MAX_OPTIONS:
            return None, f"{where} has {len(alts):,} options (at most {MAX_OPTIONS})"
        values = []
        for alt in alts:
            if not isinstance(alt, dict) or "const" not in alt:
                return None, f"{where}.{key} holds an option that is not a const"
            if problem := _text(alt.get("title"), MAX_NAME, f"a label of {where}"):
                return None, problem
            values.append(alt["const"])
        return values, None
    return None, None


def _field_problem(name: Any, prop: Any) -> str | None:
    """Why one property of a form is not one of MCP's primitive fields, or None."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        return f"a field's name is empty or over {MAX_NAME} characters"
    where = f"field {name!r}"
    if not isinstance(prop, dict):
        return f"{where} is not a schema"
    kind = prop.get("type")
    if kind not in FIELD_TYPES:
        shown = json.dumps(kind)[:40]
        return f"{where} has type {shown} (string, number, integer, boolean or enum)"
    for key, limit in (("title", MAX_NAME), ("description", MAX_DESCRIPTION)):
        if problem := _text(prop.get(key), limit, f"{where}.{key}"):
            return problem
    if "format" in prop and prop["format"] not in FORMATS:
        return f"{where} has format {json.dumps(prop['format'])[:40]}"
    if kind == "array":  # a multiple choice: its items are the options
        items = prop.get("items")
        values, problem = _options(items, where) if isinstance(items, dict) else (None, None)
        if values is None:
            return problem or f"{where} is a list without options (only multiple choices are)"
        defaults = prop.get("default", [])
        if not isinstance(defaults, list) or len(defaults) > len(values):
            return f"{where}.default is not a list of its options"
    else:
        values, problem = _options(prop, where)
        if problem:
            return problem
        defaults = [prop["default"]] if "default" in prop else []
    for value in [*(values or []), *defaults]:
        if isinstance(value, (dict, list)):
            return f"{where} has a value that is not a string, number or boolean"
        if isinstance(value, str) and len(value) > MAX_NAME:
            return f"{where} has a value over {MAX_NAME} characters"
    return None


def form_problem(schema: Any) -> str | None:
    """Why a form question's requested schema is not MCP's restricted form within this
    module's bounds (said to the server and the page), or None when it may be shown."""
    if not isinstance(schema, dict):
        return "the requested schema is not an object"
    if schema.get("type", "object") != "object":
        return "the requested schema is not of type object"
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        return "the requested schema's properties are not an object"
    if len(props) > MAX_FIELDS:
        return f"the form has {len(props):,} fields (at most {MAX_FIELDS})"
    required = schema.get("required", [])
    if not isinstance(required, list) or len(required) > MAX_FIELDS:
        return "the requested schema's required is not a short list of field names"
    if any(not isinstance(r, str) or len(r) > MAX_NAME for r in required):
        return "the requested schema's required holds something other than field names"
    for name, prop in props.items():
        if problem := _field_problem(name, prop):
            return problem
    try:
        size = len(json.dumps(schema, ensure_ascii=False).encode())
    except (TypeError, ValueError):
        return "the requested schema is not JSON"
    if size > MAX_SCHEMA_BYTES:
        return f"the requested schema is {size:,} bytes (at most {MAX_SCHEMA_BYTES:,})"
    return None


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
    """The content that accepts a form asking nothing but yes/no (no fields, or every field
    has a default), or None when it needs answers (or is URL mode). An optional field without
    a default is a question too: accepting `{}` would answer it for the user."""
    schema = getattr(params, "requested_schema", None)
    if not isinstance(schema, dict):
        return None
    props = schema.get("properties") or {}
    if not isinstance(props, dict):
        return None
    content: dict[str, Any] = {}
    for name, prop in props.items():
        if not isinstance(prop, dict) or "default" not in prop:
            return None
        content[name] = prop["default"]
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

    @overload
    async def ask(
        self, route: CallRoute, server: str, params: ElicitRequestURLParams
    ) -> ElicitResult: ...

    @overload
    async def ask(
        self, route: CallRoute, server: str, params: ElicitRequestParams
    ) -> ElicitResult | ErrorData: ...

    async def ask(
        self, route: CallRoute, server: str, params: ElicitRequestParams
    ) -> ElicitResult | ErrorData:
        """The answer to a server's question; an error (never for a URL) when its form is
        not one the page may be shown (`form_problem`)."""
        if getattr(params, "mode", None) != "url":
            problem = form_problem(getattr(params, "requested_schema", None))
            if problem:
                return await self._refuse(route, server, params, problem)
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

    async def _refuse(
        self, route: CallRoute, server: str, params: ElicitRequestParams, problem: str
    ) -> ErrorData:
        """The server hears why its question was not shown; the page gets one closed line."""
        said = f"web.py refused the question: {problem}"
        if route.emit is not None:
            qid = uuid.uuid4().hex
            event = {
                "elicitationId": qid,
                "id": route.call_id,
                "server": server,
                "tool": route.tool,
                "mode": "form",
                "message": str(params.message)[:MAX_MESSAGE],
                "refused": problem,
            }
            with anyio.CancelScope(shield=True):
                await route.emit("elicitation", event)
                done = {"elicitationId": qid, "action": "cancel", "reason": "refused"}
                await route.emit("elicitation_done", done)
        return ErrorData(code=INVALID_PARAMS, message=said)

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
    try:  # no regular expression of the server's is run (arguments.checker)
        errors = list(checker(schema).iter_errors(content))
    except Exception:
        return None  # a schema we cannot use: the server judges the answer
    return first_problem(errors, root="content")
