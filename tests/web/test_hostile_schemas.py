"""Schemas a hostile MCP server sends web.py (found by session 17's hostile-client trial): a
regular expression in a tool's or a question's schema is never run by web.py (Python's `re`
backtracked for 26 s on `^(a+)+$`, holding every client), a question's form is held to MCP's
restricted form and bounds before it reaches the page, and auto approval accepts only a form
that asks nothing. web.py in process with a hostile server in memory (tests/inproc.py); the
page's side of a refused question is in test_page_events.py, questions answered in
test_live.py, argument messages in test_units.py."""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

import httpx
import pytest
from mcp import MCPError
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ElicitRequestFormParams, ElicitResult, Tool, ToolAnnotations
from pydantic import Field

from product_mcp.chat.arguments import validate_arguments
from product_mcp.chat.elicitation import CallRoute, Elicitations, pure_confirmation
from product_mcp.chat.results import ToolEntry
from tests.fake_llm import Calls, FakeLLM, Reply
from tests.inproc import InProcessWeb
from tests.web_helpers import answer_elicitation, chat_stream

RO = ToolAnnotations(read_only_hint=True)
CATASTROPHIC = "^(a+)+$"  # Python's re: ~2^n steps on "a" * n + "!"
SLOW_TEXT = "a" * 29 + "!"  # 26.5 s in the trial
Emitted = list[tuple[str, dict[str, Any]]]


def _form(fields: int, options: int = 0) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": "string"}
    if options:
        prop["enum"] = [str(n) for n in range(options)]
    return {"type": "object", "properties": {f"f{n}": dict(prop) for n in range(fields)}}


def hostile_server() -> MCPServer[None]:
    evil: MCPServer[None] = MCPServer("evil")

    @evil.tool(description="Takes a string the schema says must match ^(a+)+$.", annotations=RO)
    async def redos(x: Annotated[str, Field(pattern=CATASTROPHIC)]) -> str:
        return "ran"

    async def ask(ctx: Context, schema: dict[str, Any]) -> str:
        try:
            answer = await ctx.session.elicit_form("Answer me", schema, ctx.request_id)
        except MCPError as e:
            return f"error: {e}"
        return f"{answer.action}: {answer.content}"

    @evil.tool(description="Asks with a pattern in the form.", annotations=RO)
    async def ask_pattern(ctx: Context) -> str:
        name = {"type": "string", "pattern": CATASTROPHIC}
        return await ask(ctx, {"type": "object", "properties": {"name": name}})

    @evil.tool(description="Asks with a form far too big to show.", annotations=RO)
    async def ask_big(ctx: Context) -> str:
        return await ask(ctx, _form(2_000, 50))

    return evil


@pytest.fixture(scope="module")
def web_servers() -> dict[str, Any]:
    return {"evil": hostile_server()}


# ------------------------------------------------------------------ no server regex is run


def _check(schema: dict[str, Any], args: dict[str, Any]) -> str | None:
    return validate_arguments(ToolEntry("evil", Tool(name="t", input_schema=schema)), args)


OBJ = {"type": "object"}


@pytest.mark.parametrize(
    ("schema", "args"),
    [
        ({**OBJ, "properties": {"x": {"type": "string", "pattern": "^b$"}}}, {"x": "a"}),
        ({**OBJ, "propertyNames": {"pattern": "^b"}}, {"a": 1}),
        # the patterns' subschemas are not applied, and no key is taken for "additional"
        ({**OBJ, "patternProperties": {"^b": {"type": "integer"}}}, {"bx": "text"}),
        (
            {**OBJ, "patternProperties": {"^b": {}}, "additionalProperties": False},
            {"bx": 1, "zz": 2},
        ),
        (
            {**OBJ, "allOf": [{"patternProperties": {"^b": {}}}], "unevaluatedProperties": False},
            {"zz": 1},
        ),
    ],
)
def test_a_servers_patterns_are_not_run(schema: dict[str, Any], args: dict[str, Any]) -> None:
    """A pattern would have refused each of these: web.py leaves patterns to the server."""
    assert _check(schema, args) is None


