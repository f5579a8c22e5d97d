"""The MCP surface of the shop: tools, resources and a prompt over the product API (api.py).

Every API failure becomes a `ToolError` carrying the API's own words, because in mcp 2.x any
other exception reaches the model only as "Error executing tool X" and it could not recover.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import httpx
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.types import (
    Completion,
    EmptyResult,
    LoggingLevel,
    ResourceTemplateReference,
    SetLevelRequestParams,
    ToolAnnotations,
)
from pydantic import Field, TypeAdapter

import settings
from models import (
    MAX_ITEMS,
    MAX_NAME,
    InventoryItem,
    Order,
    OrderItem,
    Product,
    ProductId,
    Recommendation,
    SalesReport,
)

PAGE = 1000  # the API's largest page


class ApiError(ToolError):
    """The product API failed; the message is what the model (and a human) should read."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ProductApi:
    """One pooled HTTP client for the whole process, opened by whichever lifespan comes first."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._users = 0

    @asynccontextmanager
    async def open(self) -> AsyncIterator[ProductApi]:
        """Reference-counted: the HTTP app's lifespan and each SSE/stdio connection share it."""
        if self._users == 0:
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
        self._users += 1
        try:
            yield self
        finally:
            self._users -= 1
            if self._users == 0 and self._client is not None:
                client, self._client = self._client, None
                await client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        service: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        failed: str | None = None,
        requesting: str | None = None,
    ) -> Any:
        """Call the API; raise ApiError worded like the seed tutorial's messages."""
        if self._client is None:
            raise ApiError(f"Error requesting {service}: the server is not started")
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = await self._client.request(
                method, path, params=query, json=json, headers=headers
            )
            response.raise_for_status()
            return response.json()
        except httpx.HTTPStatusError as e:
            raise ApiError(
                f"{failed or f'Failed to call {service}'} ({e.response.status_code}): "
                f"{_detail(e.response)}",
                e.response.status_code,
            ) from e
        except httpx.RequestError as e:
            reason = str(e) or type(e).__name__
            raise ApiError(f"{requesting or f'Error requesting {service}'}: {reason}") from e
        except ValueError as e:  # a 2xx whose body is not JSON
            raise ApiError(f"Error requesting {service}: invalid JSON from the API") from e


def _detail(response: httpx.Response) -> str:
    """The API's `detail` (FastAPI validation lists become `field: message; ...`)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):
        parts = []
        for err in detail:
            if isinstance(err, dict):
                loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
                parts.append(f"{loc}: {err.get('msg', err)}" if loc else str(err.get("msg", err)))
            else:
                parts.append(str(err))
        return "; ".join(parts)
    if detail is not None:
        return str(detail)
    return response.text.strip()[:500] or response.reason_phrase


api = ProductApi(
    settings.get("PRODUCT_API_URL"), timeout=float(settings.get("PRODUCT_API_TIMEOUT"))
)


@asynccontextmanager
async def lifespan(_: MCPServer[None]) -> AsyncIterator[None]:
    async with api.open():
        yield


INSTRUCTIONS = """\
Shop assistant tools over a live product, inventory and order service.
- Find products with search_products (text, price range, in-stock only) or recommend_products
  (free-text preferences and a budget); get_product gives one product with its live stock.
- Always check stock (get_product or get_inventory) before promising availability.
- create_purchase places a real order and decrements stock: confirm the customer name, product
  ids and quantities first, and pass an idempotencyKey so a retry cannot order twice.
- get_orders and analyze_sales answer questions about past orders and revenue.
Errors come back as tool errors quoting the service; read them and correct the arguments."""

mcp: MCPServer[None] = MCPServer(
    name="Product MCP Server",
    title="Product MCP Server",
    description="Products, live inventory, purchases and sales analysis for the demo shop.",
    instructions=INSTRUCTIONS,
    version="0.1.0",
    lifespan=lifespan,
)

# --- logging/setLevel (handshake-era protocol versions) -----------------------------------

_LEVELS: tuple[LoggingLevel, ...] = (
    "debug",
    "info",
    "notice",
    "warning",
    "error",
    "critical",
    "alert",
    "emergency",
)
LEVEL_KEY = "product_mcp.log_level"


def _connection_state(session: Any) -> dict[str, Any]:
    """Per-connection scratch dict: a ServerSession is per request, its Connection is not.

    The SDK exposes no public accessor for it yet; without one, filtering is simply skipped.
    """
    state = getattr(getattr(session, "_connection", None), "state", None)
    return state if isinstance(state, dict) else {}


async def _set_level(ctx: ServerRequestContext[Any], params: SetLevelRequestParams) -> EmptyResult:
    """Remember the client's minimum level for its connection; `log` filters by it."""
    _connection_state(ctx.session)[LEVEL_KEY] = params.level
    return EmptyResult()


# MCPServer has no public hook for this method; registering it also advertises `logging`.
mcp._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, _set_level)


async def log(ctx: Context[Any, Any], level: LoggingLevel, message: str) -> None:
    """Send a log notification if the session's level lets it through; never fail the tool."""
    minimum = _connection_state(ctx.request_context.session).get(LEVEL_KEY, "debug")
    if _LEVELS.index(level) < _LEVELS.index(minimum):
        return
    try:
        with warnings.catch_warnings():
            # Logging is deprecated from protocol 2026-07-28 on, still current before it.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await ctx.log(level, message, logger_name="product-mcp")
    except Exception:  # a vanished stream must not turn a good answer into an error
        pass


# --- shared argument types ----------------------------------------------------------------

