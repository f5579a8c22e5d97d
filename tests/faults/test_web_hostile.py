"""Issue 7 against web.py: foreign Host/Origin on every route, main.py killed mid-call (web.py
answers with an error and heals by itself), and hostile content in Chromium: tool results and
model replies full of script tags, event handlers, javascript: links and a 1 MB string render
as inert text and the page stays responsive."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fake_llm import Calls, Reply
from tests.hostile import HOSTILE_MARKUP as HOSTILE
from tests.servers import Service
from tests.stack import Stack, stack_fixture
from tests.web_helpers import stock, watched_page

PAYLOAD = "\n\n".join(HOSTILE)
MEGA = "A" * 1_000_000  # a 1 MB string


@stack_fixture
def stack(s: Stack) -> None:
    fake = s.fake_llm()
    # (not 1 MB here: a result over 1 MiB cannot reach any SDK client over SSE: see
    # docs/reliability.md, "Not fixed")
    api = s.api(products=[("Evil " + HOSTILE[1], 999, PAYLOAD, 3)])
    proxy = s.slow_api(api, {"/api/analytics": 4.0})
    mcp = s.mcp(api)
    slow = s.mcp(proxy.url, "slow")
    mini = s.mini()
    s.web(
        {
            "shop": {"url": f"{mcp.url}/mcp"},
            "slow-http": {"url": f"{slow.url}/mcp"},
            "slow-sse": {"url": f"{slow.url}/sse"},
            "mini": {"url": f"{mini.url}/mcp"},
        },
        {"OPENAI_API_KEY": "k", "OPENAI_API_BASE": fake.base_url, "MCP_PING_INTERVAL": "1"},
    )


def call(web: Service, server: str, name: str, args: dict[str, Any], **kw: Any) -> httpx.Response:
    return httpx.post(
        f"{web.url}/api/call-tool",
        json={"server": server, "name": name, "args": args},
        timeout=60,
        **kw,
    )


# --- DNS rebinding: every route ----------------------------------------------------------

POSTS = {
    "/api/call-tool": {
        "server": "shop",
        "name": "create_purchase",
        "args": {"customerName": "Rebinder", "items": [{"productId": 1, "quantity": 1}]},
    },
    "/api/chat": {"message": "hi"},
    "/api/chat/stream": {"message": "hi"},
    "/api/chat/approve": {"approvalId": "x", "approved": True},
}


def test_foreign_host_and_origin_refused_on_every_route(stack: Stack) -> None:
    web, api = stack["web"], stack["api"]
    before = stock(api, 1)
    for host in ("evil.example", f"evil.example:{web.port}", "127.0.0.1.evil.example"):
        for path in ("/", "/app.js", "/api/tools", "/api/servers", "/api/config"):
            r = httpx.get(f"{web.url}{path}", headers={"Host": host})
            assert r.status_code == 400, (host, path)
        for path, body in POSTS.items():
            r = httpx.post(f"{web.url}{path}", json=body, headers={"Host": host})
            assert r.status_code == 400, (host, path)
    for origin in ("http://evil.example", f"http://evil.example:{web.port}", "null"):
        for path, body in POSTS.items():
            r = httpx.post(f"{web.url}{path}", json=body, headers={"Origin": origin}, timeout=10)
            assert r.status_code == 403, (origin, path, r.text)
    assert stock(api, 1) == before, "a refused request bought something"
    # the page's own origin still works
    r = call(web, "shop", "get_product", {"productId": 1}, headers={"Origin": web.url})
    assert r.status_code == 200 and r.json()["isError"] is False


# --- main.py killed mid-call --------------------------------------------------------------


@pytest.mark.parametrize("server", ["slow-http", "slow-sse"])
def test_main_py_killed_mid_call_then_web_heals(stack: Stack, server: str) -> None:
    web, proxy = stack["web"], stack["proxy"]
    assert call(web, server, "get_product", {"productId": 1}).status_code == 200
    answer: dict[str, Any] = {}

    def slow_call() -> None:
        t0 = time.monotonic()
        try:
            answer["response"] = call(web, server, "analyze_sales", {"groupBy": "day"})
        except httpx.HTTPError as e:  # a hang would end here, at the 60 s client timeout
            answer["error"] = e
        answer["seconds"] = time.monotonic() - t0

    started = proxy.started
    thread = threading.Thread(target=slow_call)
    thread.start()
    for _ in range(500):
        if proxy.started > started:
            break
        time.sleep(0.02)
    assert proxy.started > started, "the call never reached the API"
    stack["slow"].stop(signal.SIGKILL)
    thread.join(40)
    assert not thread.is_alive() and "error" not in answer, answer
    r = answer["response"]
    assert r.status_code in (502, 503, 504) or r.json().get("isError") is True, r.text
    assert answer["seconds"] < 20, answer["seconds"]
    # The SDK's "Error in sse_reader" for the dead server is one line, not a 70-line traceback
    # (web.py says "lost connection" itself).
    assert "Traceback" not in web.log(), web.log()[-4000:]

    stack.restart("slow")
    # no web.py restart: the very next call goes through
    r = call(web, server, "get_product", {"productId": 2})
    assert r.status_code == 200 and r.json()["isError"] is False, r.text
    assert "Pro Wireless Bluetooth Earbuds" in r.json()["result"]


# --- hostile content in the browser -------------------------------------------------------


@pytest.fixture(scope="module")
def page(stack: Stack, browser: Any) -> Iterator[Any]:
    with watched_page(stack["web"].url + "/", 60_000, browser) as pg:
        pg.wait_for_selector("button.tool-btn[data-tool='echo']")
        yield pg


INERT_CHECK = """() => {
    const box = document.getElementById('messages');
    const bad = box.querySelectorAll('script, img, svg, iframe, object, embed, body, form, style');
    const handlers = [...box.querySelectorAll('*')].filter(
        e => [...e.attributes].some(a => a.name.toLowerCase().startsWith('on')));
    const links = [...box.querySelectorAll('a')].map(a => a.getAttribute('href') || '');
    return {
        bad: bad.length,
        handlers: handlers.length,
        badLinks: links.filter(h => !/^(https?:|mailto:|#|\\/)/i.test(h)),
        text: box.textContent.length,
    };
}"""


def assert_inert(page: Any) -> dict[str, Any]:
    page.wait_for_timeout(300)  # give any (wrongly) injected handler a chance to fire
    shape = page.evaluate(INERT_CHECK)
    assert shape["bad"] == 0 and shape["handlers"] == 0 and shape["badLinks"] == [], shape
    assert page.dialogs == [], page.dialogs  # type: ignore[attr-defined]
    assert page.js_errors == [], page.js_errors  # type: ignore[attr-defined]
    return shape


def assert_responsive(page: Any, budget_ms: float = 1500) -> float:
    """The main thread answers, and typing still reaches the input, within budget."""
    t0 = time.monotonic()
    page.evaluate("() => new Promise(r => setTimeout(r, 0))")
    page.fill("#input", "still alive?")
    assert page.input_value("#input") == "still alive?"
    page.fill("#input", "")
    ms = (time.monotonic() - t0) * 1000
    assert ms < budget_ms, f"page took {ms:.0f} ms to answer"
    return ms


def send(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def test_hostile_tool_results_and_replies_stay_inert(page: Any, stack: Stack) -> None:
    q = "Show me something nasty"
    stack["fake"].script(
        q,
        Calls(("echo", {"text": PAYLOAD}), ("shop/get_product", {"productId": 5})),
        Reply("Here: " + PAYLOAD + "\n\n**done**", chunks=8),
    )
    send(page, q)
    page.wait_for_selector(".tool-card.ok[data-tool='echo']")
    page.wait_for_selector(".tool-card.ok[data-tool='get_product']")
    answer = page.wait_for_selector(".msg.assistant:not(.streaming) >> text=done")
    text = answer.inner_text()
    for payload in ("<script>alert('script')</script>", "onerror=alert('img')", "onmouseover"):
        assert payload in text or payload in page.inner_text("#messages"), payload
    assert_inert(page)
    assert_responsive(page)


def test_a_1mb_reply_and_tool_result_stay_responsive(page: Any, stack: Stack) -> None:
    q = "Give me a megabyte"
    stack["fake"].script(
        q,
        Calls(("echo", {"text": MEGA[:-20] + HOSTILE[1]})),
        Reply(HOSTILE[0] + MEGA + HOSTILE[7] + " end of mega", chunks=20),
    )
    t0 = time.monotonic()
    send(page, q)
    page.wait_for_selector(".tool-card.ok[data-tool='echo']")
    page.wait_for_selector(".msg.assistant:not(.streaming) >> text=end of mega", timeout=90_000)
    rendered = time.monotonic() - t0
    shape = assert_inert(page)
    assert shape["text"] > 2_000_000  # both megabytes are on the page, as text
    ms = assert_responsive(page)
    # the page can still be driven: new chat clears it
    page.click("#new-chat")
    page.wait_for_function("() => !document.querySelector('#messages .tool-card')")
    assert_responsive(page)
    print(
        f"\n1 MB reply + 1 MB tool result: rendered in {rendered:.1f} s, "
        f"page answered in {ms:.0f} ms"
    )


def test_reload_with_hostile_history(page: Any, stack: Stack) -> None:
    """What was saved (or could not be) comes back inert after a reload."""
    q = "Once more, nasty"
    stack["fake"].script(q, Calls(("echo", {"text": PAYLOAD})), Reply("Again: " + PAYLOAD))
    send(page, q)
    page.wait_for_selector(".msg.assistant:not(.streaming) >> text=Again")
    page.reload()
    page.wait_for_selector(".msg.assistant >> text=Again")
    assert_inert(page)
    assert_responsive(page)
