"""The chat page in a real browser (Playwright driving Debian's Chromium) against the real trio
and the scripted LLM: tools listed, streamed answer with a tool card, approve → stock falls,
reject → nothing bought, XSS payloads stay inert text, reload keeps the chat, hand-run form."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_llm import Calls, Reply
from tests.servers import ROOT
from tests.stack import Stack, stack_fixture
from tests.web_helpers import CHROMIUM, need, stock, watched_page

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"
NO_LLM = "No LLM configured: set OPENAI_API_KEY (and OPENAI_API_BASE for other providers) in .env"
ARTIFACTS = ROOT / "test-artifacts"


@stack_fixture
def stack(s: Stack) -> None:
    need(CHROMIUM.exists(), f"{CHROMIUM} not installed (apt-get install chromium)")
    fake = s.fake_llm()
    api = s.api(
        products=[(f"Hacker Hat {XSS}", 1500, f"Stylish. {XSS} <script>alert(2)</script>", 5)]
    )
    mcp = s.mcp(api)
    s.web(
        {"product-mcp": {"url": f"{mcp.url}/mcp"}},
        {"OPENAI_API_KEY": "k", "OPENAI_API_BASE": fake.base_url},
    )


@pytest.fixture(scope="module")
def page(stack: Stack, browser: Any) -> Iterator[Any]:
    with watched_page(stack["web"].url + "/", 15_000, browser) as pg:
        yield pg
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "web-chat.png"), full_page=True)


def send(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def test_page_lists_servers_and_tools(page: Any) -> None:
    page.wait_for_selector(".server[data-server='product-mcp'] .dot.connected")
    page.wait_for_selector("button.tool-btn[data-tool='get_products']")
    names = page.eval_on_selector_all("button.tool-btn", "els => els.map(e => e.dataset.tool)")
    assert {"get_products", "create_purchase", "analyze_sales"} <= set(names)
    badge = page.inner_text("button.tool-btn[data-tool='create_purchase'] .badge")
    assert badge == "changes data"
    assert page.is_hidden("#banner")


def test_streamed_answer_with_tool_card(page: Any, stack: Stack) -> None:
    q = "What do you sell?"
    stack["fake"].script(
        q,
        Calls(("get_products", {}), text="Let me look that up."),
        Reply("We sell the **Galaxy Smart Watch** and 4 other products.", chunks=6),
    )
    send(page, q)
    card = page.wait_for_selector(".tool-card.ok[data-tool='get_products']")
    card.query_selector(".tool-head").click()  # one line until opened
    assert "Galaxy Smart Watch" in card.inner_text()
    assert "product-mcp" in card.inner_text() and re.search(r"\d+ ms|\d+\.\d s", card.inner_text())
    answer = page.wait_for_selector(".msg.assistant:not(.streaming) >> text=4 other products")
    assert answer.eval_on_selector("strong", "e => e.textContent") == "Galaxy Smart Watch"
    assert page.locator(".msg.assistant").first.inner_text() == "Let me look that up."
    assert page.input_value("#input") == ""


def test_approve_a_purchase_and_stock_falls(page: Any, stack: Stack) -> None:
    """main.py confirms create_purchase itself (MCP elicitation, issue 14): the page shows the
    server's quote, names the product and total, and buys only on Confirm."""
    q = "Buy 2 power banks for Ann"
    args = {"customerName": "Ann", "items": [{"productId": 3, "quantity": 2}]}
    stack["fake"].script(q, Calls(("create_purchase", args)), Reply("Order placed for Ann."))
    before = stock(stack["api"], 3)
    send(page, q)
    card = page.wait_for_selector(".elicit-card[data-elicitation]")
    text = card.inner_text()
    assert "create_purchase" in text and "Portable Power Bank" in text
    # the server's quote drawn by the page in its money format, once (not main.py's Markdown
    # table, "598.00 USD", beside it)
    assert card.query_selector("table.quote") is not None
    assert "$598.00" in text and "USD" not in text, text
    assert page.locator(".tool-card.approval").count() == 0  # not asked a second time
    assert stock(stack["api"], 3) == before
    card.query_selector("button.accept").click()
    page.wait_for_selector(".msg.assistant >> text=Order placed for Ann.")
    done = page.locator(".tool-card[data-tool='create_purchase']").last
    assert "ok" in (done.get_attribute("class") or "")
    assert "2 × Portable Power Bank" in done.inner_text()  # named, in a chat that never listed it
    assert stock(stack["api"], 3) == before - 2


