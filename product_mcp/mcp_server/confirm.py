"""create_purchase's confirmation: the API's quote shown to the user through MCP elicitation.

Why a resolver (`Resolve`): the SDK then asks on whichever path the protocol has: a standalone
`elicitation/create` request on handshake-era sessions, the multi-round-trip
`InputRequiredResult` on 2026-07-28. Nothing is asked (the purchase goes ahead as before) when
the client did not declare form elicitation, cannot be sent a request (stateless), or when the
quote says the purchase cannot succeed anyway: the purchase then answers in its own words. A
quote that fails otherwise (no answer, a 5xx) fails the call: nothing is bought unasked.
The question must read the same on every round of 2026-07-28 (its digest is checked), so it
names prices and totals, never the stock that may move in between.

Which call asked: a handshake-era `elicitation/create` carries no link to the `tools/call` it
belongs to, so a client running several calls on one session (web.py, one per chat) cannot
tell whose question it is. When the call's `_meta` had a correlation id (`product-mcp/call`,
sent by web.py) or a progressToken, the question is sent here with them echoed in its own
`_meta`, and web.py routes it by them (product_mcp/chat/connection.py). The question's `_meta`
also carries the quote itself (QUOTE_META_KEY), so a client can draw it rather than parse the
Markdown: web.py's page names the products and formats the money as it does everywhere else.

One confirmation, one order: on 2026-07-28 the accepted round can reach the server again (a
client resending after a lost answer, or a replay), and without the caller's idempotency key
each arrival was a new purchase (found from outside: three orders). `SealedRound` keeps the
round's sealed `requestState` as it came off the wire (the SDK hands the tool the plaintext,
which two purchases of the same items share; the sealed token is minted afresh each time), and
`round_key` makes the purchase's key from it. Versions before 2025-06-18 have no
`elicitation/create`, so they are not asked; a client that answers the question with an error
gets the tool's error result, not that error as the call's (both found from outside).
"""

from __future__ import annotations

import functools
import hashlib
from contextvars import ContextVar
from typing import Any

from mcp.server.elicitation import (
    AcceptedElicitation,
    CancelledElicitation,
    DeclinedElicitation,
    ElicitationResult,
    render_elicitation_schema,
)
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.resolve import Elicit
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp.types import ElicitRequest, ElicitRequestFormParams, ElicitResult
from mcp_types.version import is_version_at_least
from pydantic import BaseModel, ConfigDict

from models import CALL_META_KEY, QUOTE_META_KEY, OrderItem
from product_mcp.core.config import load_settings
from product_mcp.mcp_server.api_client import ApiError, api
from product_mcp.mcp_server.protocol import modern


class PurchaseConfirmation(BaseModel):
    """Buy the items quoted above? Accept to place the order, decline to leave it."""

    model_config = ConfigDict(title="Confirm purchase")


class NotAsked(BaseModel):
    """The resolver's value when it asked nothing: go ahead as without elicitation."""


@functools.cache
def currency() -> str:
    return load_settings().CURRENCY


_ANSWERS = (AcceptedElicitation, DeclinedElicitation, CancelledElicitation)
ELICITATION_SINCE = "2025-06-18"
_sealed_round: ContextVar[str | None] = ContextVar("product_mcp_sealed_round", default=None)


class SealedRound:
    """Server middleware, outside the SDK's requestState boundary: this request's sealed
    `requestState` as the client sent it, for `round_key`."""

    async def __call__(self, ctx: Any, call_next: Any) -> Any:
        params = ctx.params if isinstance(ctx.params, dict) else {}
        state = params.get("requestState")
        if not isinstance(state, str):
            return await call_next(ctx)
        token = _sealed_round.set(state)
        try:
            return await call_next(ctx)
        finally:
            _sealed_round.reset(token)


_shown_total: ContextVar[float | None] = ContextVar("product_mcp_shown_total", default=None)


def shown_total() -> float | None:
    """The total the user was asked to confirm in this request (None if not asked): the
    purchase carries it, and the API refuses a total that has changed since (a price raised
    while the question was open was charged unseen; found from outside)."""
    return _shown_total.get()


def round_key() -> str | None:
    """An idempotency key for a purchase confirmed on a 2026-07-28 round: the same for every
    arrival of that round, new for each purchase (the SDK seals each state with a fresh
    nonce)."""
    state = _sealed_round.get()
    if state is None:
        return None
    return "mcp-round-" + hashlib.sha256(state.encode()).hexdigest()[:48]


