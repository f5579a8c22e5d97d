"""The page's side of web.py's stream events for issue #14, in Chromium at 1280×800 and
390×844: a server's question (MCP elicitation) as a card with its quote and a form built from
the requested schema, focus moved to it, the answer posted; live progress in a tool card;
servers that are down (a banner in the chat, cards that name the server instead of "unknown
tool"); pictures shown without opening the card (Stop and the prompt picker:
test_page_stop_and_prompts.py). The stream is written step by step by the test
(page_harness.MOCK_STREAM) so each state can be looked at; everything else is a real web.py
with main.py in memory and a configured server that is down."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.media_mcp import PNG
from tests.servers import dead_port
from tests.web.page_harness import SIZES, assert_readable, posts, push, shot, start_turn

pytestmark = pytest.mark.browser

QUOTE_MESSAGE = """Buy for **Ann**?

| Product | Unit price | Quantity | Line total |
|---|--:|--:|--:|
| Galaxy Smart Watch | $1,299.00 | 2 | $2,598.00 |

**Total: $2,598.00**"""

FORM = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "title": "Your name", "minLength": 1},
        "age": {"type": "integer", "title": "Age", "minimum": 1, "maximum": 120},
        "color": {"type": "string", "enum": ["red", "green"], "enumNames": ["Red", "Green"]},
        "subscribe": {"type": "boolean", "title": "Subscribe", "default": True},
        "tags": {"type": "array", "title": "Tags", "items": {"enum": ["new", "sale"]}},
    },
    "required": ["name", "age"],
}
QUOTE = {
    "items": [
        {
            "productId": 1,
            "name": "Galaxy Smart Watch",
            "unitPrice": 1299.0,
            "quantity": 2,
            "lineTotal": 2598.0,
            "available": 100,
        }
    ],
    "totalAmount": 2598.0,
    "inStock": True,
}


@pytest.fixture(scope="module")
def web_servers() -> Iterator[dict[str, Any]]:
    """A configured server that is down (conftest.web adds main.py in memory)."""
    with dead_port() as port:
        yield {"down": {"url": f"http://127.0.0.1:{port}/mcp"}}  # nobody listens there


def card(page: Any, tool: str) -> Any:
    return page.locator(f".tool-card[data-tool='{tool}']").last


def call(page: Any, call_id: str, server: str | None, tool: str, **args: Any) -> None:
    push(
        page,
        "tool_call",
        {
            "id": call_id,
            "function": tool,
            "server": server,
            "tool": tool,
            "arguments": args,
            "round": 1,
            "needsApproval": False,
        },
    )


@pytest.mark.parametrize("size", SIZES)
def test_down_server_banner_from_the_servers_poll(scripted: dict[str, Any], size: str) -> None:
    page = scripted[size]
    banner = page.wait_for_selector("#chat-banner p[data-server='down']")
    assert "down is not connected" in banner.inner_text()
    assert page.is_visible("#chat-banner")


@pytest.mark.parametrize("size", SIZES)
def test_progress_questions_and_results(scripted: dict[str, Any], size: str) -> None:
    """One scripted turn, step by step on one page (each step below)."""
    page = scripted[size]
    _turn_with_servers_down(page, size)
    _progress(page)
    _shop_confirmation(page, size)
    _schema_form_and_decline(page)
    _refused_and_oversized_questions(page)
    _order_summary(page)
    _lost_server_cards(page)
    _picture_and_done(page, size)


def _turn_with_servers_down(page: Any, size: str) -> None:
    """Start the turn; a server down is named in the banner with its tools."""
    start_turn(page, f"Buy two watches for Ann ({size})")
    page.wait_for_selector(".thinking")
    push(page, "turn", {"turnId": "t1"})
    push(
        page,
        "servers_unavailable",
        {
            "servers": [
                {
                    "name": "warehouse",
                    "status": "failed",
                    "error": "connection refused",
                    "tools": ["count_boxes"],
                }
            ]
        },
    )
    page.wait_for_selector("#chat-banner >> text=warehouse is not connected")
    assert "count_boxes" in page.inner_text("#chat-banner")


def _progress(page: Any) -> None:
    """Live progress of a running call."""
    call(page, "c1", "shop", "analyze_sales", groupBy="product")
    page.wait_for_selector(".tool-card.running[data-tool='analyze_sales']")
    assert page.locator(".thinking").count() == 0
    # Nothing done yet (main.py says 0 of 3 before its slow query): a bar that moves by itself,
    # not "0%" for the whole wait (found from outside: it looked stuck), and in sight.
    push(page, "progress", {"id": "c1", "progress": 0, "total": 3, "message": "Querying orders"})
    bar = card(page, "analyze_sales").locator("progress")
    bar.wait_for()
    assert bar.evaluate("p => p.matches(':indeterminate')")
    text = card(page, "analyze_sales").inner_text()
    assert "Querying orders" in text and "0%" not in text, text
    in_sight = "p => { const r = p.getBoundingClientRect(); return r.bottom <= innerHeight; }"
    assert bar.evaluate(in_sight), "the running card's bar is out of sight"
    push(page, "progress", {"id": "c1", "progress": 1, "total": 3, "message": "Aggregating groups"})
    page.wait_for_function(
        "() => document.querySelector(\".tool-card[data-tool='analyze_sales'] progress\")"
        ".value === 1"
    )
    assert bar.evaluate("p => [p.value, p.max]") == [1, 3]
    assert "Aggregating groups · 33%" in card(page, "analyze_sales").inner_text()
    push(page, "progress", {"id": "c1", "progress": 2, "total": 3, "message": None})
    page.wait_for_function(
        "() => document.querySelector(\".tool-card[data-tool='analyze_sales'] progress\")"
        ".value === 2"
    )


def _shop_confirmation(page: Any, size: str) -> None:
    """Main.py's confirmation: the quote in Markdown, Accept / Decline only."""
    call(
        page,
        "c2",
        "shop",
        "create_purchase",
        customerName="Ann",
        items=[{"productId": 1, "quantity": 2}],
    )
    push(
        page,
        "elicitation",
        {
            "elicitationId": "e1",
            "id": "c2",
            "server": "shop",
            "tool": "create_purchase",
            "mode": "form",
            "message": QUOTE_MESSAGE,
            "quote": None,
            "timeoutSeconds": 600,
            "requestedSchema": {"type": "object", "properties": {}, "title": "Confirm purchase"},
        },
    )
    question = page.locator(".elicit-card[data-elicitation='e1']")
    question.wait_for()
    assert page.evaluate("document.activeElement.classList.contains('accept')")
    assert question.locator("table td >> text=Galaxy Smart Watch").count() == 1
    assert "Total: $2,598.00" in question.inner_text()
    assert "waiting for you" in card(page, "create_purchase").inner_text()
    shot(page, f"elicitation-{size}")
    assert_readable(page)
    page.keyboard.press("Enter")  # the focused Confirm
    page.wait_for_selector(".elicit-card.closed.accept >> text=You accepted")
    assert posts(page, "/api/chat/elicitation")[-1] == {
        "elicitationId": "e1",
        "action": "accept",
        "content": {},
    }
    push(
        page, "elicitation_done", {"elicitationId": "e1", "action": "accept", "reason": "answered"}
    )


