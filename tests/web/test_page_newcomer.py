"""What a new user found trying the chat page (session 16), each checked here in Chromium: with
the system in dark mode the page stayed white, its purchase confirmation a bright yellow card;
the sales chart said "from 1 orders, 1 units" and the servers panel "1 tools"; after Decline or
Cancel the purchase's card read the model's words "not bought: declined (the user did not
confirm; nothing was or…"; nothing said how Decline and Cancel differ; a reply's task list
showed "[x] done" (markdown.js itself: test_page_markdown.py).

web.py's app in process with main.py's server in memory and the scripted LLM (conftest.py);
the counts from a canned reply stream (page.route), so that the figures are exactly 1."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.fake_llm import Calls, FakeLLM, Reply
from tests.inproc import InProcessWeb
from tests.web.page_harness import SIZES, assert_readable, new_page, shot
from tests.web_helpers import stock

pytestmark = pytest.mark.browser

# relative luminance of a CSS colour (rgb() or rgba(), as getComputedStyle gives it)
LUMINANCE = """c => {
  const [r, g, b] = /rgba?\\(([^)]+)\\)/.exec(c)[1].split(/[\\s,\\/]+/).map(Number);
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
}"""


def background(page: Any, selector: str) -> float:
    """The luminance of the background of `selector`'s last match."""
    colour = page.locator(selector).last.evaluate("e => getComputedStyle(e).backgroundColor")
    return page.evaluate(f"({LUMINANCE})({json.dumps(colour)})")


def ask_to_buy(page: Any, fake: FakeLLM, q: str, answer: str) -> Any:
    """A purchase the model asks for; main.py's confirmation card, open."""
    one = {"customerName": "Dee", "items": [{"productId": 3, "quantity": 1}]}
    fake.script(q, Calls(("create_purchase", one)), Reply(answer))
    page.fill("#input", q)
    page.press("#input", "Enter")
    return page.wait_for_selector(".elicit-card:not(.closed)")


@pytest.mark.parametrize("size", SIZES)
def test_dark_mode_follows_the_system(
    browser: Any, web: InProcessWeb, fake: FakeLLM, shop_api: TestClient, size: str
) -> None:
    page = new_page(browser, web.url, size)
    try:
        page.emulate_media(color_scheme="dark")
        page.wait_for_selector("button.tool-btn[data-tool='get_inventory']", state="attached")
        assert background(page, "html") < 0.05, "the page stayed light"
        before = stock(shop_api, 3)
        ask_to_buy(page, fake, f"buy a power bank in the dark ({size})", "Not bought.")
        assert background(page, ".elicit-card") < 0.05, "a bright confirmation card"
        assert background(page, "#composer") < 0.05
        # the message box is the composer's colour: Chromium's own grey was left on it
        colour = "s => getComputedStyle(document.querySelector(s)).backgroundColor"
        assert page.evaluate(colour, "#input") == page.evaluate(colour, "#composer")
        shot(page, f"dark-confirm-{size}")
        assert_readable(page)  # light and dark: contrast and axe-core
        assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
        page.click(".elicit-card:not(.closed) button.cancel")
        page.wait_for_selector(".msg.assistant:not(.streaming) >> text=Not bought.")
        assert stock(shop_api, 3) == before
        assert background(page, ".tool-card[data-tool='create_purchase']") < 0.05
        shot(page, f"dark-cancelled-{size}")
        assert_readable(page)
        assert page.js_errors == []
    finally:
        page.context.close()


def test_declined_or_cancelled_purchases_say_so_in_words(
    browser: Any, web: InProcessWeb, fake: FakeLLM
) -> None:
    page = new_page(browser, web.url, "desktop")
    try:
        asked = ask_to_buy(page, fake, "buy one, then decline", "Declined, then.")
        # Decline and Cancel say how they differ (visible, and as each button's description)
        described = asked.eval_on_selector_all(
            "button.decline, button.cancel",
            """bs => bs.map(b => [b.className,
                 document.getElementById(b.getAttribute('aria-describedby'))?.textContent])""",
        )
        assert described == [
            ["decline", "Decline: don't buy; tell the assistant no."],
            ["cancel", "Cancel: dismiss without answering."],
        ], described
        hints = asked.query_selector(".elicit-choices")
        assert hints is not None and hints.is_visible()
        assert hints.inner_text() == " ".join(d for _, d in described)
        assert_readable(page)
        asked.query_selector("button.decline").click()
        page.wait_for_selector(".msg.assistant:not(.streaming) >> text=Declined, then.")
        card = page.locator(".tool-card[data-tool='create_purchase']").last
        assert card.locator(".summary").inner_text() == "Not bought: you declined"
        assert "the user did not confirm" not in card.locator(".tool-head").get_attribute("title")

        asked = ask_to_buy(page, fake, "buy one, then cancel", "Cancelled, then.")
        asked.query_selector("button.cancel").click()
        page.wait_for_selector(".msg.assistant:not(.streaming) >> text=Cancelled, then.")
        card = page.locator(".tool-card[data-tool='create_purchase']").last
        assert card.locator(".summary").inner_text() == "Not bought: cancelled"
        assert card.locator(".state").inner_text() == "cancelled"
        # the model's own words stay in the card's raw result
        card.locator(".tool-head").click()
        assert "the user did not confirm" in card.locator("pre.result").text_content()
        assert page.js_errors == []
    finally:
        page.context.close()


