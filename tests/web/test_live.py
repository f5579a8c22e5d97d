"""Issue 14, web.py's side: server questions (MCP elicitation) passed to the page and
answered, live progress, Stop, the tool form's confirmation, and servers that are down.

web.py runs in process (tests/inproc.py) with main.py's server and a small `live` test server
in memory, server-everything over stdio (the third-party server that elicits and reports
progress), and the scripted LLM (tests/fake_llm.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import MCPError, UrlElicitationRequiredError
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ElicitRequestFormParams, ElicitRequestURLParams, ToolAnnotations
from mcp.types.jsonrpc import URL_ELICITATION_REQUIRED
from pydantic import BaseModel, Field
from starlette.testclient import TestClient

from product_mcp.chat.elicitation import CallRoute, Elicitations
from product_mcp.mcp_server import mcp as shop_server
from tests.fake_llm import Calls, FakeLLM, Reply
from tests.inproc import InProcessWeb, web_app
from tests.mini_mcp import build_app, make_server
from tests.servers import ThreadServer
from tests.web_helpers import (
    EVERYTHING,
    answer_elicitation,
    approve,
    chat_stream,
    need_node,
    stock,
    take_body,
)

RO = ToolAnnotations(read_only_hint=True)
CANCELLED: list[str] = []  # what the live server saw cancelled
LINKED: set[str] = set()  # the tags whose link the live server takes as opened


class Colour(BaseModel):
    colour: str = Field(json_schema_extra={"enum": ["red", "blue"]})
    count: int = Field(ge=1, le=5)


def live_server() -> MCPServer[None]:
    live: MCPServer[None] = MCPServer("live")

    @live.tool(description="Ask the user for a colour.", annotations=RO)
    async def ask_colour(ctx: Context) -> str:
        answer = await ctx.elicit("Which colour, and how many?", Colour)
        if answer.action == "accept":
            return f"accept: {answer.data.count} × {answer.data.colour}"
        return answer.action

    @live.tool(description="Needs the user to open a link first.", annotations=RO)
    async def needs_link(tag: str) -> str:
        if tag not in LINKED:
            LINKED.add(tag)  # the next call finds the link opened
            link = ElicitRequestURLParams(
                message="Sign in to the test shop",
                url=f"https://example.com/auth/{tag}",
                elicitation_id=f"auth-{tag}",
            )
            raise UrlElicitationRequiredError([link])
        return f"linked {tag}"

    @live.tool(description="Says -32042 with data that names no link.", annotations=RO)
    async def bad_link(data: str) -> str:
        raise MCPError(URL_ELICITATION_REQUIRED, "open a link", json.loads(data))

    @live.tool(description="Wait until cancelled.", annotations=RO)
    async def hold(tag: str) -> str:
        try:
            await anyio.sleep(30)
        except anyio.get_cancelled_exc_class():
            CANCELLED.append(tag)
            raise
        return "held"

    return live


@pytest.fixture(scope="module")
def web(
    shop_api: TestClient, chat_settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessWeb]:
    need_node()
    servers = {"everything": {"command": "node", "args": [str(EVERYTHING / "index.js"), "stdio"]}}
    in_memory = {"shop": shop_server, "live": live_server()}
    settings = {**chat_settings, "TOOL_CALL_TIMEOUT": "10"}
    with web_app(tmp_path_factory.mktemp("live"), servers, in_memory=in_memory, **settings) as w:
        yield w


def _answering(web: InProcessWeb, action: str, content: Any = None) -> Any:
    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "approval_required":
            approve(web, data["approvalId"], True)
        if kind == "elicitation":
            r = answer_elicitation(web, data["elicitationId"], action, content)
            assert r.status_code == 200, r.text

    return on_event


# ------------------------------------------------------------------ questions


def test_a_form_question_is_checked_then_answered(web: InProcessWeb, fake: FakeLLM) -> None:
    q = "Pick a colour"
    fake.script(q, Calls(("ask_colour", {})), Reply("Done."))
    seen: list[dict[str, Any]] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind != "elicitation":
            return
        seen.append(data)
        qid = data["elicitationId"]
        bad = answer_elicitation(web, qid, "accept", {"colour": "green", "count": 9})
        assert bad.status_code == 422
        assert bad.json()["detail"] == 'content.colour: must be one of "red", "blue" (got "green")'

        assert answer_elicitation(web, qid, "accept", {"colour": "blue"}).status_code == 422
        assert answer_elicitation(web, qid, "accept", {"colour": "blue", "count": 2}).json() == {
            "ok": True,
            "action": "accept",
        }
        assert answer_elicitation(web, qid, "decline").status_code == 404  # answered already

    events = chat_stream(web, {"message": q}, on_event)
    [question] = seen
    call = next(d for k, d in events if k == "tool_call")
    assert question["id"] == call["id"] and question["server"] == "live"
    assert question["tool"] == "ask_colour" and question["mode"] == "form"
    assert question["message"] == "Which colour, and how many?"
    assert question["requestedSchema"]["properties"]["colour"]["enum"] == ["red", "blue"]
    done = next(d for k, d in events if k == "elicitation_done")
    assert done == {"elicitationId": question["elicitationId"], "action": "accept",
                    "reason": "answered"}  # fmt: skip
    result = next(d for k, d in events if k == "tool_result")
    assert result["result"] == "accept: 2 × blue"


def test_server_everything_asks_through_the_page(web: InProcessWeb, fake: FakeLLM) -> None:
    """A third-party server's question; its tool is not read-only and does not say it asks,
    so web.py's own approval comes first."""
    q = "Trigger the elicitation"
    fake.script(q, Calls(("trigger-elicitation-request", {})), Reply("Ok."))
    events = chat_stream(web, {"message": q}, _answering(web, "accept", {"name": "Ann Lee"}))
    kinds = [k for k, _ in events]
    assert kinds.index("approval_required") < kinds.index("elicitation")
    question = next(d for k, d in events if k == "elicitation")
    assert question["server"] == "everything" and question["requestedSchema"]["required"] == [
        "name"
    ]
    result = next(d for k, d in events if k == "tool_result")
    assert "Ann Lee" in result["result"]

    q2 = "Trigger it and decline"
    fake.script(q2, Calls(("trigger-elicitation-request", {})), Reply("Ok."))
    events = chat_stream(web, {"message": q2}, _answering(web, "decline"))
    result = next(d for k, d in events if k == "tool_result")
    assert "decline" in result["result"].lower() and "Ann Lee" not in result["result"]


