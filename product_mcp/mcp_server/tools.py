"""The shop's MCP tools: the tutorial's four plus search, one product, recommendations, sales.

Why thin: each tool validates its arguments through its signature (bounds from models.py) and
makes one API call; the API's refusals come back as `isError` results in the API's words.
Where a tool asks for less than the API allows, models.py names the limit and says why.
"""

from __future__ import annotations

import functools
import re
import uuid
from typing import Annotated, Any

import anyio
import anyio.lowlevel
from mcp.server.elicitation import AcceptedElicitation, ElicitationResult
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.resolve import Resolve
from mcp.types import ToolAnnotations
from pydantic import AfterValidator, BeforeValidator, Field

from models import (
    IDEMPOTENCY_KEY_PATTERN,
    MAX_DATE,
    MAX_IDEMPOTENCY_KEY,
    MAX_ITEMS,
    MAX_NAME,
    MAX_OFFSET,
    MAX_PRICE,
    MAX_QUERY,
    MAX_TOP,
    PAGE_MAX,
    RECOMMEND_DEFAULT,
    TOOL_PAGE_DEFAULT,
    TOOL_RECOMMEND_MAX,
    TOOL_SEARCH_DEFAULT,
    TOOL_SEARCH_MAX,
    GroupBy,
    InventoryItem,
    Order,
    OrderItem,
    Product,
    ProductId,
    PurchaseOutcome,
    Recommendation,
    SalesReport,
    json_number,
)
from product_mcp.mcp_server.api_client import ApiError, api
from product_mcp.mcp_server.confirm import (
    PurchaseConfirmation,
    confirm_purchase,
    round_key,
    settled,
    shown_total,
)
from product_mcp.mcp_server.server import log, mcp

# Numbers and flags as JSON types, as productId already was: `limit: "5"`, `limit: true` and
# `inStockOnly: "yes"` passed through pydantic's lax mode (found from outside).
Strict = BeforeValidator(json_number)
Limit = Annotated[
    int,
    Field(ge=1, le=PAGE_MAX, description=f"Maximum number of entries to return (1..{PAGE_MAX})"),
    Strict,
]
Offset = Annotated[
    int, Field(ge=0, le=MAX_OFFSET, description="Entries to skip, for paging (default 0)"), Strict
]
# A unit price bound, as the API takes it (0..MAX_PRICE)
PriceBound = Annotated[
    float | None,
    Field(ge=0, le=MAX_PRICE, allow_inf_nan=False),
    BeforeValidator(functools.partial(json_number, kind="number")),
]
# A budget: a positive price or none. The bound sits on the number itself: pydantic writes a
# bound on `X | None` as `gt` beside the anyOf, which JSON Schema validators ignore.
Budget = Annotated[
    Annotated[float, Field(gt=0, le=MAX_PRICE, allow_inf_nan=False)] | None,
    BeforeValidator(functools.partial(json_number, kind="number")),
]


def _json_bool(value: object) -> object:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


Flag = BeforeValidator(_json_bool)
IsoDate = Annotated[
    str | None,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}",
        max_length=MAX_DATE,
        description="ISO-8601 date or datetime, e.g. 2025-06-01 or 2025-06-01T12:00:00Z",
    ),
]

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def _read(title: str) -> ToolAnnotations:
    return READ.model_copy(update={"title": title})


class ProductWithStock(Product):
    stock: int = Field(description="Units in stock right now")


async def product_with_stock(product_id: int) -> ProductWithStock:
    """The product plus its live stock, in one API call."""
    item = await api.request("GET", f"/inventory/{product_id}", "product service")
    return ProductWithStock(**item["product"], stock=item["quantity"])


# --- seed tools ---------------------------------------------------------------------------


@mcp.tool(
    name="get_products",
    description="Retrieve a list of all products.",
    annotations=_read("List products"),
)
async def get_products_tool(limit: Limit = TOOL_PAGE_DEFAULT, offset: Offset = 0) -> list[Product]:
    """Seed tool; paged so a catalogue of thousands cannot flood the model."""
    return await api.request(
        "GET", "/products", "product service", params={"limit": limit, "offset": offset}
    )


@mcp.tool(
    name="get_inventory",
    description="Retrieve inventory list, including product details.",
    annotations=_read("List inventory"),
)
async def get_inventory_tool(
    limit: Limit = TOOL_PAGE_DEFAULT, offset: Offset = 0
) -> list[InventoryItem]:
    return await api.request(
        "GET", "/inventory", "inventory service", params={"limit": limit, "offset": offset}
    )


