"""Issue 13, in Chromium: a page whose event stream was down while stock changed catches up
when it reconnects (it names the last stock event it saw; web.py sends what it missed), with
no reload and no tool call.

web.py runs in process with the small stock server of test_live_stock.py (main.py's `Live`;
its `sell` tool marks a change as main.py's feed follower would) and a `pages` tool that ends
every page stream and refuses new ones (`open: false`), as a web.py restart or a dropped
connection would, then lets them in again (`open: true`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from product_mcp.chat.events import PageEvents
from tests.inproc import InProcessWeb, web_app
from tests.web.page_harness import new_page
from tests.web.test_live_stock import stock_server
from tests.web_helpers import chromium

pytestmark = pytest.mark.browser
BADGE = "span.stock[data-product-id='1']"
HUBS: list[PageEvents] = []  # the app's page hub, for the `pages` tool (runs on its loop)


@pytest.fixture
def web(tmp_path: Path) -> Iterator[InProcessWeb]:
    server, _ = stock_server()

    @server.tool(description="End every page stream and refuse new ones, or let them in.")
    async def pages(open: bool) -> str:
        hub = HUBS[-1]
        if open:
            hub.closed = False
        else:
            hub.close_soon()
        return "ok"

    with web_app(tmp_path, in_memory={"shop": server}) as client:
        assert client.chat is not None
        HUBS.append(client.chat.events)
        yield client


def _call(web: InProcessWeb, name: str, **args: Any) -> None:
    r = web.post("/api/call-tool", json={"server": "shop", "name": name, "args": args})
    assert r.status_code == 200, r.text


def test_a_page_catches_up_after_its_stream_was_down(web: InProcessWeb) -> None:
    hub = HUBS[-1]
    with chromium() as browser:
        page = new_page(browser, web.url, "desktop")
        page.wait_for_selector("#live[data-on='true']")
        page.click("button.tool-btn[data-tool='get_inventory']")
        page.click("#runner-form button[type=submit]")
        page.wait_for_selector(f"{BADGE}[data-stock='10']")
        _call(web, "sell", product_id=1)  # heard live: the page holds this event's id
        page.wait_for_selector(f"{BADGE}[data-stock='9']")
        _call(web, "pages", open=False)
        page.wait_for_selector("#live[data-on='false']")
        before = hub.last_id
        _call(web, "sell", product_id=1)
        _call(web, "sell", product_id=1)
        deadline = time.monotonic() + 20
        while hub.last_id == before:  # web.py heard it; no page stream was open
            assert time.monotonic() < deadline, "web.py never heard the sales"
            time.sleep(0.05)
        assert hub.streams == 0 and page.get_attribute(BADGE, "data-stock") == "9"
        _call(web, "pages", open=True)
        # Reconnects by itself (EventSource retry, or the page's timer), then catches up.
        page.wait_for_selector(f"{BADGE}[data-stock='7']", timeout=30_000)
        page.wait_for_selector("#live[data-on='true']")
        assert page.js_errors == []