def test_decline_a_purchase_and_nothing_is_bought(page: Any, stack: Stack) -> None:
    q = "Buy 5 earbuds for Bob"
    args = {"customerName": "Bob", "items": [{"productId": 2, "quantity": 5}]}
    stack["fake"].script(q, Calls(("create_purchase", args)), Reply("Understood, nothing bought."))
    before = stock(stack["api"], 2)
    send(page, q)
    page.wait_for_selector(".elicit-card[data-elicitation] button.decline").click()
    page.wait_for_selector(".msg.assistant >> text=Understood, nothing bought.")
    assert page.locator(".elicit-card.closed").count() >= 1
    assert stock(stack["api"], 2) == before
    tool_msg = [m for m in stack["fake"].requests_for(q)[1]["messages"] if m["role"] == "tool"]
    assert "not bought: declined" in tool_msg[-1]["content"]


def test_xss_payloads_stay_text(page: Any, stack: Stack) -> None:
    q = "Show me the hat"
    stack["fake"].script(
        q,
        Calls(("get_product", {"productId": 5})),
        Reply(f"Here it is: {XSS} **Hacker Hat** [click](javascript:alert(3)) `{XSS}`"),
    )
    send(page, q)
    card = page.wait_for_selector(".tool-card.ok[data-tool='get_product']")
    card.query_selector(".tool-head").click()
    answer = page.wait_for_selector(".msg.assistant:not(.streaming) >> text=Here it is")
    assert XSS in answer.inner_text() and XSS in card.inner_text()
    assert "<script>alert(2)</script>" in card.inner_text()
    assert page.locator("#messages img, #messages script, #messages iframe").count() == 0
    assert page.locator("#messages a[href^='javascript']").count() == 0
    page.wait_for_timeout(300)  # give any (wrongly) injected handler a chance to fire
    assert page.dialogs == []  # type: ignore[attr-defined]
    # the hand-run form and tool list also render it as text
    page.click("button.tool-btn[data-tool='get_product']")
    page.fill("#arg-productId", "5")
    page.click("#runner-form button[type=submit]")
    page.wait_for_selector("#runner-output >> text=Hacker Hat")
    assert XSS in page.inner_text("#runner-output")
    assert page.dialogs == []  # type: ignore[attr-defined]


MARKDOWN_SAMPLE = """# Stock

| id | name | stock |
|---:|------|:-----:|
| 1 | Watch <b>x</b> | 100 |

- **bold** item with `code`
- [docs](https://example.com/a_b) and [bad](javascript:alert(1)) and snake_case_name
  1. nested one

```html
<script>alert(1)</script>
```
> quoted _text_
"""


def test_markdown_renderer_builds_safe_dom(page: Any) -> None:
    shape = page.evaluate(
        """async src => {
            const { render } = await import('/js/markdown.js');
            const box = document.createElement('div');
            box.appendChild(render(src));
            const q = s => box.querySelectorAll(s).length;
            return {
                h: q('h3'), th: q('th'), td: q('td'), li: q('li'), ol: q('ul ol'),
                strong: q('strong'), code: q('code'), pre: q('pre'), em: q('em'),
                quote: q('blockquote'), links: [...box.querySelectorAll('a')].map(a => a.href),
                bad: q('script, b, img, [onerror]'), align: box.querySelector('th').className,
                text: box.textContent, global: 'SafeMarkdown' in window,
            };
        }""",
        MARKDOWN_SAMPLE,
    )
    assert shape["h"] == 1 and shape["th"] == 3 and shape["td"] == 3
    assert shape["li"] == 3 and shape["ol"] == 1 and shape["strong"] == 1
    assert shape["pre"] == 1 and shape["code"] == 2 and shape["quote"] == 1 and shape["em"] == 1
    assert shape["links"] == ["https://example.com/a_b"]
    assert shape["bad"] == 0 and shape["align"] == "align-right"
    assert "<script>alert(1)</script>" in shape["text"] and "Watch <b>x</b>" in shape["text"]
    assert "snake_case_name" in shape["text"] and "bad (javascript:alert(1))" in shape["text"]
    assert shape["global"] is False  # the page's modules set no window globals