@mcp.tool(
    name="get_orders",
    description="Retrieve order list, sorted by date in descending order.",
    annotations=_read("List orders"),
)
async def get_orders_tool(
    customer: Annotated[
        str | None,
        Field(min_length=1, max_length=MAX_NAME, description="Only orders of this customer name"),
    ] = None,
    since: IsoDate = None,
    until: IsoDate = None,
    limit: Limit = TOOL_PAGE_DEFAULT,
    offset: Offset = 0,
) -> list[Order]:
    return await api.request(
        "GET",
        "/orders",
        "order service",
        params={
            "customer": customer,
            "since": since,
            "until": until,
            "limit": limit,
            "offset": offset,
        },
    )


CustomerName = Annotated[
    str,
    # trimmed first, as the API does ("1..200 once trimmed"): 150 spaces round a name were
    # "over 200 characters" here and fine there (found from outside)
    BeforeValidator(lambda v: v.strip() if isinstance(v, str) else v),
    Field(min_length=1, max_length=MAX_NAME, description=f"Customer name (1..{MAX_NAME} chars)"),
]
PurchaseItems = Annotated[
    list[OrderItem],
    Field(
        min_length=1,
        max_length=MAX_ITEMS,
        description="Items to buy, each {productId, quantity}; stock is checked and reduced",
    ),
]


def _header_safe(key: str | None) -> str | None:
    if key is not None and not re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key):
        # it is sent as a header: anything else failed in httpx's or the API's words
        raise ValueError(
            "must be visible ASCII characters (letters, digits, punctuation; spaces only "
            "inside), e.g. a UUID"
        )
    return key


IdempotencyKey = Annotated[
    str | None,
    Field(
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        description="Any unique string for this order (e.g. a UUID; visible ASCII). Retrying "
        "with the same key and items returns the first order instead of buying twice.",
    ),
    AfterValidator(_header_safe),
]


@mcp.tool(
    name="create_purchase",
    description="Create a new purchase order.",  # the seed's words; confirmation: confirm.py
    meta={"product-mcp/confirms": "elicitation"},
    annotations=ToolAnnotations(
        title="Create purchase order",
        read_only_hint=False,
        destructive_hint=False,
        idempotent_hint=False,
        open_world_hint=False,
    ),
)
async def create_purchase_tool(
    customerName: CustomerName,
    items: PurchaseItems,
    confirmation: Annotated[ElicitationResult[PurchaseConfirmation], Resolve(confirm_purchase)],
    ctx: Context[Any, Any],
    idempotencyKey: IdempotencyKey = None,
) -> PurchaseOutcome:
    """Seed tool with the API's body as flat arguments (the seed wrapped it in `input_data`).

    A cancel (`notifications/cancelled`) takes effect only until the purchase is sent: once
    the API has it, it runs to the end, and the client is told the truth in a log message
    ("cancel arrived too late: order N was placed") instead of a cancel that did not happen.
    With elicitation the user first sees the API's quote (confirm.py); only Accept buys.
    """
    confirmation = settled(confirmation)
    if not isinstance(confirmation, AcceptedElicitation):
        action = "declined" if confirmation.action == "decline" else "cancelled"
        return PurchaseOutcome(
            customerName=customerName,
            items=[i.model_dump() for i in items],
            status=action,
            message=f"not bought: {action} (the user did not confirm; nothing was ordered)",
        )
    # Without the caller's key we still send one of our own, so that a purchase whose
    # connection died before the answer can be sent again without buying twice; a confirmed
    # 2026-07-28 round's key is the same however often the round arrives (confirm.py).
    key = idempotencyKey or round_key() or f"mcp-{uuid.uuid4().hex}"
    body: dict[str, Any] = {"customerName": customerName, "items": [i.model_dump() for i in items]}
    if shown_total() is not None:
        body["expectedTotalAmount"] = shown_total()
    try:
        order = await _send_purchase(ctx, customerName, body, {"Idempotency-Key": key})
    except ApiError as e:
        if not e.maybe_done:
            raise
        # Sent (twice, with its key) and never answered: saying only "failed" made a client
        # retry, and buy again. The key finds out without that risk.
        raise ApiError(
            f"{e}. The order may have been placed: call create_purchase again with the same "
            f'customerName, the same items and idempotencyKey "{key}" to get it without '
            "buying twice.",
            e.status,
            maybe_done=True,
        ) from e
    await log(ctx, "info", f"Order {order.get('id')} created for {customerName}")
    return PurchaseOutcome.model_validate(order)