def test_a_link_the_server_requires_is_asked_for_and_the_call_retried(
    web: InProcessWeb, fake: FakeLLM
) -> None:
    """Found from outside: a server answering a call with -32042 (open this link first: a
    sign-in, a payment) had its link dropped: the user saw only "rejected". The page now gets
    the link as a question; once the user opened it the call runs again. Declined, or with no
    page to ask (/api/call-tool), the call did not run and the error gives the link."""
    q = "Use the linked tool"
    fake.script(q, Calls(("needs_link", {"tag": "a"})), Reply("Done."))
    events = chat_stream(web, {"message": q}, _answering(web, "accept"))
    question = next(d for k, d in events if k == "elicitation")
    assert question["mode"] == "url" and question["url"] == "https://example.com/auth/a"
    assert question["message"] == "Sign in to the test shop" and question["tool"] == "needs_link"
    result = next(d for k, d in events if k == "tool_result")
    assert result["result"] == "linked a" and not result.get("isError"), result

    q2 = "Use the linked tool, but decline"
    fake.script(q2, Calls(("needs_link", {"tag": "b"})), Reply("Ok."))
    events = chat_stream(web, {"message": q2}, _answering(web, "decline"))
    result = next(d for k, d in events if k in ("tool_result", "tool_error"))
    said = json.dumps(result)
    assert "did not run" in said and "https://example.com/auth/b" in said, result

    r = web.post("/api/call-tool", json={"server": "live", "name": "needs_link",
                                         "args": {"tag": "c"}})  # fmt: skip
    assert r.status_code == 502, r.text
    assert r.json()["detail"] == (
        "'needs_link' did not run: MCP server 'live' needs the user to open a link first: "
        "Sign in to the test shop (https://example.com/auth/c). Open it, then ask again"
    )
    # data that is not what -32042 promises: the error as the server said it (review: a 500)
    for data in (
        '"x"',
        "[1]",
        '{"elicitations": 5}',
        '{"elicitations": null}',
        '{"elicitations": [1]}',
    ):
        args = {"server": "live", "name": "bad_link", "args": {"data": data}}
        r = web.post("/api/call-tool", json=args)
        assert r.status_code == 502, r.text
        assert r.json()["detail"] == "Server 'live' rejected 'bad_link': open a link", data