Limit = Annotated[
    int, Field(ge=1, le=PAGE, description="Maximum number of entries to return (1..1000)")
]
Offset = Annotated[int, Field(ge=0, description="Entries to skip, for paging (default 0)")]
IsoDate = Annotated[
    str | None,
    Field(
        pattern=r"^\d{4}-\d{2}-\d{2}",
        max_length=40,
        description="ISO-8601 date or datetime, e.g. 2025-06-01 or 2025-06-01T12:00:00Z",
    ),
]

_PRODUCTS = TypeAdapter(list[Product])
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
async def get_products_tool(limit: Limit = 50, offset: Offset = 0) -> list[Product]:
    """Seed tool; paged so a catalogue of thousands cannot flood the model."""
    return await api.request(
        "GET", "/products", "product service", params={"limit": limit, "offset": offset}
    )


@mcp.tool(
    name="get_inventory",
    description="Retrieve inventory list, including product details.",
    annotations=_read("List inventory"),
)
async def get_inventory_tool(limit: Limit = 50, offset: Offset = 0) -> list[InventoryItem]:
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
    limit: Limit = 50,
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


@mcp.tool(
    name="create_purchase",
    description="Create a new purchase order.",
    annotations=ToolAnnotations(
        title="Create purchase order",
        read_only_hint=False,
        destructive_hint=False,
        idempotent_hint=False,
        open_world_hint=False,
    ),
)
async def create_purchase_tool(
    customerName: Annotated[
        str,
        Field(min_length=1, max_length=MAX_NAME, description="Customer name (1..200 chars)"),
    ],
    items: Annotated[
        list[OrderItem],
        Field(
            min_length=1,
            max_length=MAX_ITEMS,
            description="Items to buy, each {productId, quantity}; stock is checked and reduced",
        ),
    ],
    ctx: Context[Any, Any],
    idempotencyKey: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=200,
            description="Any unique string for this order (e.g. a UUID). Retrying with the same "
            "key and items returns the first order instead of buying twice.",
        ),
    ] = None,
) -> Order:
    """Seed tool with the API's body as flat arguments (the seed wrapped it in `input_data`)."""
    headers = {"Idempotency-Key": idempotencyKey} if idempotencyKey else None
    body = {"customerName": customerName, "items": [i.model_dump() for i in items]}
    order = await api.request(
        "POST",
        "/purchase",
        "purchase service",
        json=body,
        headers=headers,
        failed="Failed to create purchase order",
        requesting="Error requesting purchase order creation",
    )
    await log(ctx, "info", f"Order {order.get('id')} created for {customerName}")
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
        str, Field(min_length=1, max_length=200, description="Words to look for, e.g. 'earbuds'")
    ],
    minPrice: Annotated[float | None, Field(ge=0, description="Lowest unit price")] = None,
    maxPrice: Annotated[float | None, Field(ge=0, description="Highest unit price")] = None,
    inStockOnly: Annotated[bool, Field(description="Only products with stock > 0")] = False,
    limit: Annotated[int, Field(ge=1, le=100, description="Maximum results (1..100)")] = 10,
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
            max_length=500,
            description="What the customer wants, e.g. 'noise cancelling for travel'",
        ),
    ],
    budget: Annotated[
        float | None, Field(gt=0, description="Maximum unit price the customer will pay")
    ] = None,
    limit: Annotated[int, Field(ge=1, le=20, description="Maximum recommendations (1..20)")] = 5,
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
    groupBy: Annotated[
        Literal["product", "customer", "day"], Field(description="How to group the orders")
    ],
    ctx: Context[Any, Any],
    since: IsoDate = None,
    until: IsoDate = None,
    top: Annotated[
        int | None, Field(ge=1, le=1000, description="Only the N largest groups by revenue")
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
    await log(ctx, "info", f"Sales report: {result.totals.orders} orders in {len(result.groups)}")
    await ctx.report_progress(3, 3, "Done")
    return result


# --- resources and prompt -----------------------------------------------------------------


@mcp.resource(
    "shop://products",
    name="products",
    title="Product catalogue",
    description="All products (id, name, price, description) as JSON, first 1000.",
    mime_type="application/json",
)
async def products_resource() -> str:
    try:
        products = await api.request("GET", "/products", "product service", params={"limit": PAGE})
    except ApiError as e:
        raise ResourceError(str(e)) from e
    return _PRODUCTS.dump_json(_PRODUCTS.validate_python(products)).decode()


@mcp.resource(
    "shop://products/{id}",
    name="product",
    title="Product with live stock",
    description="One product by ID with the units in stock right now, as JSON.",
    mime_type="application/json",
)
async def product_resource(id: str) -> str:
    if not id.isdigit() or int(id) < 1:
        raise ResourceNotFoundError(f"Product ID {id} does not exist")
    try:
        return (await product_with_stock(int(id))).model_dump_json()
    except ApiError as e:
        if e.status == 404:
            raise ResourceNotFoundError(str(e)) from e
        raise ResourceError(str(e)) from e


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
        products = await api.request("GET", "/products", "product service", params={"limit": PAGE})
    except ApiError:
        return Completion(values=[])
    ids = [
        str(p["id"])
        for p in products
        if str(p["id"]).startswith(value) or p["name"].lower().startswith(value.lower())
    ]
    return Completion(values=ids[:100], total=len(ids), has_more=len(ids) > 100)


@mcp.prompt(
    name="shopping_assistant",
    title="Shopping assistant",
    description="Start a conversation as the shop's assistant helping a customer find and buy "
    "products with the shop tools.",
)
def shopping_assistant(customerName: str = "", need: str = "", budget: str = "") -> str:
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