async def _send_purchase(
    ctx: Context[Any, Any], customerName: str, body: dict[str, Any], headers: dict[str, str]
) -> dict[str, Any]:
    """POST /purchase, shielded once sent: a cancel that comes after is logged, not faked."""
    await anyio.lowlevel.checkpoint_if_cancelled()  # cancelled before sending: nothing bought
    with anyio.CancelScope(shield=True):
        order = await api.request(
            "POST",
            "/purchase",
            "purchase service",
            json=body,
            headers=headers,
            failed="Failed to create purchase order",
            requesting="Error requesting purchase order creation",
        )
    try:
        await anyio.lowlevel.checkpoint_if_cancelled()
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            message = f"cancel arrived too late: order {order.get('id')} was placed"
            await log(ctx, "warning", f"{message} for {customerName}")
        raise
    return order


# --- new tools ----------------------------------------------------------------------------


@mcp.tool(
    name="get_product",
    description="Retrieve one product by its ID, with the units in stock right now. Use it to "
    "answer availability questions and before create_purchase.",
    annotations=_read("Get product"),
)
async def get_product_tool(productId: ProductId) -> ProductWithStock:
    return await product_with_stock(productId)


@mcp.tool(
    name="search_products",
    description="Search products by words in their name or description, best matches first, "
    "optionally within a price range and only those in stock. Use it instead of listing "
    "every product.",
    annotations=_read("Search products"),
)
async def search_products_tool(
    query: Annotated[
        str,
        Field(min_length=1, max_length=MAX_QUERY, description="Words to look for, e.g. 'earbuds'"),
    ],
    minPrice: Annotated[PriceBound, Field(description="Lowest unit price")] = None,
    maxPrice: Annotated[PriceBound, Field(description="Highest unit price")] = None,
    inStockOnly: Annotated[bool, Field(description="Only products with stock > 0"), Flag] = False,
    limit: Annotated[
        int,
        Field(ge=1, le=TOOL_SEARCH_MAX, description=f"Maximum results (1..{TOOL_SEARCH_MAX})"),
        Strict,
    ] = TOOL_SEARCH_DEFAULT,
    offset: Offset = 0,
) -> list[Product]:
    return await api.request(
        "GET",
        "/products",
        "product service",
        params={
            "q": query,
            "min_price": minPrice,
            "max_price": maxPrice,
            "in_stock": "true" if inStockOnly else None,
            "limit": limit,
            "offset": offset,
        },
    )


@mcp.tool(
    name="recommend_products",
    description="Recommend in-stock products for a customer's free-text preferences (needs, "
    "features, use), optionally within a budget, each with a score and a one-sentence reason.",
    annotations=_read("Recommend products"),
)
async def recommend_products_tool(
    preferences: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_QUERY,
            description="What the customer wants, e.g. 'noise cancelling for travel'",
        ),
    ],
    budget: Annotated[Budget, Field(description="Maximum unit price the customer will pay")] = None,
    limit: Annotated[
        int,
        Field(
            ge=1,
            le=TOOL_RECOMMEND_MAX,
            description=f"Maximum recommendations (1..{TOOL_RECOMMEND_MAX})",
        ),
        Strict,
    ] = RECOMMEND_DEFAULT,
) -> list[Recommendation]:
    return await api.request(
        "GET",
        "/recommendations",
        "recommendation service",
        params={"preferences": preferences, "budget": budget, "limit": limit},
    )


@mcp.tool(
    name="analyze_sales",
    description="Summarise sales (units, revenue, order count) grouped by product, customer or "
    "day, optionally within a date range, with totals. Use it for questions like 'best "
    "sellers this month' or 'who bought the most'.",
    annotations=_read("Analyze sales"),
)
async def analyze_sales_tool(
    groupBy: Annotated[GroupBy, Field(description="How to group the orders")],
    ctx: Context[Any, Any],
    since: IsoDate = None,
    until: IsoDate = None,
    top: Annotated[
        int | None,
        Field(ge=1, le=MAX_TOP, description="Only the N largest groups by revenue"),
        Strict,
    ] = None,
) -> SalesReport:
    """Reports progress, since this walks every order in the range."""
    await ctx.report_progress(0, 3, "Querying orders")
    await log(ctx, "debug", f"analyze_sales groupBy={groupBy} since={since} until={until}")
    report = await api.request(
        "GET",
        "/analytics/sales",
        "sales analytics service",
        params={"group_by": groupBy, "since": since, "until": until, "top": top},
    )
    await ctx.report_progress(1, 3, "Aggregating groups")
    result = SalesReport.model_validate(report)
    await ctx.report_progress(2, 3, f"{len(result.groups)} groups")
    groups = f"{len(result.groups)} group{'' if len(result.groups) == 1 else 's'}"
    await log(ctx, "info", f"Sales report: {result.totals.orders} orders in {groups} by {groupBy}")
    await ctx.report_progress(3, 3, "Done")
    return result