def test_a_task_list_in_a_reply_shows_boxes(browser: Any, web: InProcessWeb, fake: FakeLLM) -> None:
    """A reply's "- [x] done" read "[x] done": now a disabled, labelled checkbox (markdown.js,
    test_page_markdown.py), readable and accessible in both themes."""
    page = new_page(browser, web.url, "desktop")
    try:
        fake.script("my shopping list", Reply("Your list:\n\n- [x] Power bank\n- [ ] Smart watch"))
        page.fill("#input", "my shopping list")
        page.press("#input", "Enter")
        page.wait_for_selector(".msg.assistant:not(.streaming) >> text=Smart watch")
        boxes = page.locator(".msg.assistant li.task input[type=checkbox]")
        assert boxes.count() == 2 and boxes.first.is_checked() and not boxes.last.is_checked()
        assert boxes.first.is_disabled() and "[x]" not in page.inner_text(".msg.assistant")
        shot(page, "task-list-desktop")
        assert_readable(page)
        assert page.js_errors == []
    finally:
        page.context.close()


def sse(*events: tuple[str, dict[str, Any]]) -> str:
    return "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events)


ONE_SALE = {
    "groupBy": "product",
    "groups": [
        {"key": "3", "label": "Portable Power Bank", "units": 1, "revenue": 299.0, "orders": 1}
    ],
    "totals": {"units": 1, "revenue": 299.0, "orders": 1},
}
ONE_SALE_STREAM = sse(
    ("turn", {"turnId": "t1"}),
    (
        "tool_call",
        {
            "id": "c1",
            "function": "analyze_sales",
            "server": "shop",
            "tool": "analyze_sales",
            "arguments": {"groupBy": "product"},
            "round": 1,
            "needsApproval": False,
        },
    ),
    (
        "tool_result",
        {
            "id": "c1",
            "server": "shop",
            "tool": "analyze_sales",
            "function": "analyze_sales",
            "durationMs": 12,
            "result": json.dumps(ONE_SALE),
        },
    ),
    ("token", {"text": "One sale."}),
    (
        "done",
        {
            "response": "One sale.",
            "toolCalls": [],
            "rounds": 1,
            "maxRoundsReached": False,
            "stopped": False,
            "messages": [{"role": "assistant", "content": "One sale."}],
        },
    ),
)


def test_counts_of_one_are_singular(browser: Any, web: InProcessWeb) -> None:
    """ "from 1 orders, 1 units" under the chart, "1 units" in its bar's tooltip, "1 groups" in
    its label, and "1 tools" for a server with one tool."""

    def one_tool(route: Any) -> None:
        body = route.fetch().json()
        route.fulfill(json={**body, "servers": [{**s, "tools": 1} for s in body["servers"]]})

    routes = {
        "**/api/chat/stream": lambda route: route.fulfill(
            status=200, content_type="text/event-stream", body=ONE_SALE_STREAM
        ),
        "**/api/servers": one_tool,
    }
    page = new_page(browser, web.url, "desktop", routes=routes)
    try:
        page.wait_for_selector(".server[data-server='shop'] .status")
        assert page.inner_text(".server[data-server='shop'] .status") == "1 tool"
        page.fill("#input", "how many sales?")
        page.press("#input", "Enter")
        page.wait_for_selector(".msg.assistant:not(.streaming) >> text=One sale.")
        card = page.locator(".tool-card.ok[data-tool='analyze_sales']").last
        assert card.locator(".summary").inner_text() == "1 order · 1 unit · $299.00"
        card.locator(".tool-head").click()
        caption = card.locator(".chart-totals").inner_text()
        assert caption == "Revenue by product · total $299.00 from 1 order, 1 unit", caption
        chart = card.locator("svg.chart")
        assert chart.get_attribute("aria-label") == "Bar chart of revenue by product, 1 group"
        tip = chart.locator("g.bar-row title").text_content()
        assert tip == "Portable Power Bank: $299.00, 1 unit", tip
        assert page.js_errors == []
    finally:
        page.context.close()
