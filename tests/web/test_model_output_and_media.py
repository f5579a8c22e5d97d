"""Issue #11, web.py end to end: whatever a model sends back, the conversation goes on.

1. Tool-call ids the model repeats (or leaves out, or makes too long) are made unique on our
   side, so the `messages` a turn returns are accepted as history by the next turn.
2. Absurd model output (100,000-deep arguments, huge strings, invalid or non-object JSON, NaN,
   absurd names, missing ids, unreadable stream chunks, hundreds of calls) becomes a tool error
   or a 502 with a sentence on both chat routes, never a 500.
3. Images, audio and embedded resources reach the page as a bounded `content` list (only
   image and audio types safe to show) while the model gets a short text stand-in.

The scripted LLM here can also stream raw deltas (`Raw`), which no well-behaved model sends.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.fake_llm import Calls, FakeLLM, Reply, _chunk
from tests.media_mcp import BIG_PNG, PNG, wav
from tests.servers import Service, free_port, start
from tests.stack import Stack
from tests.web_helpers import EVERYTHING, chat_stream, need_node

# ------------------------------------------------------------------ a model that misbehaves


@dataclass
class Raw:
    """One assistant turn streamed exactly as given: a dict is one chunk's `delta`, a str is
    sent as the raw `data:` of an SSE event (to send what is not even JSON)."""

    deltas: list[dict[str, Any] | str] = field(default_factory=list)
    finish: str = "tool_calls"


def tc(index: int | None, id: str | None, name: str | None, arguments: Any) -> dict[str, Any]:
    """One tool-call delta; None leaves a field out."""
    call: dict[str, Any] = {"type": "function", "function": {}}
    if index is not None:
        call["index"] = index
    if id is not None:
        call["id"] = id
    if name is not None:
        call["function"]["name"] = name
    if arguments is not None:
        call["function"]["arguments"] = arguments
    return {"tool_calls": [call]}


class RawFakeLLM(FakeLLM):
    async def _stream(self, turn: Any, tools: list[dict[str, Any]]) -> AsyncIterator[str]:
        if not isinstance(turn, Raw):
            async for piece in super()._stream(turn, tools):
                yield piece
            return
        yield _chunk({"role": "assistant", "content": ""})
        for delta in turn.deltas:
            yield _chunk(delta) if isinstance(delta, dict) else f"data: {delta}\n\n"
        yield _chunk({}, turn.finish)
        yield "data: [DONE]\n\n"


# ------------------------------------------------------------------ fixtures and helpers


def start_media() -> Service:
    """tests/media_mcp.py as a module (so the repo root, not tests/, is first on its path)."""
    port = free_port()
    return start(["-m", "tests.media_mcp", "--port", str(port)], port=port)


@pytest.fixture(scope="module")
def fake() -> Iterator[RawFakeLLM]:
    llm = RawFakeLLM().start()
    yield llm
    llm.stop()


@pytest.fixture(scope="module")
def web(fake: RawFakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Stack(tmp_path_factory.mktemp("model-output")) as s:
        media = s.add("media", start_media())
        yield s.web(
            {"media": {"url": f"{media.url}/mcp"}},
            {"OPENAI_API_KEY": "k", "OPENAI_API_BASE": fake.base_url, "TOOL_APPROVAL": "auto"},
        )


def turn(web: Service, route: str, message: str, history: list[dict[str, Any]] | None = None):
    """One chat turn on `route`: ("ok", body) or ("error", {"status", "message"})."""
    body = {"message": message, "history": history or []}
    if route == "chat":
        r = httpx.post(f"{web.url}/api/chat", json=body, timeout=60)
        if r.status_code == 200:
            return "ok", r.json()
        try:
            message = r.json()["detail"]
        except ValueError:
            message = r.text
        return "error", {"status": r.status_code, "message": message}
    events = chat_stream(web, body)
    kind, data = events[-1]
    assert kind in ("done", "error"), events[-3:]
    if kind == "error":
        return "error", data
    data["_events"] = events
    return "ok", data


def ids_of(messages: list[dict[str, Any]]) -> list[str]:
    return [c["id"] for m in messages if m.get("tool_calls") for c in m["tool_calls"]]


ROUTES = ["chat", "stream"]

# ------------------------------------------------------------------ 1. duplicate tool-call ids


@pytest.mark.parametrize("route", ROUTES)
def test_duplicate_tool_call_ids_keep_the_conversation_going(
    web: Service, fake: RawFakeLLM, route: str
) -> None:
    q1, q2 = f"echo twice, same id ({route})", f"and now? ({route})"
    fake.script(
        q1,
        Raw(
            [
                tc(0, "call_1", "echo", '{"text": "a"}'),
                tc(1, "call_1", "echo", '{"text": "b"}'),
            ]
        ),
        Reply("Both echoed."),
    )
    fake.script(q2, Reply("Still here."))
    status, body = turn(web, route, q1)
    assert status == "ok", body
    _, *tools, last = body["messages"]
    ids = ids_of(body["messages"])
    assert len(ids) == 2 and len(set(ids)) == 2
    assert ids[0] == "call_1", "the model's own id is kept where it is unique"
    assert [t["tool_call_id"] for t in tools] == ids
    assert [t["content"] for t in tools] == ["echo: a", "echo: b"]
    assert [c["tool_call_id"] for c in body["toolCalls"]] == ids
    assert last["content"] == "Both echoed."
    # the model's next request carries the same unique ids
    sent = fake.requests_for(q1)[-1]["messages"]
    assert ids_of(sent) == ids
    assert [m["tool_call_id"] for m in sent if m["role"] == "tool"] == ids
    if route == "stream":
        events = body["_events"]
        assert [d["id"] for k, d in events if k == "tool_call"] == ids
        assert sorted(d["id"] for k, d in events if k == "tool_result") == sorted(ids)

    history = [{"role": "user", "content": q1}, *body["messages"]]
    for next_route in ROUTES:
        status, again = turn(web, next_route, q2, history)
        assert status == "ok", (next_route, again)
        assert again["response"] == "Still here."


def test_missing_long_and_reused_ids_are_made_unique(web: Service, fake: RawFakeLLM) -> None:
    q1, q2 = "ids from a confused model", "what next?"
    long_a, long_b = "x" * 300 + "a", "x" * 300 + "b"  # equal in their first 200 characters
    fake.script(
        q1,
        Raw(
            [
                tc(0, None, "echo", '{"text": "no id"}'),
                tc(1, None, "echo", '{"text": "no id either"}'),
                tc(2, long_a, "echo", '{"text": "long a"}'),
                tc(3, long_b, "echo", '{"text": "long b"}'),
                tc(4, "", "echo", '{"text": "empty id"}'),
            ]
        ),
        Raw([tc(0, "call_1", "echo", '{"text": "round 2"}')]),
        Raw([tc(0, "call_1", "echo", '{"text": "round 3"}')]),  # the same id every round
        Reply("Done."),
    )
    fake.script(q2, Reply("Next."))
    status, body = turn(web, "chat", q1)
    assert status == "ok", body
    ids = ids_of(body["messages"])
    assert len(ids) == 7 and len(set(ids)) == 7, ids
    assert all(0 < len(i) <= 200 for i in ids)
    answered = [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"]
    assert answered == ids
    assert [c["result"] for c in body["toolCalls"]][-2:] == ["echo: round 2", "echo: round 3"]
    history = [{"role": "user", "content": q1}, *body["messages"]]
    for route in ROUTES:
        status, again = turn(web, route, q2, history)
        assert status == "ok", (route, again)


# ------------------------------------------------------------------ 2. absurd model output

DEEP = "[" * 100_000 + "]" * 100_000  # the case
DEEP_SHORT = "[" * 40_000 + "]" * 40_000
DEEP_OBJECT = '{"a":' * 15_000 + "1" + "}" * 15_000
NESTED_OK_JSON = '{"text": ' + "[" * 500 + "]" * 500 + "}"  # parses, far too deep to use
HUGE = '{"text": "' + "x" * 3_000_000 + '"}'
HUGE_PART = '{"text": "' + "x" * 1_000_000  # five of them: over the limit for one response
LONG_NAME = "echo" + "o" * 100_000


@dataclass
class Case:
    turn: Raw
    needle: str  # in every tool call's error (or in the 502's sentence)
    status: int = 200


CASES: dict[str, Case] = {
    "deep-arguments-100k": Case(Raw([tc(0, "c", "echo", DEEP)]), "nested too deeply"),
    "deep-arguments-40k": Case(Raw([tc(0, "c", "echo", DEEP_SHORT)]), "nested too deeply"),
    "deep-object": Case(Raw([tc(0, "c", "echo", DEEP_OBJECT)]), "nested too deeply"),
    "nested-500": Case(Raw([tc(0, "c", "echo", NESTED_OK_JSON)]), "nested too deeply"),
    "huge-string": Case(Raw([tc(0, "c", "echo", HUGE)]), "more than the limit"),
    "huge-strings-together": Case(
        Raw([tc(i, f"c{i}", "nope", HUGE_PART) for i in range(5)]), "unknown tool 'nope'"
    ),
    "invalid-json": Case(Raw([tc(0, "c", "echo", '{"text": ')]), "not valid JSON"),
    "list": Case(Raw([tc(0, "c", "echo", "[1, 2]")]), "must be a JSON object"),
    "string": Case(Raw([tc(0, "c", "echo", '"hi"')]), "must be a JSON object"),
    "null": Case(Raw([tc(0, "c", "echo", "null")]), "must be a JSON object"),
    "nan": Case(Raw([tc(0, "c", "echo", '{"text": NaN}')]), "not valid JSON"),
    "infinity": Case(Raw([tc(0, "c", "echo", '{"text": 1e999}')]), "not valid JSON"),
    "huge-number": Case(Raw([tc(0, "c", "echo", '{"text": ' + "9" * 5000 + "}")]), "not valid"),
    "arguments-as-object": Case(Raw([tc(0, "c", "echo", {"text": 5})]), "invalid arguments"),
    "long-name": Case(Raw([tc(0, "c", LONG_NAME, "{}")]), "unknown tool"),
    "markup-name": Case(Raw([tc(0, "c", "<img src=x onerror=alert(1)>\n", "{}")]), "unknown tool"),
    "no-name": Case(Raw([tc(0, "c", None, "{}")]), "unknown tool"),
    "no-id-no-index": Case(
        Raw([tc(None, None, "echo", "[]"), tc(None, None, "add", "[]")]), "must be a JSON object"
    ),
    "same-index-two-ids": Case(
        Raw([tc(0, "c1", "echo", "[1]"), tc(0, "c2", "echo", "[2]")]), "must be a JSON object"
    ),
    "too-many-calls": Case(
        Raw([tc(i, f"c{i}", "nope", "{}") for i in range(200)]), "unknown tool 'nope'"
    ),
    "unreadable-chunk": Case(Raw(["{not json"]), "could not be read", 502),
    "deep-chunk": Case(Raw(["[" * 100_000 + "]" * 100_000]), "could not be read", 502),
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("name", list(CASES))
def test_absurd_model_output_is_a_tool_error_or_a_502(
    web: Service, fake: RawFakeLLM, name: str, route: str
) -> None:
    case = CASES[name]
    q, q2 = f"absurd: {name}", f"after absurd: {name}"
    fake.script(q, case.turn, Reply("Handled."))
    fake.script(q2, Reply("Fine."))
    status, body = turn(web, route, q)
    if case.status != 200:
        assert status == "error" and body["status"] == case.status, body
        assert case.needle in body["message"], body
        assert len(body["message"]) < 1000
        return
    assert status == "ok", body
    assert body["response"] == "Handled."
    calls = body["toolCalls"]
    assert calls and all(case.needle in c["error"] for c in calls), [c.get("error") for c in calls]
    assert all(len(c["error"]) < 2000 for c in calls)
    assert all(len(json.dumps(c)) < 150_000 for c in calls), "tool call records stay bounded"
    if route == "stream":
        results = [d for k, d in body["_events"] if k == "tool_result"]
        assert len(results) == len(calls) and all(case.needle in d["error"] for d in results)
    if name == "too-many-calls":
        assert len(calls) == 64
        assert "200 tool calls" in body["messages"][0]["content"]
    # the model heard about every call, with the same ids
    sent = fake.requests_for(q)[-1]["messages"]
    assert [m["tool_call_id"] for m in sent if m["role"] == "tool"] == ids_of(body["messages"])
    # and the returned turn is good history for the next one, on both routes
    history = [{"role": "user", "content": q}, *body["messages"]]
    for next_route in ROUTES:
        status, again = turn(web, next_route, q2, history)
        assert status == "ok", (next_route, again)
    assert httpx.get(f"{web.url}/healthz").status_code == 200


def test_non_string_content_deltas_do_not_break_the_turn(web: Service, fake: RawFakeLLM) -> None:
    q = "odd content deltas"
    fake.script(q, Raw([{"content": ["not", "a", "string"]}, {"content": " and text"}], "stop"))
    for route in ROUTES:
        status, body = turn(web, route, q)
        assert status == "ok", (route, body)
        assert body["response"].endswith(" and text")


# ------------------------------------------------------------------ 3. images and audio


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def call_tool(
    web: Service, server: str, name: str, args: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = {"server": server, "name": name, "args": args or {}}
    r = httpx.post(f"{web.url}/api/call-tool", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_call_tool_passes_images_and_audio_through(web: Service) -> None:
    body = call_tool(web, "media", "picture")
    assert body["isError"] is False and body["durationMs"] >= 0
    stand_in = f"[image: image/png, {len(PNG)} bytes]"
    assert body["result"] == f"Here is the picture:\n{stand_in}\nNice, isn't it?"
    assert body["content"] == [
        {"type": "text", "text": "Here is the picture:"},
        {"type": "image", "mimeType": "image/png", "bytes": len(PNG), "data": b64(PNG)},
        {"type": "text", "text": "Nice, isn't it?"},
    ]

    sound = wav()
    body = call_tool(web, "media", "sound")
    assert body["result"] == f"[audio: audio/wav, {round(len(sound) / 1024)} KB]"
    assert body["content"] == [
        {"type": "audio", "mimeType": "audio/wav", "bytes": len(sound), "data": b64(sound)}
    ]

    # text-only results keep their old shape: no `content`
    plain = call_tool(web, "media", "echo", {"text": "hi"})
    assert plain == {"result": "echo: hi", "isError": False, "durationMs": plain["durationMs"]}


def test_unsafe_or_oversized_media_is_described_not_passed(web: Service) -> None:
    body = call_tool(web, "media", "unsafe")
    items = body["content"]
    assert len(items) == 4 and all("data" not in i for i in items), items
    assert [i["type"] for i in items] == ["image"] * 4
    assert "image/svg+xml is not shown" in items[0]["omitted"]
    assert "is not a PNG" in items[1]["omitted"]
    assert "not valid base64" in items[2]["omitted"]
    assert "text/html is not shown" in items[3]["omitted"]
    assert body["result"].startswith("[image: image/svg+xml, ")

    body = call_tool(web, "media", "big_picture")
    [item] = body["content"]
    assert "data" not in item and "larger than" in item["omitted"]
    assert item["bytes"] == len(BIG_PNG)
    assert body["result"] == f"[image: image/png, {len(BIG_PNG) / 1024 / 1024:.1f} MB]"


def test_embedded_resources_and_links(web: Service) -> None:
    body = call_tool(web, "media", "resources")
    text, picture, blob, link = body["content"]
    assert text == {
        "type": "resource",
        "uri": "memo://note",
        "mimeType": "text/plain",
        "text": "a note",
    }
    assert picture == {
        "type": "resource",
        "uri": "file:///pic.png",
        "mimeType": "image/png",
        "bytes": len(PNG),
        "data": b64(PNG),
    }
    assert blob["uri"] == "file:///data.bin" and "data" not in blob and blob["omitted"]
    assert link == {"type": "resource_link", "uri": "https://example.com/x", "name": "x"}
    assert body["result"].splitlines()[0] == "a note"
    assert f"[resource: file:///pic.png, image/png, {len(PNG)} bytes]" in body["result"]


def test_structured_result_keeps_its_json_and_the_model_hears_of_the_picture(
    web: Service, fake: RawFakeLLM
) -> None:
    body = call_tool(web, "media", "chart")
    assert json.loads(body["result"]) == {"points": 3}  # unchanged for existing clients
    assert body["content"][0]["data"] == b64(PNG)

    q = "draw the chart"
    fake.script(q, Calls(("chart", {})), Reply("Here it is."))
    events = chat_stream(web, {"message": q})
    result = next(d for k, d in events if k == "tool_result")
    assert json.loads(result["result"]) == {"points": 3}
    assert result["content"][0]["mimeType"] == "image/png"
    [tool_msg] = [m for m in fake.requests_for(q)[-1]["messages"] if m["role"] == "tool"]
    assert tool_msg["content"] == f'{{"points": 3}}\n[image: image/png, {len(PNG)} bytes]'


@pytest.mark.parametrize("route", ROUTES)
def test_chat_tool_results_carry_media_and_the_model_gets_a_stand_in(
    web: Service, fake: RawFakeLLM, route: str
) -> None:
    q = f"show me the picture ({route})"
    fake.script(q, Calls(("picture", {})), Reply("There it is."))
    status, body = turn(web, route, q)
    assert status == "ok", body
    stand_in = f"Here is the picture:\n[image: image/png, {len(PNG)} bytes]\nNice, isn't it?"
    [tool_msg] = [m for m in fake.requests_for(q)[-1]["messages"] if m["role"] == "tool"]
    assert tool_msg["content"] == stand_in, "no base64 for the model"
    assert body["toolCalls"][0]["result"] == stand_in
    assert "content" not in body["toolCalls"][0], "/api/chat keeps its shape"
    assert b64(PNG) not in json.dumps(body["messages"]), "no base64 in the history"
    if route == "stream":
        result = next(d for k, d in body["_events"] if k == "tool_result")
        assert result["result"] == stand_in
        assert result["content"][1] == {
            "type": "image",
            "mimeType": "image/png",
            "bytes": len(PNG),
            "data": b64(PNG),
        }


@pytest.mark.node
def test_reference_server_image_over_stdio(fake: RawFakeLLM, tmp_path: Any) -> None:
    need_node()
    with Stack(tmp_path) as s:
        web = s.web(
            {"everything": {"command": "node", "args": [str(EVERYTHING / "index.js"), "stdio"]}},
            {"OPENAI_API_KEY": "k", "OPENAI_API_BASE": fake.base_url},
        )
        body = call_tool(web, "everything", "get-tiny-image")
        [image] = [i for i in body["content"] if i["type"] == "image"]
        data = base64.b64decode(image["data"])
        assert image["mimeType"] == "image/png" and data.startswith(b"\x89PNG")
        assert image["bytes"] == len(data)
        assert f"[image: image/png, {round(len(data) / 1024)} KB]" in body["result"]

        q = "tiny image please"
        fake.script(q, Calls(("get-tiny-image", {})), Reply("Tiny."))
        events = chat_stream(web, {"message": q, "approval": "auto"})
        result = next(d for k, d in events if k == "tool_result")
        assert any(i.get("data") == image["data"] for i in result["content"])
        assert events[-1][0] == "done"
