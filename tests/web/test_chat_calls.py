"""web.py's API around the chat, in process (conftest.web: main.py's server and the small test
server in memory, the shop's API in process, the scripted LLM): the seed's shapes of /healthz,
/api/servers, /api/tools and /api/config, and direct tool calls (POST /api/call-tool), checked
against the tool's schema first, a timeout as a clear error, a tool whose schema is broken
left to its server. The chat loop itself: test_chat.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_llm import Calls, FakeLLM, Reply
from tests.inproc import InProcessWeb, web_app
from tests.mini_mcp import make_server
from tests.web.helpers import SHOP_TOOLS, chat, post


@pytest.fixture(scope="module")
def web_servers() -> dict[str, Any]:
    """The small test server beside main.py, both in memory (conftest.web)."""
    return {"mini": make_server()}


# ------------------------------------------------------------------ API shapes and direct calls


def test_health_servers_tools_config(web: InProcessWeb) -> None:
    health = httpx.get(f"{web.url}/healthz").json()
    assert health == {"status": "ok", "servers": {"total": 2, "connected": 2}, "llm": True}

    servers = {s["name"]: s for s in httpx.get(f"{web.url}/api/servers").json()["servers"]}
    assert servers["shop"]["status"] == "connected" and servers["shop"]["transport"] == "http"
    assert servers["shop"]["tools"] == 8 and servers["shop"]["error"] is None
    assert servers["mini"]["url"].endswith("/mcp")

    tools = httpx.get(f"{web.url}/api/tools").json()["tools"]
    shop = {t["name"]: t for t in tools if t["server"] == "shop"}
    assert set(shop) == SHOP_TOOLS
    for t in tools:  # the seed's shape, plus the extras
        assert {"server", "name", "description", "input_schema"} <= t.keys()
        assert isinstance(t["input_schema"], dict)
    assert shop["create_purchase"]["read_only"] is False
    inventory = shop["get_inventory"]["output_schema"]  # the page picks its view by it
    assert inventory["type"] == "object" and "productId" in json.dumps(inventory)
    assert all("output_schema" in t for t in tools)
    assert all(shop[n]["read_only"] for n in SHOP_TOOLS - {"create_purchase"})
    functions = [t["function"] for t in tools]
    assert len(set(functions)) == len(functions)
    assert all(len(f) <= 64 and f.replace("_", "").replace("-", "").isalnum() for f in functions)

    cfg = httpx.get(f"{web.url}/api/config").json()
    assert cfg["llmConfigured"] is True and cfg["toolApproval"] == "ask"
    assert cfg["maxToolRounds"] == 8 and cfg["configErrors"] == []
    assert cfg["currency"] == "USD"


def test_call_tool_direct(web: InProcessWeb) -> None:
    r = post(web, "/api/call-tool", {"server": "shop", "name": "get_products", "args": {}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["isError"] is False
    products = json.loads(body["result"])
    assert [p["name"] for p in products][:1] == ["Galaxy Smart Watch"]

    r = post(
        web, "/api/call-tool", {"server": "shop", "name": "get_product", "args": {"productId": 999}}
    )
    assert r.status_code == 200 and r.json()["isError"] is True
    assert "does not exist" in r.json()["result"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"server": "nope", "name": "x", "args": {}}, 404, "Unknown MCP server 'nope'"),
        ({"server": "shop", "name": "nope", "args": {}}, 404, "has no tool 'nope'"),
        ({"server": "shop", "name": "get_product", "args": {"productId": "1"}}, 422, "productId"),
        ({"server": "shop", "name": "get_product", "args": {}}, 422, "productId: is required"),
        # main.py refuses what its schema does not name, and its schema says so
        (
            {"server": "shop", "name": "get_products", "args": {"bogus": 1}},
            422,
            "unknown field 'bogus' (known: limit, offset)",
        ),
        ({"server": "mini", "name": "add", "args": {"a": 1, "b": 2, "c": 3}}, 200, "3"),
    ],
)
def test_call_tool_validates_against_the_schema_first(
    web: InProcessWeb, body: dict[str, Any], status: int, needle: str
) -> None:
    r = post(web, "/api/call-tool", body)
    assert r.status_code == status, r.text
    text = r.json().get("detail") if status != 200 else r.json()["result"]
    assert needle in str(text)


def test_call_tool_timeout_is_a_clear_error(web: InProcessWeb) -> None:
    start_t = time.monotonic()
    r = post(web, "/api/call-tool", {"server": "mini", "name": "slow", "args": {"seconds": 20}})
    assert r.status_code == 504
    assert r.json()["detail"] == "Tool 'slow' on server 'mini' did not answer within 3s"
    assert time.monotonic() - start_t < 10
    # the session survives a timed-out call
    r = post(web, "/api/call-tool", {"server": "mini", "name": "echo", "args": {"text": "hi"}})
    assert r.json()["result"] == "echo: hi"


def test_tool_with_a_broken_schema_is_left_to_the_server(fake: FakeLLM, tmp_path: Path) -> None:
    with web_app(
        tmp_path,
        in_memory={"mini": make_server(broken_schema=True)},
        OPENAI_API_KEY="k",
        OPENAI_API_BASE=fake.base_url,
    ) as web:
        call = {"server": "mini", "name": "broken_ref", "args": {"text": "hi"}}
        r = post(web, "/api/call-tool", call)
        assert r.status_code == 200, r.text
        assert r.json()["result"] == "broken ok: hi"
        r = post(web, "/api/call-tool", call | {"args": {"text": 5}})  # the server judges
        assert r.status_code == 200 and r.json()["isError"] is True, r.text

        q = "Use the tool with the broken schema"
        fake.script(q, Calls(("broken_ref", {"text": "yo"})), Reply("It worked."))
        body = chat(web, q).json()
        assert body["response"] == "It worked.", body
        assert body["toolCalls"][0]["result"] == "broken ok: yo"
        assert "input schema unusable" in web.log()
