"""What a shop's own data can do to the page (found from outside, session 15): a product name
of one 200-character word pushed the confirmation card's price, quantity and total out of
sight (the user saw a name, an empty Total and Confirm) and spilled over the next product
cards; a name holding a right-to-left override turned the next product's "50 ×" into "05"
in the orders table and the argument line. Long words now break inside their cell, and a
name with right-to-left text or a direction control is its own bidi island. The reply stream
is scripted (page_harness.MOCK_STREAM)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.page_harness import SIZES, push, start_turn

pytestmark = pytest.mark.browser

LONG = "W" * 200
RLO = "Cable \u2069\u202e"  # a PDI to close an isolate early, then an override
FSI, PDI = "\u2068", "\u2069"
ADLAM = "\U0001e900\U0001e922\U0001e924\U0001e922\U0001e925"  # right-to-left, beyond the BMP


def fits(page: Any, inner: str, outer: str) -> list[str]:
    """The `inner` elements whose right edge passes their `outer` ancestor's."""
    return page.evaluate(
        """([inner, outer]) => [...document.querySelectorAll(inner)].filter(e => {
            const box = e.closest(outer).getBoundingClientRect();
            return e.getBoundingClientRect().right > box.right + 1;
        }).map(e => e.textContent.slice(0, 40))""",
        [inner, outer],
    )


@pytest.mark.parametrize("size", SIZES)
def test_long_and_right_to_left_names_keep_the_page_readable(
    scripted: dict[str, Any], size: str
) -> None:
    page = scripted[size]
    page.click("#new-chat")
    start_turn(page, f"show me the odd ones ({size})")
    push(page, "turn", {"turnId": f"names-{size}"})
    products = [
        {"id": 1, "name": RLO, "description": "x" * 500, "price": 10.0, "stock": 5},
        {"id": 2, "name": "Laptop", "description": "A laptop", "price": 900.0, "stock": 50},
        {"id": 3, "name": LONG, "description": "y" * 500, "price": 5.0, "stock": 9},
        {"id": 4, "name": ADLAM, "description": "Adlam", "price": 7.0, "stock": 3},
    ]
    listing = {"id": "c0", "server": "shop", "tool": "get_products", "function": "get_products"}
    push(page, "tool_call", {**listing, "arguments": {}})
    push(page, "tool_result", {**listing, "result": products, "durationMs": 3})
    page.locator(".tool-card[data-tool='get_products'] .tool-head").last.click()
    page.wait_for_selector(".tool-card[data-tool='get_products'] .product-card")
    assert fits(page, ".product-card", "#messages") == []
    assert fits(page, ".product-card .pc-name, .product-card .pc-desc", ".product-card") == []

    buy = {"id": "c1", "server": "shop", "tool": "create_purchase", "function": "create_purchase"}
    items = [{"productId": 1, "quantity": 1}, {"productId": 2, "quantity": 50}]
    push(page, "tool_call", {**buy, "arguments": {"customerName": "A", "items": items}})
    quote = {
        "items": [
            {"productId": 3, "name": LONG, "unitPrice": 5.0, "quantity": 2, "lineTotal": 10.0,
             "available": 9},
        ],
        "totalAmount": 10.0,
        "inStock": True,
    }  # fmt: skip
    push(
        page,
        "elicitation",
        {
            "id": "c1",
            "elicitationId": f"e-{size}",
            "server": "shop",
            "message": "Buy these?",
            "quote": quote,
            "requestedSchema": {"type": "object", "properties": {}},
        },
    )
    card = page.wait_for_selector(".elicit-card:not(.closed) table.quote")
    assert card is not None
    # every price, quantity and total of the server's quote is inside the card
    assert (
        fits(page, ".elicit-card table.quote td, .elicit-card table.quote th", ".elicit-card") == []
    )
    args = page.locator(".tool-card[data-tool='create_purchase'] dd").last.text_content()
    # the name's own direction controls go (review: its PDI ended our island early)
    assert args == f"1 × {FSI}Cable {PDI}, 50 × Laptop", repr(args)  # only where it matters
    # a right-to-left script beyond the BMP is isolated too (fourth trial: Adlam was not)
    other = {**buy, "id": "c2"}
    adlam_items = [{"productId": 4, "quantity": 1}, {"productId": 2, "quantity": 50}]
    push(page, "tool_call", {**other, "arguments": {"customerName": "A", "items": adlam_items}})
    line = page.locator(".tool-card[data-tool='create_purchase'] dd").last.text_content()
    assert line == f"1 × {FSI}{ADLAM}{PDI}, 50 × Laptop", repr(line)
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
