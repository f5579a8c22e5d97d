"""Issue 13, in Chromium: a page whose event stream was down while stock changed catches up
when it reconnects (it names the last stock event it saw; web.py sends what it missed), with
no reload and no tool call; also when the stream died without closing (a `Blackhole` relay
drops its bytes), which only the stream's own pings can tell.

web.py runs in process with the small stock server of test_live_stock.py (main.py's `Live`;
its `sell` tool marks a change as main.py's feed follower would) and a `pages` tool that ends
every page stream and refuses new ones (`open: false`), as a web.py restart or a dropped
connection would, then lets them in again (`open: true`)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from product_mcp.chat.events import PageEvents
from tests.inproc import InProcessWeb, web_app
from tests.web.page_harness import new_page
from tests.web.test_live_stock import stock_server

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


def show_stock(page: Any) -> None:
    """The tool form's inventory result: badges the page keeps live."""
    page.wait_for_selector("#live[data-on='true']")
    page.click("button.tool-btn[data-tool='get_inventory']")
    page.click("#runner-form button[type=submit]")
    page.wait_for_selector(f"{BADGE}[data-stock='10']")


def test_a_page_catches_up_after_its_stream_was_down(web: InProcessWeb, browser: Any) -> None:
    hub = HUBS[-1]
    page = new_page(browser, web.url, "desktop")
    show_stock(page)
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


class Blackhole:
    """A TCP relay to a port whose open connections all go dead at once, without closing
    (`cut`): their bytes are read and dropped both ways, as when a NAT forgets a connection
    or a laptop sleeps. Connections made later relay again. Counts event streams opened."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.generation = 0
        self.event_streams = 0
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        self.generation += 1

    def close(self) -> None:
        for s in [self.server, *self.sockets]:
            s.close()

    def _accept(self) -> None:
        with suppress(OSError):
            while True:
                client, _ = self.server.accept()
                upstream = socket.create_connection(("127.0.0.1", self.port))
                self.sockets += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    args = (a, b, self.generation, a is client)
                    threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, generation: int, up: bool) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                if up and data.startswith(b"GET /api/events"):
                    self.event_streams += 1
                if generation == self.generation:
                    dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)


def test_a_stream_gone_silent_is_replaced_and_catches_up(web: InProcessWeb, browser: Any) -> None:
    """The page's stream dies without closing; the page hears no ping for 3 periods, opens a
    new one and catches up. A stream that keeps pinging is kept."""
    hub = HUBS[-1]
    hub.heartbeat = 0.5  # each stream says so in its first ping: dead after 1.5 s of silence
    relay = Blackhole(int(web.url.rsplit(":", 1)[1]))
    try:
        page = new_page(browser, relay.url, "desktop")
        show_stock(page)
        _call(web, "sell", product_id=1)
        page.wait_for_selector(f"{BADGE}[data-stock='9']")
        assert relay.event_streams == 1
        time.sleep(2.5)  # 5 heartbeats, over a watchdog period: a pinging stream is kept
        assert relay.event_streams == 1
        relay.cut()
        _call(web, "sell", product_id=1)
        _call(web, "sell", product_id=1)  # sent into the dead stream
        page.wait_for_selector(f"{BADGE}[data-stock='7']", timeout=10_000)
        page.wait_for_selector("#live[data-on='true']")
        assert relay.event_streams >= 2  # more if a new request went out on a dead connection
        assert page.js_errors == []
    finally:
        relay.close()


VISIBILITY = """state => {
    Object.defineProperty(document, 'visibilityState', {value: state, configurable: true});
    document.dispatchEvent(new Event('visibilitychange'));
}"""


def test_a_hidden_tab_gives_its_stream_up_and_catches_up_when_shown(
    web: InProcessWeb, browser: Any
) -> None:
    """Found from outside: every tab held its event stream, and Chromium allows 6 connections
    per host (HTTP/1.1), so a 7th tab's chat never left the browser. A hidden tab closes its
    stream, and when shown opens one that catches up on what it missed."""
    hub = HUBS[-1]
    page = new_page(browser, web.url, "desktop")
    show_stock(page)
    assert hub.streams == 1
    page.evaluate(VISIBILITY, "hidden")
    deadline = time.monotonic() + 20
    while hub.streams:  # web.py saw the stream go
        assert time.monotonic() < deadline, "the hidden tab kept its stream"
        time.sleep(0.05)
    _call(web, "sell", product_id=1)
    time.sleep(0.5)
    assert hub.streams == 0 and page.get_attribute(BADGE, "data-stock") == "10"
    page.evaluate(VISIBILITY, "visible")
    page.wait_for_selector(f"{BADGE}[data-stock='9']", timeout=30_000)
    page.wait_for_selector("#live[data-on='true']")
    assert page.js_errors == []


def test_tabs_share_one_stream_and_pass_it_on(web: InProcessWeb, browser: Any) -> None:
    """Found from outside: with six tabs shown, each holding its event stream, Chromium's six
    connections per host were all taken and a seventh tab's page never loaded. The tabs of a
    browser now share one stream (one tab leads, the others hear it from that tab): seven
    tabs hold one stream, all see a sale, the seventh can call a tool, and when the leading
    tab closes another opens the stream, from the last event heard."""
    hub = HUBS[-1]
    first = new_page(browser, web.url, "desktop")
    tabs = [first]
    streams: list[tuple[Any, str]] = []  # event streams the other tabs opened: (tab, URL)
    for _ in range(6):
        tab = first.context.new_page()
        tab.js_errors = []
        tab.on("pageerror", lambda e, tab=tab: tab.js_errors.append(str(e)))
        tab.on("request", lambda r, t=tab: "/api/events" in r.url and streams.append((t, r.url)))
        tab.set_default_timeout(15_000)
        tab.goto(web.url + "/")
        tabs.append(tab)
    for tab in tabs:
        tab.bring_to_front()  # a background tab's animation frames are throttled
        show_stock(tab)
    assert hub.streams == 1 and streams == []
    _call(web, "sell", product_id=1)
    for tab in tabs:
        tab.wait_for_selector(f"{BADGE}[data-stock='9']")
    first.close()  # the leading tab goes; another takes the lead
    deadline = time.monotonic() + 20
    while not streams:
        assert time.monotonic() < deadline, "no tab took the lead"
        tabs[1].wait_for_timeout(50)  # Playwright's events are delivered while it waits
    assert len(streams) == 1 and "?after=" in streams[0][1]  # it catches up from there
    _call(web, "sell", product_id=1)
    for tab in tabs[1:]:
        tab.wait_for_selector(f"{BADGE}[data-stock='8']")
        tab.wait_for_selector("#live[data-on='true']")
    # The leading tab hidden: a shown one takes the lead; the hidden one still hears it all
    leader = streams[0][0]
    leader.evaluate(VISIBILITY, "hidden")
    while len(streams) < 2:
        assert time.monotonic() < deadline + 20, "no shown tab took the lead"
        tabs[1].wait_for_timeout(50)
    assert streams[1][0] is not leader
    _call(web, "sell", product_id=1)
    for tab in tabs[1:]:
        tab.wait_for_selector(f"{BADGE}[data-stock='7']")
        assert tab.js_errors == []