def test_without_a_page_questions_are_cancelled(web: InProcessWeb) -> None:
    """/api/call-tool has nobody to ask: a question that needs answers is cancelled."""
    r = web.post("/api/call-tool", json={"server": "live", "name": "ask_colour", "args": {}})
    assert r.status_code == 200 and r.json()["result"] == "cancel"


@pytest.mark.anyio
async def test_an_unanswered_question_times_out_as_cancel() -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def emit(kind: str, data: dict[str, Any]) -> None:
        events.append((kind, data))

    params = ElicitRequestFormParams(message="?", requested_schema={"type": "object",
                                                                    "properties": {}})  # fmt: skip
    answer = await Elicitations(time_limit=0.2).ask(CallRoute(emit=emit), "s", params)
    assert answer.action == "cancel"
    assert [k for k, _ in events] == ["elicitation", "elicitation_done"]
    assert events[1][1]["reason"] == "timeout" and events[1][1]["action"] == "cancel"


@pytest.mark.anyio
async def test_a_link_too_long_to_show_is_not_passed_on() -> None:
    """Review: a URL question's message was cut, its link passed on whole (a server's megabytes
    to every page). Up to MAX_URL characters it goes; longer, the page gets none (a cut link
    would lead somewhere else)."""
    from product_mcp.chat.elicitation import MAX_URL

    events: list[tuple[str, dict[str, Any]]] = []

    async def emit(kind: str, data: dict[str, Any]) -> None:
        events.append((kind, data))

    asks = Elicitations(time_limit=0.05)
    for length, shown in ((MAX_URL, True), (MAX_URL + 1, False)):
        url = "https://example.com/" + "a" * (length - 20)
        link = ElicitRequestURLParams(message="Sign in", url=url, elicitation_id="x")
        await asks.ask(CallRoute(emit=emit), "s", link)
        question = next(d for k, d in reversed(events) if k == "elicitation")
        assert question["url"] == (url if shown else None)


# ------------------------------------------------------------------ the tool form


def test_the_tool_form_asks_before_a_purchase(web: InProcessWeb, shop_api: TestClient) -> None:
    before = stock(shop_api, 1)
    body = {
        "server": "shop",
        "name": "create_purchase",
        "args": {"customerName": "Form", "items": [{"productId": 1, "quantity": 1}]},
        "approval": "ask",
    }
    r = web.post("/api/call-tool", json=body)
    assert r.status_code == 409
    assert r.json()["needsConfirmation"] is True and r.json()["name"] == "create_purchase"
    assert stock(shop_api, 1) == before
    r = web.post("/api/call-tool", json={**body, "confirmed": True})
    assert r.status_code == 200 and r.json()["isError"] is False, r.text
    assert json.loads(r.json()["result"])["customerName"] == "Form"
    assert stock(shop_api, 1) == before - 1
    ro = {"server": "shop", "name": "get_product", "args": {"productId": 1}, "approval": "ask"}
    assert web.post("/api/call-tool", json=ro).status_code == 200  # read-only: no question
    bad = {"server": "shop", "name": "search_products", "args": {"query": "x", "minPrice": -5}}
    r = web.post("/api/call-tool", json=bad)
    assert r.status_code == 422
    assert r.json()["detail"] == (
        "invalid arguments for 'search_products': minPrice: must be ≥ 0 (got -5)"
    )