def test_hand_run_form_from_schema(page: Any) -> None:
    page.click("button.tool-btn[data-tool='create_purchase']")
    assert "create_purchase" in page.inner_text("#runner-title")
    skeleton = json.loads(page.input_value("#arg-items"))
    assert skeleton == [{"productId": 1, "quantity": 1}]
    assert page.locator("#arg-customerName").count() == 1
    # An empty name is refused before the confirmation is asked (found from outside: the
    # form asked "Run it with these arguments?", and only "Run it" brought the 422)
    page.click("#runner-form button[type=submit]")
    page.wait_for_selector("#runner-output.error")
    assert "customerName" in page.inner_text("#runner-output")
    assert page.locator(".confirm-card").count() == 0


def test_no_key_banner(stack: Stack, page: Any) -> None:
    web = stack.web({"product-mcp": {"url": f"{stack['mcp'].url}/mcp"}}, name="no-key-web")
    other = page.context.new_page()
    other.goto(web.url + "/")
    banner = other.wait_for_selector("#banner:not([hidden])")
    assert banner.inner_text() == NO_LLM
    other.wait_for_selector("button.tool-btn[data-tool='get_products']")
    other.close()
    web.stop()


def test_shift_enter_newline_reload_and_new_chat(page: Any, stack: Stack) -> None:
    stack["fake"].script("line one\nline two", Reply("Two lines received."))
    page.fill("#input", "line one")
    page.press("#input", "Shift+Enter")
    page.keyboard.type("line two")
    assert page.input_value("#input") == "line one\nline two"
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.assistant >> text=Two lines received.")
    users = page.locator(".msg.user").count()
    cards = page.locator(".tool-card").count()

    page.reload()
    page.wait_for_selector(".msg.assistant >> text=Two lines received.")
    assert page.locator(".msg.user").count() == users
    assert page.locator(".tool-card").count() == cards
    assert page.locator(".msg.user").last.inner_text() == "line one\nline two"

    # history survives too: the next turn sends the earlier conversation
    stack["fake"].script("and now?", Reply("Still here."))
    send(page, "and now?")
    page.wait_for_selector(".msg.assistant:not(.streaming) >> text=Still here.")
    page.wait_for_selector("#send:not([disabled])")
    sent = stack["fake"].requests_for("and now?")[0]["messages"]
    assert any(m.get("content") == "Buy 2 power banks for Ann" for m in sent)
    assert any(m["role"] == "tool" for m in sent)
    Path(ARTIFACTS).mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-chat-conversation.png"), full_page=True)

    page.click("#new-chat")
    assert page.locator(".msg").count() == 0
    page.reload()
    page.wait_for_selector("button.tool-btn[data-tool='get_products']")
    assert page.locator(".msg").count() == 0
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_long_chats_and_huge_replies_keep_working(page: Any, stack: Stack) -> None:
    """The page sends only the most recent whole turns that fit the server's limits."""
    fake = stack["fake"]
    page.click("#new-chat")
    # a stored conversation from before the caps: one reply over 200,000 characters, then 600
    # short turns (1,200 messages, over the 1,000-message limit)
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "ancient question"},
        {"role": "assistant", "content": "x" * 250_000},
    ]
    for i in range(600):
        history += [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
    page.evaluate(
        "h => localStorage.setItem('product-mcp.chat.v1', JSON.stringify({history: h, items: []}))",
        history,
    )
    page.reload()
    page.wait_for_selector("button.tool-btn[data-tool='get_products']")
    q1 = "Do you remember everything?"
    fake.script(q1, Reply("Only the recent part."))
    send(page, q1)
    page.wait_for_selector(".msg.assistant:not(.streaming) >> text=Only the recent part.")
    page.wait_for_selector("#send:not([disabled])")
    assert page.locator(".msg.error").count() == 0
    sent = [m["content"] for m in fake.requests_for(q1)[0]["messages"]]
    assert len(sent) == 1 + 1000 + 1  # system, the newest 500 turns, the question
    assert sent[1] == "q100" and sent[-3:] == ["q599", "a599", q1]
    assert "ancient question" not in sent

    # a reply over 200,000 characters arrives in full, and the next send still works
    q2, q3 = "Write the longest essay you can", "Now summarise it"
    essay = "word " * 50_000
    fake.script(q2, Calls(("get_products", {})), Reply(essay, chunks=4))
    fake.script(q3, Reply("It was long."))
    send(page, q2)
    page.wait_for_selector(".tool-card.ok[data-tool='get_products']")
    page.wait_for_selector("#send:not([disabled])", timeout=30_000)
    shown = page.locator(".msg.assistant").last.inner_text()
    assert len(shown.strip()) == len(essay.strip())
    send(page, q3)
    page.wait_for_selector(".msg.assistant:not(.streaming) >> text=It was long.")
    page.wait_for_selector("#send:not([disabled])")
    assert page.locator(".msg.error").count() == 0
    sent3 = fake.requests_for(q3)[0]["messages"]
    assert [m["role"] for m in sent3[-5:]] == ["user", "assistant", "tool", "assistant", "user"]
    assert sent3[-2]["content"].endswith("[truncated: 230000 more characters]")
    assert sent3[-4]["tool_calls"][0]["id"] == sent3[-3]["tool_call_id"]

    # a message over the server's limit is refused on the page, the text kept for editing
    page.fill("#input", "y" * 20_001)
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.error >> text=the limit is 20000")
    assert len(page.input_value("#input")) == 20_001
    page.click("#new-chat")
    assert page.js_errors == []  # type: ignore[attr-defined]


BADGE = "#runner-view span.stock[data-product-id='{id}']"


def _inventory_in_form(pg: Any) -> None:
    pg.click("button.tool-btn[data-tool='get_inventory']")
    pg.click("#runner-form button[type=submit]")
    pg.wait_for_selector(BADGE.format(id=1))


def test_two_pages_see_a_purchase_made_elsewhere(page: Any, stack: Stack) -> None:
    """Issue 13: stock moves by itself. Both pages show the inventory in the tool form; a
    purchase made through the API by another client changes both pages' badge (no reload, no
    polling: web.py's one subscription to main.py, fanned out over /api/events)."""
    other = page.context.new_page()
    errors: list[str] = []
    other.on("pageerror", lambda e: errors.append(str(e)))
    try:
        other.set_default_timeout(15_000)
        other.goto(stack["web"].url + "/")
        for pg in (page, other):
            pg.wait_for_selector("#live[data-on='true']")  # the indicator says updates flow
            _inventory_in_form(pg)
        before = stock(stack["api"], 1)
        body = {"customerName": "Elsewhere", "items": [{"productId": 1, "quantity": 1}]}
        with httpx.Client(base_url=stack["api"].url) as http:
            assert http.post("/api/purchase", json=body).status_code == 200
        moved = "([sel, n]) => document.querySelector(sel)?.dataset.stock === String(n)"
        for pg in (page, other):  # generous bound, not a speed assertion (bench/ has numbers)
            pg.wait_for_function(moved, arg=[BADGE.format(id=1), before - 1], timeout=20_000)
            assert pg.is_visible("#live") and pg.get_attribute("#live", "data-on") == "true"
        assert errors == [] and page.js_errors == []  # type: ignore[attr-defined]
    finally:
        other.close()