def test_keys_the_patterns_take_are_not_additional_and_other_checks_hold() -> None:
    patterned = {
        **OBJ,
        "properties": {"n": {"type": "integer", "minimum": 1}},
        "patternProperties": {"^x-": {"type": "string"}},
        "additionalProperties": False,
    }
    assert _check(patterned, {"n": 1, "x-colour": "red"}) is None
    assert _check(patterned, {"n": 0}) == "invalid arguments for 't': n: must be ≥ 1 (got 0)"
    closed = {**OBJ, "properties": {"n": {"type": "string"}}, "additionalProperties": False}
    assert "zz" in (_check(closed, {"n": "a", "zz": 1}) or "")
    names = {**OBJ, "propertyNames": {"maxLength": 3, "pattern": "^b"}}
    assert _check(names, {"abcd": 1}) is not None and _check(names, {"abc": 1}) is None
    unevaluated = {**OBJ, "properties": {"n": {}}, "unevaluatedProperties": False}
    assert _check(unevaluated, {"zz": 1}) is not None and _check(unevaluated, {"n": 1}) is None
    text = {**OBJ, "properties": {"x": {"type": "string", "maxLength": 2, "pattern": "^b$"}}}
    assert "at most 2" in (_check(text, {"x": "aaa"}) or "")


def _timed(call: Any) -> tuple[Any, float]:
    start = time.monotonic()
    return call(), time.monotonic() - start


def test_a_catastrophic_pattern_stalls_nobody(web: InProcessWeb) -> None:
    """The trial: `^(a+)+$` against 29 a's and a "!" took 26.5 s to get its 422, and /healthz
    from another client waited 25 s. The call now reaches the server (which refuses the value
    with an engine that does not backtrack), and another client is served meanwhile."""
    body = {"server": "evil", "name": "redos", "args": {"x": SLOW_TEXT}}
    called: dict[str, Any] = {}

    def call() -> None:
        called["response"], called["took"] = _timed(
            lambda: httpx.post(f"{web.url}/api/call-tool", json=body, timeout=120)
        )

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.1)
    health, waited = _timed(lambda: httpx.get(f"{web.url}/healthz", timeout=120))
    caller.join(120)
    assert health.status_code == 200 and waited < 15, waited  # it took 26 s; load adds seconds
    r = called["response"]
    assert called["took"] < 15, called["took"]
    assert r.status_code == 200 and r.json()["isError"] is True, r.text  # the server said no
    assert "pattern" in r.json()["result"], r.text
    ok = web.post("/api/call-tool", json={**body, "args": {"x": "aaa"}})
    assert ok.status_code == 200 and ok.json()["result"] == "ran", ok.text


def test_an_answer_is_not_checked_with_the_questions_pattern(
    web: InProcessWeb, fake: FakeLLM
) -> None:
    """The same through a question: the page's answer was checked with the form's pattern."""
    q = "Ask me with a pattern"
    fake.script(q, Calls(("ask_pattern", {})), Reply("Ok."))
    took: list[float] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "elicitation":
            content = {"name": SLOW_TEXT}
            r, t = _timed(lambda: answer_elicitation(web, data["elicitationId"], "accept", content))
            took.append(t)
            assert r.status_code == 200, r.text

    events = chat_stream(web, {"message": q}, on_event, timeout=120)
    assert took and took[0] < 5, took
    result = next(d for k, d in events if k == "tool_result")
    assert result["result"] == f"accept: {{'name': '{SLOW_TEXT}'}}", result


# ------------------------------------------------------------------ a question's form


async def _asked(schema: dict[str, Any], **route: Any) -> tuple[Any, Emitted]:
    events: Emitted = []

    async def emit(kind: str, data: dict[str, Any]) -> None:
        events.append((kind, data))

    params = ElicitRequestFormParams(message="Answer me", requested_schema=schema)
    answer = await Elicitations(time_limit=0.05).ask(CallRoute(emit=emit, **route), "evil", params)
    return answer, events


