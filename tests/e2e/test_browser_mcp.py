"""What MCP brings to the chat page beyond tools (issue 14), in Chromium against real processes:
main.py's `shopping_assistant` prompt from the picker into the message box, a `shop://`
resource attached to a message (the model gets its text), and a third-party server's question
(server-everything's elicitation form) answered in the page and received by that server. Also
over HTTP on the same stack: two chats buying at once on one main.py each get their own
confirmation (main.py echoes web.py's per-call id in the question's `_meta`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fake_llm import Calls, Reply
from tests.servers import ROOT
from tests.stack import Stack, stack_fixture
from tests.web_helpers import (
    CHROMIUM,
    EVERYTHING,
    answer_elicitation,
    chat_stream,
    need,
    need_node,
    watched_page,
)

pytestmark = pytest.mark.browser

ARTIFACTS = ROOT / "test-artifacts"
QUOTE_DELAY = 1.5  # seconds main.py waits for a quote: long enough for a second chat to call


@stack_fixture
def stack(s: Stack) -> None:
    need(CHROMIUM.exists(), f"{CHROMIUM} not installed (apt-get install chromium)")
    need_node()
    fake = s.fake_llm()
    api = s.api()
    proxy = s.slow_api(api, {"/api/purchase/quote": QUOTE_DELAY})
    mcp = s.mcp(proxy.url)
    everything = {"command": "node", "args": [str(EVERYTHING / "index.js"), "stdio"]}
    s.web(
        {"product-mcp": {"url": f"{mcp.url}/mcp"}, "everything": everything},
        {"OPENAI_API_KEY": "k", "OPENAI_API_BASE": fake.base_url},
    )


@pytest.fixture(scope="module")
def page(stack: Stack, browser: Any) -> Iterator[Any]:
    with watched_page(stack["web"].url + "/", 15_000, browser) as pg:
        pg.wait_for_selector("button.tool-btn[data-tool='get_products']", state="attached")
        yield pg
        assert pg.js_errors == [], pg.js_errors


def test_prompt_from_the_picker_fills_the_message_box(page: Any) -> None:
    page.click("#prompts-btn")
    page.click(".prompt-choice[data-prompt='shopping_assistant']")
    page.fill("#prompt-arg-customerName", "Ann")
    page.fill("#prompt-arg-need", "wireless earbuds")
    page.click(".prompt-form button[type=submit]")
    page.wait_for_selector("#prompt-picker", state="hidden")
    text = page.input_value("#input")
    assert "The customer is Ann." in text and "wireless earbuds" in text
    page.fill("#input", "")


def test_an_attached_resource_reaches_the_model(page: Any, stack: Stack) -> None:
    page.click("#attach-btn")
    page.click(".attach-choice[data-uri='shop://products/{id}']")
    page.fill("#attach-arg-id", "2")
    page.click("#attach-picker button[type=submit]")
    chip = page.wait_for_selector("#attachments .chip")
    assert "2" in chip.inner_text()
    assert (
        chip.query_selector("button.chip-remove")
        .get_attribute("aria-label")
        .startswith("Remove attachment")
    )
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: no sideways scroll
    page.wait_for_selector("#sidebar", state="hidden")  # the drawer has slid away
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.is_visible("#attach-btn") and page.is_visible("#send")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-attach-mobile.png"))
    page.set_viewport_size({"width": 1280, "height": 900})
    q = "Is this one in stock?"
    stack["fake"].script(q, Reply("Yes, 200 in stock."))
    page.fill("#input", q)
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.assistant:not(.streaming) >> text=Yes, 200 in stock.")
    assert page.is_hidden("#attachments")  # sent with that message only
    [request] = stack["fake"].requests_for(q)
    attached = request["messages"][-2]
    assert '<attachment server="product-mcp" uri="shop://products/2"' in attached["content"]
    product = json.loads(attached["content"].split("\n")[2])
    assert product["id"] == 2 and "stock" in product
    assert request["messages"][-1] == {"role": "user", "content": q}
    # The attachment stays in the page's history: a follow-up's request still carries it.
    follow = "And how much is it?"
    stack["fake"].script(follow, Reply("It costs $899.00."))
    page.fill("#input", follow)
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.assistant:not(.streaming) >> text=It costs $899.00.")
    [again] = stack["fake"].requests_for(follow)
    assert attached in again["messages"]
    assert again["messages"].index(attached) + 1 == again["messages"].index(
        {"role": "user", "content": q}
    )


def test_server_everythings_form_is_answered_in_the_page(page: Any, stack: Stack) -> None:
    q = "Ask me for my details"
    stack["fake"].script(
        q, Calls(("trigger-elicitation-request", {})), Reply("Thanks for the details.")
    )
    page.fill("#input", q)
    page.press("#input", "Enter")
    # not read-only and its server does not say it asks: web.py's own approval comes first
    page.click(".tool-card[data-tool='trigger-elicitation-request'] button.approve")
    card = page.wait_for_selector(".elicit-card[data-elicitation]")
    assert "Please provide inputs" in card.inner_text()
    card.query_selector("input[name='name']").fill("Ann Lee")
    card.query_selector("button.accept").click()
    page.wait_for_selector(".elicit-card.closed.accept")
    page.wait_for_selector(".msg.assistant:not(.streaming) >> text=Thanks for the details.")
    tool = [m for m in stack["fake"].requests_for(q)[1]["messages"] if m["role"] == "tool"]
    assert "Ann Lee" in tool[-1]["content"] and "accept" in tool[-1]["content"]


def test_two_chats_buying_at_once_each_get_their_own_question(stack: Stack) -> None:
    """Chat B calls create_purchase while A's quote is still being made, so A's question
    arrives when B's call is the newest on the session: the old guess sent it to B."""
    web = stack["web"]
    a_called = threading.Event()
    questions: dict[str, list[str]] = {"Alpha": [], "Bravo": []}

    def run(customer: str, product: int) -> None:
        q = f"Buy one of product {product} for {customer}"
        args = {"customerName": customer, "items": [{"productId": product, "quantity": 1}]}
        stack["fake"].script(q, Calls(("create_purchase", args)), Reply("Noted."))

        def on_event(kind: str, data: dict[str, Any]) -> None:
            if kind == "tool_call":
                a_called.set()
            if kind == "elicitation":
                questions[customer].append(data["message"])
                assert answer_elicitation(web, data["elicitationId"], "decline").status_code == 200

        events = chat_stream(web, {"message": q}, on_event)
        assert events[-1][0] == "done"

    a = threading.Thread(target=run, args=("Alpha", 1))
    a.start()
    assert a_called.wait(10)
    run("Bravo", 2)
    a.join(30)
    assert len(questions["Alpha"]) == 1 and "**Alpha**" in questions["Alpha"][0]
    assert len(questions["Bravo"]) == 1 and "**Bravo**" in questions["Bravo"][0]
