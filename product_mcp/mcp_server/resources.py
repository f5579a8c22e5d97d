"""The shop's MCP resources (with live subscriptions, live.py), argument completion and the
shopping-assistant prompt."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.types import Completion, ResourceTemplateReference
from pydantic import Field, TypeAdapter

from models import MAX_NAME, MAX_PRODUCT_ID, MAX_QUERY, PAGE_MAX, InventoryItemBase, Product
from product_mcp.mcp_server.api_client import ApiError, api
from product_mcp.mcp_server.listen import ShopListen
from product_mcp.mcp_server.live import INVENTORY_URI, Live
from product_mcp.mcp_server.server import bus, mcp
from product_mcp.mcp_server.tools import product_with_stock

_PRODUCTS = TypeAdapter(list[Product])
_STOCK = TypeAdapter(list[InventoryItemBase])  # productId and quantity only: small to re-read


async def _first_page(path: str, rows: TypeAdapter[Any]) -> str:
    """The first PAGE_MAX rows of an API listing as JSON; an API failure is a ResourceError."""
    try:
        found = await api.request("GET", path, "product service", params={"limit": PAGE_MAX})
    except ApiError as e:
        raise ResourceError(str(e)) from e
    return rows.dump_json(rows.validate_python(found)).decode()


@mcp.resource(
    "shop://products",
    name="products",
    title="Product catalogue",
    description=f"All products (id, name, price, description) as JSON, first {PAGE_MAX}.",
    mime_type="application/json",
)
async def products_resource() -> str:
    return await _first_page("/products", _PRODUCTS)


@mcp.resource(
    "shop://products/{id}",
    name="product",
    title="Product with live stock",
    description="One product by ID with the units in stock right now, as JSON.",
    mime_type="application/json",
)
async def product_resource(id: str) -> str:
    # Any id no product can have is not found here, in the same words as the API's, and
    # never sent on ("1" * 30 came back as the API's 422 about a path parameter).
    if not (id.isascii() and id.isdigit() and len(id) <= 10 and 1 <= int(id) <= MAX_PRODUCT_ID):
        raise ResourceNotFoundError(f"Product ID {id[:40]} does not exist")
    try:
        return (await product_with_stock(int(id))).model_dump_json()
    except ApiError as e:
        if e.status == 404:  # unknown or archived: the API's own sentence
            raise ResourceNotFoundError(e.api_said or str(e)) from e
        raise ResourceError(str(e)) from e


@mcp.resource(
    INVENTORY_URI,
    name="inventory",
    title="Live inventory",
    description=f"Units in stock per product (first {PAGE_MAX}) as JSON; subscribe to it to "
    "hear of every stock change.",
    mime_type="application/json",
)
async def inventory_resource() -> str:
    return await _first_page("/inventory", _STOCK)


# Subscriptions to these resources (both protocol eras), fed by api.py's change feed.
live = Live(mcp, bus)
live.register()
ShopListen(bus, live).register(mcp)  # subscriptions/listen with seqs and catch-up


@mcp.completion()
async def complete(ref: Any, argument: Any, context: Any) -> Completion | None:
    """Suggest product ids for `shop://products/{id}` (id or name prefix) so clients can pick."""
    if not (
        isinstance(ref, ResourceTemplateReference)
        and ref.uri == "shop://products/{id}"
        and argument.name == "id"
    ):
        return None
    value = argument.value.strip()
    try:
        products = await api.request(
            "GET", "/products", "product service", params={"limit": PAGE_MAX}
        )
    except ApiError:
        return Completion(values=[])
    ids = [
        str(p["id"])
        for p in products
        if str(p["id"]).startswith(value) or p["name"].lower().startswith(value.lower())
    ]
    return Completion(values=ids[:100], total=len(ids), has_more=len(ids) > 100)


MAX_BUDGET_TEXT = 40  # "under $500", "about 1,200 EUR"


@mcp.prompt(
    name="shopping_assistant",
    title="Shopping assistant",
    description="Start a conversation as the shop's assistant helping a customer find and buy "
    "products with the shop tools.",
)
def shopping_assistant(
    customerName: Annotated[
        str, Field(max_length=MAX_NAME, description="The customer's name, for the order")
    ] = "",
    need: Annotated[
        str,
        Field(max_length=MAX_QUERY, description="What they are looking for, in their words"),
    ] = "",
    budget: Annotated[
        str,
        Field(
            max_length=MAX_BUDGET_TEXT,
            description="How much they want to spend, in words (e.g. 'under $500')",
        ),
    ] = "",
) -> str:
    # Bounded as the tools bound the same things: the text goes into the model's context.
    who = f"The customer is {customerName}. " if customerName else ""
    wants = f"They are looking for: {need}. " if need else ""
    money = f"Their budget is {budget}. " if budget else ""
    return (
        "You are the shopping assistant of an electronics shop. "
        f"{who}{wants}{money}"
        "Use search_products or recommend_products to find suitable products, check live stock "
        "with get_product before promising anything, and explain prices clearly. Only call "
        "create_purchase after the customer confirmed their name, the products and quantities; "
        "pass a fresh idempotencyKey. If a tool returns an error, explain it in plain words."
    )
