"""Pydantic schemas shared by api.py, main.py and web.py: one place for the wire contract.

Field names are the tutorial's (camelCase: `productId`, `customerName`, `totalAmount`,
`orderDate`) because clients already depend on them. Every limit and choice a client can run
into is defined here once, and the API, the MCP tools and the page (through web.py's
`/api/config`) all use these names, so they cannot drift apart.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

# --- bounds and choices ---------------------------------------------------------------------
MAX_QUANTITY = 10_000  # units of one product in one purchase
MAX_ITEMS = 100  # items in one purchase
MAX_NAME = 200  # customer name, after trimming
MAX_QUERY = 500  # search text and recommendation preferences
MAX_IDEMPOTENCY_KEY = 255
MAX_DATE = 40  # an ISO-8601 date or datetime filter
MAX_PRICE = 10_000_000
MAX_PRODUCT_ID = 2**31 - 1
MAX_OFFSET = 1_000_000_000
PAGE_MAX = 1000  # the largest page any list route or tool returns
MAX_TOP = 1000  # analytics groups
RECOMMEND_DEFAULT, RECOMMEND_MAX = 5, 50
GroupBy = Literal["product", "customer", "day"]
GROUP_BY: tuple[str, ...] = get_args(GroupBy)

# What the chat page may send back each turn (web.py). They hang together: web.py refuses bodies
# over MAX_BODY_BYTES, and a history at HISTORY_MAX_CHARS characters of text (content,
# arguments, ids, names) stays under it even as 3-byte UTF-8 (about 3.2 MB with the JSON around
# it). The page reads them from /api/config and sends only the most recent whole turns that fit.
MAX_BODY_BYTES = 4 * 1024 * 1024
MESSAGE_MAX_CHARS = 20_000
HISTORY_MAX_MESSAGES = 1000
HISTORY_MAX_CHARS = 1_000_000
HISTORY_MAX_CONTENT = 200_000
HISTORY_MAX_TOOL_CALLS = 64
HISTORY_MAX_ARGUMENTS = 100_000
HISTORY_MAX_NAME = 128
HISTORY_MAX_ID = 200
HISTORY_LIMITS = {
    "maxBodyBytes": MAX_BODY_BYTES,
    "maxMessageChars": MESSAGE_MAX_CHARS,
    "maxMessages": HISTORY_MAX_MESSAGES,
    "maxChars": HISTORY_MAX_CHARS,
    "maxContentChars": HISTORY_MAX_CONTENT,
    "maxToolCalls": HISTORY_MAX_TOOL_CALLS,
    "maxArgumentsChars": HISTORY_MAX_ARGUMENTS,
    "maxNameChars": HISTORY_MAX_NAME,
    "maxIdChars": HISTORY_MAX_ID,
}

# Where a tool deliberately asks for less than the API allows, to spare a model's context: a
# model reads every row it is given, and a chat turn rarely needs more than these.
TOOL_PAGE_DEFAULT = 50  # get_products / get_inventory / get_orders when no limit is given
TOOL_SEARCH_DEFAULT, TOOL_SEARCH_MAX = 10, 100  # search_products results
TOOL_RECOMMEND_MAX = 20  # recommend_products: each comes with a sentence of reasons


def _json_number(value: object) -> object:
    """JSON Schema's integer admits 3.0 but never "3" or true: pydantic's lax int would."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer, not a string or boolean")
    return value


# Field before the validator: the other order silently drops minimum/maximum from the schema.
ProductId = Annotated[
    int, Field(ge=1, le=MAX_PRODUCT_ID, description="Product ID"), BeforeValidator(_json_number)
]
Quantity = Annotated[
    int,
    Field(ge=1, le=MAX_QUANTITY, description=f"Units to buy, 1..{MAX_QUANTITY}"),
    BeforeValidator(_json_number),
]


class Product(BaseModel):
    id: int
    name: str
    price: float = Field(description="Unit price")
    description: str


class InventoryItemBase(BaseModel):
    productId: int
    quantity: int = Field(description="Units in stock")


