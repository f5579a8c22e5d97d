"""What a second new-user trial of the chat page found (session 16), each checked here in
Chromium: with web.py itself gone the banner called it an MCP server that "is not connected",
Send stayed enabled and a message was lost to "Connection problem: Failed to fetch"; a reload
while a purchase waited for its confirmation showed the call as failed in red, though nothing
was bought; at 320 px the title read "Prod…" and the Prompts/Attach column took a third of the
message box, and a prompt from the picker showed only its last lines; prompt arguments were
labelled "customerName", and an attachment's note read "Attached: product 3".

web.py's app in process with main.py's server in memory and the scripted LLM (conftest.py);
web.py as a process where it is killed and started again."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.fake_llm import Calls, FakeLLM, Reply
from tests.inproc import InProcessWeb
from tests.stack import Stack
from tests.web.page_harness import new_page, push, start_turn, turn
from tests.web_helpers import stock

pytestmark = pytest.mark.browser


def card(page: Any, tool: str) -> Any:
    return page.locator(f".tool-card[data-tool='{tool}']").last


# ------------------------------------------------------------------ web.py unreachable


def test_web_py_gone_keeps_the_message_and_comes_back(browser: Any, tmp_path: Path) -> None:
    """web.py killed: the banner says the chat server cannot be reached and that the page
    retries, Send waits, and a message sent meanwhile (before or after the page noticed) stays
    in the box; once web.py is back the banner goes by itself and the message goes out."""
    with Stack(tmp_path) as s:
        fake = s.fake_llm()
        web = s.web({}, {"OPENAI_API_KEY": "k", "OPENAI_API_BASE": fake.base_url})
        page = new_page(browser, web.url, "desktop")
        try:
            page.wait_for_selector("#send:not([disabled])")
            web.stop(signal.SIGKILL)
            page.fill("#input", "Is the watch in stock?")
            page.press("#input", "Enter")  # most likely before the poll has noticed
            banner = page.wait_for_selector("#chat-banner p[data-offline]")
            words = banner.inner_text()
            assert "chat server cannot be reached" in words and "Retrying" in words, words
            assert "not connected" not in page.inner_text("#chat-banner")
            page.wait_for_selector("#send[disabled]")
            assert page.input_value("#input") == "Is the watch in stock?"
            assert page.locator(".msg.user").count() == 0
            errors = page.locator(".msg.error").all_inner_texts()
            assert all("Not sent" in e and "back in the box" in e for e in errors), errors
            assert "cannot be reached" in page.inner_text("#servers")
            page.press("#input", "Enter")  # while it is known to be gone: nothing is lost
            assert page.input_value("#input") == "Is the watch in stock?"

            s.restart("web")
            page.wait_for_selector("#chat-banner", state="hidden", timeout=20_000)
            page.wait_for_selector("#send:not([disabled])")
            fake.script("Is the watch in stock?", Reply("Yes, 12 left."))
            page.click("#send")
            page.wait_for_selector(".msg.assistant:not(.streaming) >> text=Yes, 12 left.")
            assert page.js_errors == []
        finally:
            page.context.close()


# ------------------------------------------------------------------ a reload mid-confirmation


def test_a_reload_during_a_purchase_confirmation_bought_nothing(
    browser: Any, web: InProcessWeb, fake: FakeLLM, shop_api: TestClient
) -> None:
    """main.py asks before it buys; reloaded while it asks, web.py cancels the call (and
    answers the question "cancel"): not a red failure, but "nothing was bought"."""
    page = new_page(browser, web.url, "desktop")
    try:
        q = "Buy one power bank for Ann, then reload"
        args = {"customerName": "Ann", "items": [{"productId": 3, "quantity": 1}]}
        fake.script(q, Calls(("create_purchase", args)), Reply("Bought."))
        before = stock(shop_api, 3)
        page.fill("#input", q)
        page.press("#input", "Enter")
        page.wait_for_selector(".elicit-card:not(.closed)")
        page.reload()
        bought = card(page, "create_purchase")
        bought.wait_for()
        classes = bought.get_attribute("class") or ""
        assert "interrupted" in classes and "error" not in classes, classes
        assert "nothing was bought" in bought.locator(".summary").inner_text()
        assert bought.locator(".state").inner_text() == "not run"
        assert bought.evaluate("e => getComputedStyle(e).borderLeftColor") != "rgb(197, 48, 48)"
        page.wait_for_selector(".msg.note >> text=Interrupted: the page was left.")
        page.wait_for_timeout(500)  # web.py has cancelled the call by now
        assert stock(shop_api, 3) == before
        assert page.js_errors == []
    finally:
        page.context.close()


def test_a_reload_says_failed_only_where_something_may_have_been_done(
    browser: Any, web: InProcessWeb
) -> None:
    """Waiting for Approve: it never ran. A purchase confirmed just before the reload, or a
    call that changes data and was running: it may have been done, so it stays red."""
    page = new_page(browser, web.url, "desktop", mock=True)
    try:
        page.wait_for_selector("button.tool-btn[data-tool='get_inventory']", state="attached")
        page.evaluate("window.__mock = true")
        start_turn(page, "restock, buy and buy again")
        base = {"round": 1, "arguments": {}, "server": "shop"}
        push(page, "tool_call", {**base, "id": "a", "function": "restock", "tool": "restock"})
        push(page, "approval_required", {"id": "a", "approvalId": "ap-1"})
        push(page, "tool_call", {**base, "id": "b", "function": "add_note", "tool": "add_note"})
        buy = {**base, "function": "create_purchase", "tool": "create_purchase"}
        push(page, "tool_call", {**buy, "id": "c"})
        question = {
            "id": "c",
            "server": "shop",
            "tool": "create_purchase",
            "mode": "form",
            "message": "Buy?",
            "requestedSchema": {"type": "object", "properties": {}},
            "quote": {"items": [], "totalAmount": 0, "inStock": True},
        }
        push(page, "elicitation", {**question, "elicitationId": "q-c"})
        page.click(".elicit-card[data-elicitation='q-c'] button.accept")  # confirmed: maybe bought
        page.wait_for_selector(".elicit-card.closed.accept")
        push(page, "tool_call", {**buy, "id": "d"})
        push(page, "elicitation", {**question, "id": "d", "elicitationId": "q-d"})
        page.wait_for_selector(".elicit-card[data-elicitation='q-d']")
        page.reload()
        page.wait_for_selector(".tool-card[data-tool='restock']")
        state = page.evaluate(
            """() => [...document.querySelectorAll('.tool-card')].map(c =>
                 [c.dataset.tool, c.classList.contains('error') ? 'red' : 'neutral',
                  c.querySelector('.summary').textContent])"""
        )
        tools, looks, words = zip(*state, strict=True)
        assert tools == ("restock", "add_note", "create_purchase", "create_purchase")
        assert looks == ("neutral", "red", "red", "neutral"), state
        assert words[0] == "Interrupted before you answered: it did not run."
        assert "page was left" in words[1] and "page was left" in words[2]
        assert "nothing was bought" in words[3]
        assert page.js_errors == []
    finally:
        page.context.close()


# ------------------------------------------------------------------ a narrow phone's composer

LONG_PROMPT = "\n".join(f"Line {i} of the shopping assistant's prompt." for i in range(1, 31))


@pytest.mark.parametrize("width", [320, 360, 390])
def test_a_narrow_phone_keeps_the_title_and_the_message_box(
    browser: Any, web: InProcessWeb, width: int
) -> None:
    """Prompts and Attach take a row of their own, not a third of the box's width; a prompt
    from the picker grows the box (up to 40 % of the window) and shows its first line."""
    prompt = {"messages": [{"role": "user", "text": LONG_PROMPT}]}
    routes = {"**/api/prompts/get": lambda route: route.fulfill(json=prompt)}
    page = new_page(browser, web.url, "mobile", routes=routes)
    try:
        page.set_viewport_size({"width": width, "height": 640})
        page.wait_for_selector("#prompts-btn:not([hidden])")
        page.wait_for_selector("#attach-btn:not([hidden])")
        cut = "e => e.scrollWidth > e.clientWidth + 1"
        assert not page.locator("#topbar h1").evaluate(cut), f"the title is cut at {width} px"
        box = page.locator("#input").bounding_box()
        assert width > 360 or box["width"] >= 0.6 * width, box  # 390: beside it, as before
        hint_whole = "e => e.scrollHeight <= e.clientHeight + 1"
        assert page.locator("#input").evaluate(hint_whole), "the hint is clipped"
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.click("#prompts-btn")
        page.click(".prompt-choice[data-prompt='shopping_assistant']")
        page.click(".prompt-form button[type=submit]")
        page.wait_for_selector("#prompt-picker", state="hidden")
        grown = page.locator("#input").evaluate(
            "e => [e.getBoundingClientRect().height, e.scrollTop, innerHeight]"
        )
        height, top, window = grown
        assert 120 < height <= 0.4 * window + 1, grown
        assert top == 0, "the prompt shows its last lines, not its first"
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.fill("#input", "")
        assert page.locator("#input").bounding_box()["height"] < 100  # back to two rows
        assert page.js_errors == []
    finally:
        page.context.close()


def test_the_desktop_composer_is_unchanged(browser: Any, web: InProcessWeb) -> None:
    page = new_page(browser, web.url, "desktop")
    try:
        page.wait_for_selector("#attach-btn:not([hidden])")
        tools = page.locator(".composer-tools").bounding_box()
        box = page.locator("#input").bounding_box()
        prompts = page.locator("#prompts-btn").bounding_box()
        attach = page.locator("#attach-btn").bounding_box()
        assert tools["x"] + tools["width"] <= box["x"], "the buttons are beside the box"
        assert attach["y"] >= prompts["y"] + prompts["height"], "one above the other"
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    finally:
        page.context.close()


# ------------------------------------------------------------------ words for people

PROMPTS = {
    "prompts": [
        {
            "server": "shop",
            "name": "shopping_assistant",
            "title": "Shopping assistant",
            "description": "Help a customer find and buy products.",
            "arguments": [
                {"name": "customerName", "description": "Who is buying", "required": False},
                {"name": "need", "required": True},
                {"name": "max_price", "title": "Budget", "required": False},
            ],
        }
    ]
}


def test_prompt_arguments_and_attachments_are_named_for_people(
    browser: Any, web: InProcessWeb, fake: FakeLLM
) -> None:
    routes = {"**/api/prompts": lambda route: route.fulfill(json=PROMPTS)}
    page = new_page(browser, web.url, "desktop", routes=routes)
    try:
        page.click("#prompts-btn")
        page.click(".prompt-choice[data-prompt='shopping_assistant']")
        labels = page.eval_on_selector_all(".prompt-form label", "ls => ls.map(l => l.textContent)")
        assert labels == ["Customer name", "Need *", "Budget"], labels
        hints = page.eval_on_selector_all(".prompt-form .hint", "hs => hs.map(h => h.textContent)")
        assert hints == ["Who is buying (customerName)", "(need)", "(max_price)"], hints
        page.keyboard.press("Escape")

        page.click("#attach-btn")
        page.click(".attach-choice[data-uri='shop://products/{id}']")
        page.fill("#attach-arg-id", "3")
        page.click("#attach-picker button[type=submit]")
        assert page.inner_text("#attachments .chip-label") == "Product with live stock (id 3)"
        fake.script("Is this one in stock?", Reply("Yes."))
        turn(page, "Is this one in stock?", "Yes.")
        note = page.locator(".msg.note").last.inner_text()
        assert note == "Attached: Product with live stock (id 3)", note
        assert page.js_errors == []
    finally:
        page.context.close()
