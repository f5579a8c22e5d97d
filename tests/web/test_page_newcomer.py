"""What a new user found trying the chat page (session 16), each checked here in Chromium: with
the system in dark mode the page stayed white, its purchase confirmation a bright yellow card.

web.py's app in process with main.py's server in memory and the scripted LLM (conftest.py)."""

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