def _modern(ctx: Context[Any, Any]) -> bool:
    return modern(ctx.protocol_version)


def can_elicit(ctx: Context[Any, Any]) -> bool:
    """Whether this request's client takes a form elicitation now."""
    caps = ctx.client_capabilities
    el = caps.elicitation if caps is not None else None
    if el is None or (el.form is None and el.url is not None):
        return False
    if _modern(ctx):
        return True  # asked through InputRequiredResult: no back-channel needed
    version = ctx.protocol_version
    if version is None or not is_version_at_least(version, ELICITATION_SINCE):
        return False  # the client's version has no elicitation/create (its SDK refuses it)
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
) -> Elicit[PurchaseConfirmation] | ElicitationResult[PurchaseConfirmation] | NotAsked:
    """Ask the user to confirm the quoted purchase, when the client can be asked."""
    # this call's own: a value left by an earlier call in the same context (a server run in
    # process awaits each call in the caller's task) was sent with a purchase never asked
    _shown_total.set(None)
    if not can_elicit(ctx):
        return NotAsked()
    body = {
        "customerName": customerName,
        "items": [i.model_dump() if isinstance(i, BaseModel) else dict(i) for i in items],
    }
    try:
        quote = await api.request("POST", "/purchase/quote", "purchase quote service", json=body)
    except ApiError as e:
        if _refused(e):
            return NotAsked()  # the purchase refuses it in the same words
        # Not a refusal (a timeout, a 5xx, no answer): the purchase may well go through, and
        # it must not without the user's yes (found from outside: it did, unasked).
        raise ApiError(
            f"{e}. Nothing was bought: the purchase waits for the user to confirm the API's "
            "quote, and there was none; try again when the product API answers.",
            e.status,
        ) from e
    if not quote.get("inStock"):
        return NotAsked()  # it cannot succeed: the purchase says why (insufficient stock)
    message = quote_message(customerName.strip(), quote)
    _shown_total.set(quote.get("totalAmount"))
    if not _modern(ctx):
        return await ask_with_ids(ctx, message, {**call_ids(ctx), QUOTE_META_KEY: quote})
    return Elicit(message, PurchaseConfirmation)


def _refused(e: ApiError) -> bool:
    """The API answered the quote with a refusal that the purchase would repeat word for word
    (unknown product, bad quantity): a 4xx, but not "too slow" (408) or "too many" (429)."""
    return 400 <= e.status < 500 and e.status not in (408, 429)


def call_ids(ctx: Context[Any, Any]) -> dict[str, Any]:
    """What identifies the calling `tools/call` to its client: web.py's correlation id and
    the call's progressToken, when the request's `_meta` carried them."""
    meta = ctx.request_context.meta or {}
    ids: dict[str, Any] = {}
    if isinstance(meta.get(CALL_META_KEY), str):
        ids[CALL_META_KEY] = meta[CALL_META_KEY][:200]
    if meta.get("progress_token") is not None:
        ids["progressToken"] = meta["progress_token"]
    return ids


async def ask_with_ids(
    ctx: Context[Any, Any], message: str, meta: dict[str, Any]
) -> ElicitationResult[PurchaseConfirmation]:
    """The SDK's `ctx.elicit`, with `meta` (the calling request's ids, the quote) in the
    question's `_meta`."""
    params = ElicitRequestFormParams(
        message=message,
        requested_schema=render_elicitation_schema(PurchaseConfirmation),
        _meta=meta,  # type: ignore[call-arg]
    )
    try:
        result = await ctx.session.send_request(
            ElicitRequest(params=params),
            ElicitResult,
            metadata=ServerMessageMetadata(related_request_id=ctx.request_id),
        )
    except MCPError as e:
        raise ToolError(
            "Nothing was bought: the client could not ask the user to confirm the purchase "
            f"(it answered the question with error {e.error.code}: {e.error.message[:300]})"
        ) from e
    if result.action == "accept":
        return AcceptedElicitation(data=PurchaseConfirmation())
    return DeclinedElicitation() if result.action == "decline" else CancelledElicitation()


def settled(confirmation: Any) -> Any:
    """The resolver's outcome as the tool reads it: a question asked here (`ask_with_ids`)
    arrives wrapped as a plain resolved value, i.e. "accepted" with the answer inside."""
    if isinstance(confirmation, AcceptedElicitation) and isinstance(confirmation.data, _ANSWERS):
        return confirmation.data
    return confirmation