# ------------------------------------------------------------------ progress


def test_progress_is_live_and_tied_to_the_call(web: InProcessWeb, fake: FakeLLM) -> None:
    q = "Run the long operation and the sales report"
    fake.script(
        q,
        Calls(
            ("trigger-long-running-operation", {"duration": 1, "steps": 3}),
            ("analyze_sales", {"groupBy": "product"}),
        ),
        Reply("Both done."),
    )
    events = chat_stream(web, {"message": q, "approval": "auto"})
    calls = {d["tool"]: d["id"] for k, d in events if k == "tool_call"}
    for tool in ("trigger-long-running-operation", "analyze_sales"):
        mine = [i for i, (k, d) in enumerate(events) if k == "progress" and d["id"] == calls[tool]]
        assert mine, tool
        end = next(i for i, (k, d) in enumerate(events) if k == "tool_result" and d["tool"] == tool)
        assert max(mine) < end
    sales = [d for k, d in events if k == "progress" and d["id"] == calls["analyze_sales"]]
    assert sales[-1] == {"id": calls["analyze_sales"], "progress": 3, "total": 3,
                         "message": "Done"}  # fmt: skip


# ------------------------------------------------------------------ stop


def _stop_when(web: InProcessWeb, trigger: str) -> Any:
    turn: dict[str, str] = {}

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "turn":
            turn["id"] = data["turnId"]
        if kind == trigger and "stopped" not in turn:
            turn["stopped"] = "yes"
            r = web.post("/api/chat/stop", json={"turnId": turn["id"]})
            assert r.json() == {"ok": True}

    return on_event, turn


def test_stop_ends_the_models_stream_and_keeps_what_was_said(
    web: InProcessWeb, fake: FakeLLM
) -> None:
    q = "Tell me a very long story"
    story = "once upon a time " * 200
    fake.script(q, Reply(story, chunks=400))  # ~4 s of tokens
    on_event, turn = _stop_when(web, "token")
    events = chat_stream(web, {"message": q}, on_event)
    done = events[-1]
    assert done[0] == "done" and done[1]["stopped"] is True
    said = "".join(d["text"] for k, d in events if k == "token")
    assert done[1]["response"] == said and 0 < len(said) < len(story) and story.startswith(said)
    assert done[1]["messages"] == [{"role": "assistant", "content": said}]
    r = web.post("/api/chat/stop", json={"turnId": turn["id"]})
    assert r.status_code == 404  # finished


def test_stop_cancels_tool_calls_in_flight(web: InProcessWeb, fake: FakeLLM) -> None:
    q = "Hold on"
    fake.script(q, Calls(("hold", {"tag": "stop-me"}), text="Holding."), Reply("never"))
    on_event, _ = _stop_when(web, "tool_call")
    events = chat_stream(web, {"message": q}, on_event)
    result = next(d for k, d in events if k == "tool_result")
    assert result["stopped"] is True and "stopped by the user" in result["error"]
    done = events[-1][1]
    assert events[-1][0] == "done" and done["stopped"] is True
    assert [m["role"] for m in done["messages"]] == ["assistant", "tool"]
    assert done["messages"][1]["content"].startswith("Error: stopped by the user")
    assert len(fake.requests_for(q)) == 1  # the model was not asked again
    for _ in range(100):
        if "stop-me" in CANCELLED:
            break
        threading.Event().wait(0.05)
    assert "stop-me" in CANCELLED  # the server got notifications/cancelled


# ------------------------------------------------------------------ a server that is down


