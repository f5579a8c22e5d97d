"""web.py's chat stream (POST /api/chat/stream), in process (conftest.web: main.py's server
and the small test server in memory, the shop's API in process, the scripted LLM): a turn's
events in order, a purchase confirmed by main.py's own question (MCP elicitation, never asked
twice), web.py's approval for a tool whose server does not ask, and approval off. The chat
loop on POST /api/chat: test_chat.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.fake_llm import Calls, FakeLLM, Reply
from tests.inproc import InProcessWeb
from tests.mini_mcp import make_server
from tests.web.helpers import chat, post, tool_messages
from tests.web_helpers import answer_elicitation, approve, chat_stream, stock


@pytest.fixture(scope="module")
def web_servers() -> dict[str, Any]:
    """The small test server beside main.py, both in memory (conftest.web)."""
    return {"mini": make_server()}


# ------------------------------------------------------------------ streaming and approvals


def test_stream_events(web: InProcessWeb, fake: FakeLLM) -> None:
    q = "Stream please"
    fake.script(
        q,
        Calls(("get_product", {"productId": 4}), text="Let me check."),
        Reply("It costs **1599**.", chunks=4),
    )
    events = chat_stream(web, {"message": q})
    kinds = [k for k, _ in events]
    assert kinds[:2] == ["turn", "token"] and kinds[-1] == "done"  # turn: its id, for Stop
    assert len(events[0][1]["turnId"]) == 32
    assert "approval_required" not in kinds  # get_product is read-only
    i_call, i_result = kinds.index("tool_call"), kinds.index("tool_result")
    assert i_call < i_result
    call = events[i_call][1]
    assert call["server"] == "shop" and call["tool"] == "get_product"
    assert call["arguments"] == {"productId": 4}
    result = events[i_result][1]
    assert "Huawei MateBook X Pro" in result["result"] and result["durationMs"] >= 0
    after = "".join(d["text"] for k, d in events[i_result:] if k == "token")
    assert after == "It costs **1599**."
    assert kinds.count("token") >= 4
    done = events[-1][1]
    assert done["response"] == "It costs **1599**." and len(done["toolCalls"]) == 1


def _purchase_script(fake: FakeLLM, q: str, customer: str, product: int, qty: int) -> None:
    args = {"customerName": customer, "items": [{"productId": product, "quantity": qty}]}
    fake.script(q, Calls(("create_purchase", args)), Reply("Handled your order request."))


def test_purchase_is_confirmed_by_the_servers_question(
    web: InProcessWeb, fake: FakeLLM, shop_api: TestClient
) -> None:
    """Issue 14: main.py asks (elicitation, with its quote); web.py does not ask again."""
    q = "Buy two power banks for Ann"
    _purchase_script(fake, q, "Ann", 3, 2)
    before = stock(shop_api, 3)

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "elicitation":
            assert data["tool"] == "create_purchase" and data["server"] == "shop"
            assert "**Ann**" in data["message"] and "598.00 USD" in data["message"]
            # the quote itself too, so the page can draw it (names, its own money format)
            [item] = data["quote"]["items"]
            assert item["productId"] == 3 and item["quantity"] == 2 and item["name"]
            assert data["quote"]["totalAmount"] == item["lineTotal"] == 2 * item["unitPrice"]
            assert stock(shop_api, 3) == before, "must not run before the answer"
            r = answer_elicitation(web, data["elicitationId"], "accept", {})
            assert r.json() == {"ok": True, "action": "accept"}

    events = chat_stream(web, {"message": q}, on_event)
    kinds = [k for k, _ in events]
    assert "approval_required" not in kinds
    assert next(d for k, d in events if k == "tool_call")["needsApproval"] is False
    order = [kinds.index(k) for k in ("tool_call", "elicitation", "elicitation_done")]
    assert order == sorted(order) and order[-1] < kinds.index("tool_result")
    result = next(d for k, d in events if k == "tool_result")
    assert json.loads(result["result"])["customerName"] == "Ann"
    assert stock(shop_api, 3) == before - 2


def test_reject_sends_the_refusal_to_the_model(web: InProcessWeb, fake: FakeLLM) -> None:
    """web.py's own approval, for a tool whose server does not ask (mini's write_note)."""
    q = "Write a note for Bob"
    fake.script(q, Calls(("write_note", {"note": "hi"})), Reply("Handled."))
    ids: list[str] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "approval_required":
            ids.append(data["approvalId"])
            approve(web, data["approvalId"], False)

    events = chat_stream(web, {"message": q}, on_event)
    result = next(d for k, d in events if k == "tool_result")
    assert result["rejected"] is True and "rejected" in result["error"]
    [msg] = tool_messages(fake.requests_for(q)[1])
    assert "rejected" in msg["content"] and "not run" in msg["content"]
    assert events[-1][0] == "done"
    # an answered approval cannot be answered again
    r = post(web, "/api/chat/approve", {"approvalId": ids[0], "approved": True})
    assert r.status_code == 404


def test_auto_approval_and_plain_chat_run_directly(
    web: InProcessWeb, fake: FakeLLM, shop_api: TestClient
) -> None:
    before = stock(shop_api, 1)
    q1 = "Buy one watch for Cy, no questions"
    _purchase_script(fake, q1, "Cy", 1, 1)
    events = chat_stream(web, {"message": q1, "approval": "auto"})
    assert "approval_required" not in [k for k, _ in events]
    q2 = "Buy one watch for Di via script"
    _purchase_script(fake, q2, "Di", 1, 1)
    body = chat(web, q2).json()  # /api/chat keeps the seed's behaviour
    assert "result" in body["toolCalls"][0]
    assert stock(shop_api, 1) == before - 2
