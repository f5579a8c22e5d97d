"""web.py's own routes, its app in process (served by a thread, tests/inproc.py) with a stub
MCP manager: security defaults (Origin, Host, CSP, static files), no-key mode and CORS
origins, an unreachable LLM, and the request body and history limits."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from product_mcp.mcp_server import mcp as shop_server
from tests.fake_llm import FakeLLM, Reply
from tests.inproc import InProcessWeb, web_app
from tests.servers import ROOT, free_port
from tests.web.helpers import NO_LLM, SHOP_TOOLS, chat, post


@pytest.fixture(scope="module")
def web(
    chat_settings: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[InProcessWeb]:
    """No MCP servers at all: these routes answer before any would be asked."""
    with web_app(tmp_path_factory.mktemp("web-routes"), {}, **chat_settings) as client:
        yield client


def test_security_defaults(web: InProcessWeb) -> None:
    evil = "http://evil.example"
    r = httpx.post(
        f"{web.url}/api/call-tool",
        json={"server": "shop", "name": "get_products", "args": {}},
        headers={"Origin": evil},
    )
    assert r.status_code == 403
    pre = httpx.options(
        f"{web.url}/api/chat",
        headers={"Origin": evil, "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in pre.headers
    assert httpx.get(f"{web.url}/api/tools", headers={"Host": "evil.example"}).status_code == 400
    page = httpx.get(f"{web.url}/")
    assert page.status_code == 200 and "<html" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    # the page's real modules (public/js), each served and none writing HTML as text
    scripts = sorted(f"js/{p.name}" for p in (ROOT / "public" / "js").glob("*.js"))
    assert {"js/main.js", "js/markdown.js", "js/render.js", "js/media.js"} <= set(scripts)
    assert httpx.get(f"{web.url}/style.css").status_code == 200
    html_sinks = re.compile(r"\.(inner|outer)HTML\s*=|insertAdjacentHTML|document\.write|eval\(")
    for script in scripts:
        r = httpx.get(f"{web.url}/{script}")
        assert r.status_code == 200, script
        assert not html_sinks.search(r.text), script


def test_no_key_mode_and_cors_origins(shop_api: TestClient, tmp_path: Path) -> None:
    servers = {
        "shop": {"url": "http://shop.in-memory.test/mcp"},
        "broken": {"type": "carrier-pigeon", "url": "http://127.0.0.1:1/mcp"},
        "nowhere": {"args": ["x"]},
    }
    allowed = "http://allowed.example"
    with web_app(
        tmp_path, servers, in_memory={"shop": shop_server}, OPENAI_API_KEY="", CORS_ORIGINS=allowed
    ) as web:
        pre = httpx.options(
            f"{web.url}/api/call-tool",
            headers={"Origin": allowed, "Access-Control-Request-Method": "POST"},
        )
        assert pre.headers.get("access-control-allow-origin") == allowed
        r = post(
            web,
            "/api/call-tool",
            {"server": "shop", "name": "get_orders", "args": {}},
            headers={"Origin": allowed},
        )
        assert r.status_code == 200, r.text
        r = post(
            web,
            "/api/call-tool",
            {"server": "shop", "name": "get_orders", "args": {}},
            headers={"Origin": "http://other.example"},
        )
        assert r.status_code == 403
        for path in ("/api/chat", "/api/chat/stream"):
            r = post(web, path, {"message": "hello"})
            assert r.status_code == 503 and r.json() == {"detail": NO_LLM}
        cfg = httpx.get(f"{web.url}/api/config").json()
        assert cfg["llmConfigured"] is False and cfg["llmMessage"] == NO_LLM
        errors = httpx.get(f"{web.url}/api/servers").json()["errors"]
        assert any("'broken'" in e and "'type'" in e for e in errors), errors
        assert any("'nowhere'" in e and "'url'" in e for e in errors), errors
        tools = httpx.get(f"{web.url}/api/tools").json()["tools"]
        assert {t["name"] for t in tools} == SHOP_TOOLS
        r = post(
            web,
            "/api/call-tool",
            {"server": "shop", "name": "get_product", "args": {"productId": 1}},
        )
        assert r.status_code == 200 and "Galaxy" in r.json()["result"]


def test_llm_refused_connection(tmp_path: Path) -> None:
    refused = f"http://127.0.0.1:{free_port()}/v1"
    with web_app(tmp_path, {}, OPENAI_API_KEY="k", OPENAI_API_BASE=refused) as web:
        r = chat(web, "hello")
        assert r.status_code == 502
        assert "Cannot reach the LLM provider" in r.json()["detail"]
        assert httpx.get(f"{web.url}/healthz").json()["servers"]["total"] == 0


def test_request_bodies_over_the_limit_get_413(web: InProcessWeb, fake: FakeLLM) -> None:
    limit = 4 * 1024 * 1024
    q = "Still there after all that?"
    fake.script(q, Reply("Yes."))
    # the largest history the limits allow (1,000,000 characters, here 3-byte ones) still fits
    turn = [
        {"role": "user", "content": "€" * 20_000},
        {"role": "assistant", "content": "€" * 20_000},
    ]
    full = {"message": q, "history": turn * 25}
    size = len(json.dumps(full, ensure_ascii=False).encode())
    assert 3_000_000 < size < limit
    r = httpx.post(
        f"{web.url}/api/chat",
        content=json.dumps(full, ensure_ascii=False).encode(),
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text[:500]
    over = full | {"history": [*full["history"], {"role": "user", "content": "x"}]}
    assert post(web, "/api/chat", over).status_code == 422  # too much text: a clear 422, not 413

    big = b'{"message": "hi", "history": [], "pad": "' + b"x" * 5_000_000 + b'"}'
    for path in ("/api/chat", "/api/chat/stream", "/api/call-tool"):
        r = httpx.post(
            f"{web.url}{path}", content=big, headers={"content-type": "application/json"}
        )
        assert r.status_code == 413, (path, r.text[:200])
        assert r.json() == {"detail": f"Request body exceeds {limit} bytes"}
        assert r.headers["x-content-type-options"] == "nosniff"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
        yield b'{"message": "hi", "pad": "'
        for _ in range(66):
            yield b"x" * 65_536
        yield b'"}'

    r = httpx.post(
        f"{web.url}/api/chat", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["detail"].startswith("Request body exceeds")
    assert httpx.get(f"{web.url}/healthz").status_code == 200


def test_a_stdio_server_s_missing_folders_are_named(tmp_path: Path) -> None:
    """Found from outside: a stdio entry whose `cwd` does not exist said "command not found"
    (the command was there), and one whose command does not exist said no name at all."""
    servers = {
        "nocwd": {"command": sys.executable, "cwd": str(tmp_path / "gone")},
        "nocmd": {"command": str(tmp_path / "no-such-program")},
    }
    with web_app(tmp_path, servers) as web:
        deadline = time.monotonic() + 20
        while True:
            listed = {s["name"]: s for s in httpx.get(f"{web.url}/api/servers").json()["servers"]}
            if all(listed[n].get("error") for n in servers) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert "cwd is not a folder on this machine" in listed["nocwd"]["error"], listed["nocwd"]
    assert str(tmp_path / "gone") in listed["nocwd"]["error"]
    assert "no-such-program" in listed["nocmd"]["error"], listed["nocmd"]


def test_a_validator_s_sentence_reaches_the_client_as_written(web: InProcessWeb) -> None:
    """Found from outside: web.py's 422 read "Value error, a tool message needs tool_call_id
    and content", pydantic's prefix before our own sentence (api.py's import already said it
    plainly)."""
    r = chat(web, "hi", [{"role": "tool", "content": "x"}])
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["msg"] == "a tool message needs tool_call_id and content", error


def test_a_server_name_no_answer_can_carry_leaves_the_rest_working(tmp_path: Path) -> None:
    """Found from outside: one server named with a lone surrogate made GET /api/servers a 500
    at every poll (the page listed no server at all) and every chat turn a 502."""
    with web_app(tmp_path, {"shop\ud800": {"url": "http://127.0.0.1:9/mcp"}}) as web:
        r = httpx.get(f"{web.url}/api/servers")
        assert r.status_code == 200, r.text
        [error] = r.json()["errors"]
        assert "valid Unicode" in str(error), error