class InventoryItem(InventoryItemBase):
    product: Product | None = None


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    productId: ProductId
    quantity: Quantity


class OrderBase(BaseModel):
    customerName: str
    items: list[OrderItem]


class Order(OrderBase):
    id: int
    totalAmount: float = Field(description="Sum of price × quantity over the items")
    orderDate: str = Field(description="ISO-8601 UTC timestamp")


class PurchaseOutcome(OrderBase):
    """What create_purchase returns: the order (exactly the Order's fields) when it was placed;
    when the user declined or cancelled its confirmation, `status` and `message` instead."""

    id: int | None = Field(None, description="Order id; present when the order was placed")
    totalAmount: float | None = Field(None, description="Sum of price × quantity over the items")
    orderDate: str | None = Field(None, description="ISO-8601 UTC timestamp")
    status: Literal["declined", "cancelled"] | None = Field(
        None, description="Present only when nothing was bought: the user's answer"
    )
    message: str | None = Field(None, description="Why nothing was bought, in words")

    # No return annotation on purpose: pydantic would publish it as the output schema.
    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        return {k: v for k, v in handler(self).items() if v is not None}


class PurchaseRequest(BaseModel):
    """Body of POST /api/purchase.

    An empty name or empty item list passes validation on purpose: the route answers them with
    the tutorial's 400 message, which clients already match on.
    """

    model_config = ConfigDict(extra="forbid")

    # Bounds are documented for clients; the route answers an empty name with the seed's 400.
    customerName: str = Field(
        description=f"Customer name, 1..{MAX_NAME} characters once surrounding spaces are trimmed",
        json_schema_extra={"minLength": 1, "maxLength": MAX_NAME},
    )
    items: list[OrderItem] = Field(
        max_length=MAX_ITEMS,
        description=f"1..{MAX_ITEMS} items; repeated productIds are merged",
        json_schema_extra={"minItems": 1},
    )

    @field_validator("customerName")
    @classmethod
    def _trim(cls, v: str) -> str:
        v = v.strip()
        if len(v) > MAX_NAME:
            raise ValueError(f"must be at most {MAX_NAME} characters after trimming")
        if any(ord(c) < 32 or ord(c) == 127 for c in v):
            raise ValueError("must not contain control characters")
        return v

    def merged_items(self) -> list[OrderItem]:
        """Items with repeated productIds summed, in first-seen order."""
        totals: dict[int, int] = {}
        for item in self.items:
            totals[item.productId] = totals.get(item.productId, 0) + item.quantity
        return [OrderItem.model_construct(productId=p, quantity=q) for p, q in totals.items()]


class QuoteItem(BaseModel):
    productId: int
    name: str
    unitPrice: float = Field(description="Price of one unit now")
    quantity: int = Field(description="Units asked for (repeated productIds merged)")
    lineTotal: float = Field(description="unitPrice × quantity")
    available: int = Field(description="Units in stock now")


class Quote(BaseModel):
    """What POST /api/purchase/quote answers: the purchase priced, nothing changed."""

    items: list[QuoteItem]
    totalAmount: float = Field(description="Sum of the line totals, as the order would have")
    inStock: bool = Field(description="Whether every item's quantity is in stock now")


class Recommendation(BaseModel):
    product: Product
    stock: int = Field(description="Units in stock now")
    score: float = Field(description="Higher is a better match")
    matchedTerms: list[str] = Field(description="Preference words found in the product")
    reason: str = Field(description="Why it was recommended, in one sentence")


class SalesGroup(BaseModel):
    key: str = Field(description="productId, customer name or YYYY-MM-DD")
    label: str = Field(description="Human-readable name of the group")
    units: int
    revenue: float
    orders: int


class SalesTotals(BaseModel):
    units: int
    revenue: float
    orders: int


class SalesReport(BaseModel):
    groupBy: GroupBy
    since: str | None = None
    until: str | None = None
    groups: list[SalesGroup]
    totals: SalesTotals


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    database: str
