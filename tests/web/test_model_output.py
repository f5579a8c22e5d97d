"""Issue #11, web.py end to end: whatever a model sends back, the conversation goes on.

1. Tool-call ids the model repeats (or leaves out, or makes too long) are made unique on our
   side, so the `messages` a turn returns are accepted as history by the next turn.
2. Absurd model output (100,000-deep arguments, huge strings, invalid or non-object JSON, NaN,
   absurd names, missing ids, unreadable stream chunks, hundreds of calls) becomes a tool error
   or a 502 with a sentence on both chat routes, never a 500.

The scripted LLM streams raw deltas here (`Raw`, tests/fake_llm.py), which no well-behaved model
sends; web.py is a process with tests/media_mcp.py's tools (conftest.media_web). Pictures,
sound and resources in tool results: test_media_results.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fake_llm import FakeLLM, Raw, Reply, tc
from tests.servers import Service
from tests.web.helpers import ROUTES, turn


@pytest.fixture(scope="module")
def web(media_web: Service) -> Service:
    """web.py as a process with tests/media_mcp.py, approval off (conftest.media_web)."""
    return media_web


def ids_of(messages: list[dict[str, Any]]) -> list[str]:
    return [c["id"] for m in messages if m.get("tool_calls") for c in m["tool_calls"]]


# ------------------------------------------------------------------ 1. duplicate tool-call ids


@pytest.mark.parametrize("route", ROUTES)
def test_duplicate_tool_call_ids_keep_the_conversation_going(
    web: Service, fake: FakeLLM, route: str
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


def test_missing_long_and_reused_ids_are_made_unique(web: Service, fake: FakeLLM) -> None:
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
    web: Service, fake: FakeLLM, name: str, route: str
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


def test_non_string_content_deltas_do_not_break_the_turn(web: Service, fake: FakeLLM) -> None:
    q = "odd content deltas"
    fake.script(q, Raw([{"content": ["not", "a", "string"]}, {"content": " and text"}], "stop"))
    for route in ROUTES:
        status, body = turn(web, route, q)
        assert status == "ok", (route, body)
        assert body["response"].endswith(" and text")