def test_a_server_that_is_down(
    fake: FakeLLM, chat_settings: dict[str, str], tmp_path: Path
) -> None:
    mini = ThreadServer(build_app(make_server())).start()
    with web_app(tmp_path, {"mini": {"type": "http", "url": f"{mini.url}/mcp"}},
                 in_memory={"live": live_server()}, **chat_settings) as web:  # fmt: skip
        assert web.get("/api/servers").json()["servers"][0]["available"] is True
        mini.stop()
        call = {"server": "mini", "name": "echo", "args": {"text": "hi"}}
        assert web.post("/api/call-tool", json=call).status_code == 503
        servers = {s["name"]: s for s in web.get("/api/servers").json()["servers"]}
        assert servers["mini"]["available"] is False and "echo" in servers["mini"]["knownTools"]

        q = "Echo hi"
        fake.script(q, Calls(("echo", {"text": "hi"})), Reply("The echo server is down."))
        events = chat_stream(web, {"message": q})
        assert events[1][0] == "servers_unavailable"
        [down] = events[1][1]["servers"]
        assert down["name"] == "mini" and "echo" in down["tools"]
        result = next(d for k, d in events if k == "tool_result")
        assert result["server"] == "mini" and result["tool"] == "echo"
        assert result["unavailable"] is True and "unknown tool" not in result["error"]
        assert result["error"].startswith("MCP server 'mini' is unavailable (")
        first = fake.requests_for(q)[0]
        offered = {t["function"]["name"] for t in first.get("tools", [])}
        assert "echo" not in offered and "ask_colour" in offered
        assert "'mini' (tools: " in first["messages"][0]["content"]


def test_a_gateway_error_during_a_read_only_call_is_retried(tmp_path: Path) -> None:
    """A balancer answering 502 (a replica going down behind nginx) for a `tools/call`: the
    SDK turns that into "Server returned an error response", which web.py took for the server
    rejecting the call (seen in the rolling-restart check). A read-only tool is retried on a
    fresh session; a tool that writes is reported as a lost connection, never sent twice."""
    failures = {"echo": 1, "write_note": 1}
    inner = build_app(make_server())

    async def gateway(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            body, again = await take_body(receive)
            tool = next((t for t in failures if f'"name":"{t}"' in body.decode()), None)
            if b'"tools/call"' in body and tool and failures[tool]:
                failures[tool] -= 1
                html = b"<html><body>502 Bad Gateway</body></html>"
                headers = [(b"content-type", b"text/html")]
                await send({"type": "http.response.start", "status": 502, "headers": headers})
                await send({"type": "http.response.body", "body": html})
                return
            return await inner(scope, again, send)
        await inner(scope, receive, send)

    mini = ThreadServer(gateway).start()
    try:
        with web_app(tmp_path, {"mini": {"type": "http", "url": f"{mini.url}/mcp"}}) as web:
            r = web.post("/api/call-tool", json={"server": "mini", "name": "echo",
                                                 "args": {"text": "hi"}})  # fmt: skip
            assert r.status_code == 200 and r.json()["result"] == "echo: hi", r.text
            assert failures["echo"] == 0  # the 502 was met, then retried
            call = {"server": "mini", "name": "write_note", "args": {"note": "n"}}
            r = web.post("/api/call-tool", json=call)
            assert r.status_code == 503 and "Lost the connection" in r.text, r.text
    finally:
        mini.stop()


def test_a_stopped_call_says_how_long_it_ran(web: InProcessWeb, fake: FakeLLM) -> None:
    """Found from outside: a call stopped after running 1.5 s reported `durationMs: 0` (its
    card read "0 ms · stopped")."""
    q = "Hold on a while"
    fake.script(q, Calls(("hold", {"tag": "stop-later"}), text="Holding."), Reply("never"))
    turn: dict[str, str] = {}

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "turn":
            turn["id"] = data["turnId"]
        if kind == "tool_call" and "stopped" not in turn:
            turn["stopped"] = "yes"
            time.sleep(0.3)  # the call runs meanwhile
            assert web.post("/api/chat/stop", json={"turnId": turn["id"]}).json() == {"ok": True}

    events = chat_stream(web, {"message": q}, on_event)
    result = next(d for k, d in events if k == "tool_result")
    assert result["stopped"] is True and result["durationMs"] >= 250, result
    done = events[-1][1]
    assert done["toolCalls"][0]["duration_ms"] == result["durationMs"], done["toolCalls"]
