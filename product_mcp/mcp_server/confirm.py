"""create_purchase's confirmation: the API's quote shown to the user through MCP elicitation.

Why a resolver (`Resolve`): the SDK then asks on whichever path the protocol has: a standalone
`elicitation/create` request on handshake-era sessions, the multi-round-trip
`InputRequiredResult` on 2026-07-28. Nothing is asked (the purchase goes ahead as before) when
the client did not declare form elicitation, cannot be sent a request (stateless), or when the
quote says the purchase cannot succeed anyway: the purchase then answers in its own words.
The question must read the same on every round of 2026-07-28 (its digest is checked), so it
names prices and totals, never the stock that may move in between.
"""

from __future__ import annotations

import functools
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Elicit
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, ConfigDict

from models import OrderItem
from product_mcp.core.config import load_settings
from product_mcp.mcp_server.api_client import ApiError, api


class PurchaseConfirmation(BaseModel):
    """Buy the items quoted above? Accept to place the order, decline to leave it."""

    model_config = ConfigDict(title="Confirm purchase")


class NotAsked(BaseModel):
    """The resolver's value when it asked nothing: go ahead as without elicitation."""


@functools.cache
def currency() -> str:
    return load_settings().CURRENCY


def can_elicit(ctx: Context[Any, Any]) -> bool:
    """Whether this request's client takes a form elicitation now."""
    caps = ctx.client_capabilities
    el = caps.elicitation if caps is not None else None
    if el is None or (el.form is None and el.url is not None):
        return False
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, "2026-07-28"):
        return True  # asked through InputRequiredResult: no back-channel needed
    return ctx.session.can_send_request


def _money(amount: float) -> str:
    return f"{amount:,.2f} {currency()}"


def quote_message(customer: str, quote: dict[str, Any]) -> str:
    """The question as Markdown: a small table of the quote and its total."""
    rows = [
        f"| {i['name']} (#{i['productId']}) | {_money(i['unitPrice'])} | {i['quantity']} "
        f"| {_money(i['lineTotal'])} |"
        for i in quote["items"]
    ]
    return "\n".join(
        [
            f"Place this order for **{customer}**?",
            "",
            "| Product | Unit price | Quantity | Line total |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            f"**Total: {_money(quote['totalAmount'])}**",
        ]
    )


async def confirm_purchase(
    customerName: str, items: list[OrderItem], ctx: Context[Any, Any]
) -> Elicit[PurchaseConfirmation] | NotAsked:
    """Ask the user to confirm the quoted purchase, when the client can be asked."""
    if not can_elicit(ctx):
        return NotAsked()
    body = {
        "customerName": customerName,
        "items": [i.model_dump() if isinstance(i, BaseModel) else dict(i) for i in items],
    }
    try:
        quote = await api.request("POST", "/purchase/quote", "purchase quote service", json=body)
    except ApiError:
        return NotAsked()  # the purchase will refuse it with the same words
    if not quote.get("inStock"):
        return NotAsked()  # it cannot succeed: the purchase says why (insufficient stock)
    return Elicit(quote_message(customerName.strip(), quote), PurchaseConfirmation)