def _schema_form_and_decline(page: Any) -> None:
    """Another server's form: fields from the requested schema, a quote as a table."""
    push(
        page,
        "elicitation",
        {
            "elicitationId": "e2",
            "id": None,
            "server": "everything",
            "tool": None,
            "mode": "form",
            "message": "A few details, please",
            "quote": QUOTE,
            "requestedSchema": FORM,
        },
    )
    form = page.locator(".elicit-card[data-elicitation='e2']")
    form.wait_for()
    assert page.evaluate("document.activeElement.name") == "name"
    quote = form.locator("table.quote").inner_text()
    assert "Galaxy Smart Watch" in quote and "$1,299.00" in quote and "$2,598.00" in quote
    form.locator("button.accept").click()  # required fields empty: nothing is sent
    assert len(posts(page, "/api/chat/elicitation")) == 1
    form.get_by_label("Your name *").fill("Ann")
    form.get_by_label("Age *").fill("30")
    form.get_by_label("color").select_option(label="Green")
    form.get_by_label("sale").check()
    form.locator("button.accept").click()
    page.wait_for_selector(".elicit-card.closed >> text=You accepted")
    assert posts(page, "/api/chat/elicitation")[-1] == {
        "elicitationId": "e2",
        "action": "accept",
        "content": {
            "name": "Ann",
            "age": 30,
            "color": "green",
            "subscribe": True,
            "tags": ["sale"],
        },
    }
    push(
        page,
        "elicitation",
        {
            "elicitationId": "e3",
            "id": None,
            "server": "everything",
            "tool": None,
            "mode": "form",
            "message": "Decline me",
            "requestedSchema": {"type": "object", "properties": {}},
        },
    )
    page.locator(".elicit-card[data-elicitation='e3'] button.decline").click()
    page.wait_for_selector(".elicit-card.closed.decline >> text=You declined")
    assert posts(page, "/api/chat/elicitation")[-1] == {"elicitationId": "e3", "action": "decline"}