FIELD = {"type": "string", "title": "Name"}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("schema", "why"),
    [
        (_form(20_000, 50), "the form has 20,000 fields (at most 50)"),
        (_form(3, 101), "field 'f0' has 101 options (at most 100)"),
        (
            {
                **OBJ,
                "properties": {
                    "f": {"type": "string", "oneOf": [{"const": n} for n in range(101)]}
                },
            },
            "field 'f' has 101 options (at most 100)",
        ),
        ({**OBJ, "properties": {"f": {**OBJ, "properties": {"g": FIELD}}}}, "field 'f' has type"),
        ({**OBJ, "properties": {"f": {"type": "array", "items": FIELD}}}, "a list without options"),
        ({**OBJ, "properties": {"f": {**FIELD, "description": "d" * 2_001}}}, "2,001 characters"),
        ({**OBJ, "properties": {"f": {**FIELD, "enum": ["x" * 201]}}}, "a value over 200"),
        (
            {
                **OBJ,
                "properties": {f"f{n}": {**FIELD, "description": "d" * 1_500} for n in range(50)},
            },
            "bytes (at most 65,536)",
        ),
        ({"type": "array"}, "not of type object"),
    ],
)
async def test_a_form_out_of_mcps_bounds_is_refused_in_one_line(
    schema: dict[str, Any], why: str
) -> None:
    """The trial: 20,000 fields × 50 options went to the page whole, a 26.8 MB event that froze
    Chromium. The server now gets an error saying why; the page one closed line."""
    answer, events = await _asked(schema)
    assert answer.code == -32602 and answer.message.startswith("web.py refused the question: ")
    assert why in answer.message, answer.message
    assert [k for k, _ in events] == ["elicitation", "elicitation_done"]
    question, done = events[0][1], events[1][1]
    assert why in question["refused"] and "requestedSchema" not in question
    assert done == {"elicitationId": question["elicitationId"], "action": "cancel",
                    "reason": "refused"}  # fmt: skip


@pytest.mark.anyio
async def test_mcps_restricted_forms_are_shown() -> None:
    """Every field shape MCP's spec has (and the page draws) still reaches the page."""
    form = {
        **OBJ,
        "title": "Confirm",
        "properties": {
            "name": {**FIELD, "minLength": 1, "maxLength": 40, "format": "email"},
            "age": {"type": "integer", "minimum": 1, "maximum": 120, "default": 30},
            "colour": {"type": "string", "enum": ["r", "g"], "enumNames": ["Red", "Green"]},
            "size": {"type": "string", "oneOf": [{"const": "s", "title": "Small"}]},
            "ok": {"type": "boolean", "default": True},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            "more": {"type": "array", "items": {"anyOf": [{"const": "x", "title": "X"}]}},
        },
        "required": ["name"],
    }
    for schema in (form, _form(50, 100), {**OBJ, "properties": {}}):
        answer, events = await _asked(schema)
        assert isinstance(answer, ElicitResult) and answer.action == "cancel"  # not answered
        assert events[0][1]["requestedSchema"] == schema and "refused" not in events[0][1]


def test_the_server_hears_why_its_question_was_refused(web: InProcessWeb, fake: FakeLLM) -> None:
    q = "Ask me something huge"
    fake.script(q, Calls(("ask_big", {})), Reply("Ok."))

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "elicitation" and "refused" not in data:  # shown: nobody would answer
            answer_elicitation(web, data["elicitationId"], "cancel")

    events = chat_stream(web, {"message": q}, on_event, timeout=120)
    question = next(d for k, d in events if k == "elicitation")
    assert question["refused"] == "the form has 2,000 fields (at most 50)"
    result = next(d for k, d in events if k == "tool_result")
    assert "web.py refused the question: the form has 2,000 fields" in result["result"], result


# ------------------------------------------------------------------ auto approval


@pytest.mark.anyio
async def test_auto_approval_accepts_only_a_form_that_asks_nothing() -> None:
    """`pure_confirmation` said "every field has a default" but accepted `{}` for a form
    of optional fields without one: with approval `auto` the server got answers nobody gave."""
    optional = {**OBJ, "properties": {"note": {"type": "string"}}}
    params = ElicitRequestFormParams(message="?", requested_schema=optional)
    assert pure_confirmation(params) is None
    answer, events = await _asked(optional, auto=True, let_run=True)
    assert answer.action == "cancel" and events[0][0] == "elicitation"  # asked, not answered

    defaults = {**OBJ, "properties": {"ok": {"type": "boolean", "default": True}}}
    for schema, content in ((defaults, {"ok": True}), ({**OBJ, "properties": {}}, {})):
        answer, events = await _asked(schema, auto=True, let_run=True)
        assert answer.action == "accept" and answer.content == content and events == []