def _refused_and_oversized_questions(page: Any) -> None:
    """A question web.py refused (its form out of MCP's bounds: test_hostile_schemas.py) is one
    line saying why; a form over the bounds that reached the page anyway is drawn only up to
    them (50 fields, 100 choices each), not 20,000 fields of 50 options."""
    why = "the form has 20,000 fields (at most 50)"
    refused = {"elicitationId": "e4", "id": None, "server": "evil", "tool": None, "mode": "form"}
    push(page, "elicitation", {**refused, "message": "Answer me", "refused": why})
    line = page.locator(".elicit-card.closed.refused")
    line.wait_for()
    assert line.inner_text().endswith(f"The server's question was refused: {why}")
    assert line.locator("input, select, button").count() == 0
    push(page, "elicitation_done", {"elicitationId": "e4", "action": "cancel", "reason": "refused"})
    assert "The server's question was refused" in line.inner_text()

    enum = {"type": "string", "enum": [str(n) for n in range(300)]}
    big = {"type": "object", "properties": {f"f{n}": enum for n in range(120)}}
    push(page, "elicitation", {**refused, "elicitationId": "e5", "requestedSchema": big})
    form = page.locator(".elicit-card[data-elicitation='e5']")
    form.wait_for()
    assert form.locator("select").count() == 50
    assert form.locator("select").first.locator("option").count() == 101  # and "(none)"
    form.locator("button.cancel").click()
    page.wait_for_selector(".elicit-card.closed >> text=Cancelled")


def _order_summary(page: Any) -> None:
    """The order, summed up with its product's name: the order's own line names it (a
    product the page never saw read "product #9"; found from outside)."""
    order = {
        "id": 77,
        "customerName": "Ann",
        "items": [{"productId": 9, "quantity": 2, "name": "Galaxy Smart Watch"}],
        "totalAmount": 2598.0,
        "orderDate": "2026-07-01T10:00:00Z",
    }
    push(
        page,
        "tool_result",
        {
            "id": "c2",
            "server": "shop",
            "tool": "create_purchase",
            "function": "create_purchase",
            "durationMs": 40,
            "result": json.dumps(order),
        },
    )
    summary = card(page, "create_purchase").locator(".summary")
    summary.wait_for()
    assert summary.inner_text() == "Order #77 · 2 × Galaxy Smart Watch · $2,598.00"


def _lost_server_cards(page: Any) -> None:
    """A server that went down mid-turn, and an older web.py's "unknown tool"."""
    push(
        page,
        "tool_result",
        {
            "id": "c1",
            "server": "shop",
            "tool": "analyze_sales",
            "function": "analyze_sales",
            "durationMs": 3,
            "unavailable": True,
            "error": "MCP server 'shop' is unavailable (failed: refused); "
            "'analyze_sales' was not run",
        },
    )
    page.wait_for_selector(".tool-card.error[data-tool='analyze_sales']")
    call(page, "c3", None, "get_inventory")
    push(
        page,
        "tool_result",
        {
            "id": "c3",
            "server": None,
            "tool": None,
            "function": "get_inventory",
            "durationMs": 0,
            "error": "unknown tool 'get_inventory' (available: none)",
        },
    )
    lost = page.locator(".tool-card.error[data-server='shop']").last
    lost.wait_for()
    assert lost.locator(".summary").inner_text() == (
        "shop is not connected, so get_inventory could not run."
    )
    lost.locator(".tool-head").click()
    assert "unknown tool" not in page.inner_text("#messages")


def _picture_and_done(page: Any, size: str) -> None:
    """A picture shows without opening the card."""
    call(page, "c4", "shop", "picture")
    push(
        page,
        "tool_result",
        {
            "id": "c4",
            "server": "shop",
            "tool": "picture",
            "durationMs": 1,
            "function": "picture",
            "result": "[image: image/png, 70 bytes]",
            "content": [
                {"type": "image", "mimeType": "image/png", "data": base64.b64encode(PNG).decode()}
            ],
        },
    )
    img = card(page, "picture").locator("img")
    img.wait_for()
    assert img.is_visible() and card(page, "picture").locator(".tool-body").is_hidden()

    push(page, "token", {"text": "All done."})
    push(
        page,
        "done",
        {
            "response": "All done.",
            "toolCalls": [],
            "rounds": 1,
            "maxRoundsReached": False,
            "stopped": False,
            "messages": [{"role": "assistant", "content": "All done."}],
        },
    )
    page.evaluate("window.__end()")
    page.wait_for_selector("#send:not([disabled])")
    shot(page, f"events-{size}")
    assert_readable(page)
