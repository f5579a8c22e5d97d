"""Pydantic schemas shared by api.py, main.py and web.py: one place for the wire contract.

Field names are the tutorial's (camelCase: `productId`, `customerName`, `totalAmount`,
`orderDate`) because clients already depend on them. Every limit and choice a client can run
into is defined here once, and the API, the MCP tools and the page (through web.py's
`/api/config`) all use these names, so they cannot drift apart.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

# --- bounds and choices ---------------------------------------------------------------------
MAX_QUANTITY = 10_000  # units of one product in one purchase
MAX_ITEMS = 100  # items in one purchase
MAX_NAME = 200  # customer name, after trimming
MAX_QUERY = 500  # search text and recommendation preferences
MAX_IDEMPOTENCY_KEY = 255
MAX_MCP_SERVERS = 64  # servers web.py loads from mcp.json (a session, or a process, each)
# What web.py takes from one MCP server's tool list (chat/supervise.py): a server listing 5,010
# tools with big schemas made web.py hold 660 MiB and every LLM request carry 66 MB (found from
# outside). Tools past these are left out (not offered), and /api/servers says which and why.
MAX_SERVER_TOOLS = 256  # tools of one server, in the order listed
MAX_TOOL_DESCRIPTION_BYTES = 4 * 1024  # one tool's description, UTF-8
MAX_TOOL_SCHEMA_BYTES = 64 * 1024  # one tool's input (and output) schema, as JSON
MAX_SERVER_TOOLS_BYTES = 1024 * 1024  # one server's tools, each as JSON, all together
# An Idempotency-Key travels as a header: visible ASCII, spaces only inside (RFC 9110 trims
# the ends), so what a client gives is exactly what the API stores.
IDEMPOTENCY_KEY_PATTERN = r"^[!-~](?:[ !-~]*[!-~])?$"
MAX_DATE = 40  # an ISO-8601 date or datetime filter
MAX_PRICE = 10_000_000
MAX_PRODUCT_ID = 2**31 - 1
MAX_OFFSET = 1_000_000_000
PAGE_MAX = 1000  # the largest page any list route or tool returns
MAX_TOP = 1000  # analytics groups
RECOMMEND_DEFAULT, RECOMMEND_MAX = 5, 50
# The owner's catalogue (issue #13): staff routes and bulk import.
MAX_PRODUCT_NAME = 200
MAX_DESCRIPTION = 2000
MAX_STOCK = 1_000_000_000  # units of one product on hand (and the largest adjustment)
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAX_IMPORT_ROWS = 10_000
MAX_IMPORT_BYTES = 4 * 1024 * 1024
CHANGES_PAGE_DEFAULT, CHANGES_PAGE_MAX = 100, 1000
ChangeKind = Literal["created", "updated", "restocked", "purchased", "archived", "resync"]
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
REPLY_MAX_CHARS = 4_000_000  # of one streamed model reply (content and reasoning): then cut
HISTORY_MAX_CONTENT = 200_000
HISTORY_MAX_TOOL_CALLS = 64
HISTORY_MAX_ARGUMENTS = 100_000
HISTORY_MAX_NAME = 128
HISTORY_MAX_ID = 200
# The `_meta` key of web.py's correlation id on each tools/call; main.py echoes it in the
# `_meta` of a question it asks during that call, so web.py shows it in the right chat.
CALL_META_KEY = "product-mcp/call"
# The `_meta` key of main.py's quote (a `Quote`) on create_purchase's question: the question's
# Markdown shows it to any client; web.py's page draws it from this (names, its money format).
QUOTE_META_KEY = "product-mcp/quote"

# MCP resources attached to one chat message: web.py reads them from their server and gives
# their text to the model with that message (text resources only).
ATTACHMENTS_MAX = 5
ATTACHMENT_MAX_CHARS = 50_000
ATTACHMENT_MAX_URI = 2000
HISTORY_LIMITS = {
    "maxAttachments": ATTACHMENTS_MAX,
    "maxAttachmentChars": ATTACHMENT_MAX_CHARS,
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


def json_number(value: object, kind: str = "integer") -> object:
    """JSON Schema's integer admits 3.0 but never "3" or true: pydantic's lax int would (and
    its lax float "1.5"); `kind` says which the field wants."""
    if isinstance(value, str | bool):
        raise ValueError(f"must be a JSON {kind}, not a string or boolean")
    return value


# Field before the validator: the other order silently drops minimum/maximum from the schema.
ProductId = Annotated[
    int, Field(ge=1, le=MAX_PRODUCT_ID, description="Product ID"), BeforeValidator(json_number)
]
Quantity = Annotated[
    int,
    Field(ge=1, le=MAX_QUANTITY, description=f"Units to buy, 1..{MAX_QUANTITY}"),
    BeforeValidator(json_number),
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


class OrderLine(BaseModel):
    """A line of an order as the API answers it: the item, and its product's name (added next
    to the seed's fields: an order read "2 × product #3" where the chat had not shown it)."""

    productId: ProductId
    quantity: Quantity
    name: str | None = Field(None, description="The product's name")

    # No return annotation on purpose (as PurchaseOutcome's): the schema stays the fields'.
    @model_serializer(mode="wrap")
    def _without_null_name(self, handler: SerializerFunctionWrapHandler):  # type: ignore[no-untyped-def]
        data = handler(self)
        if data.get("name") is None:
            data.pop("name", None)
        return data


class OrderBase(BaseModel):
    customerName: str
    items: list[OrderLine]


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


# Characters that show nothing (white space, format characters, the Hangul fillers, the
# blank Braille pattern): a name of only these is no name ("\u200b" was accepted). Other
# control characters are not trimmed: they are refused, with a reason.
_BLANK_KINDS = frozenset({"Zs", "Zl", "Zp", "Cf"})
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _blank(c: str) -> bool:
    return c.isspace() or c in _BLANK or unicodedata.category(c) in _BLANK_KINDS


def trimmed(text: str) -> str:
    """`text` without the spaces and invisible characters around it."""
    start, end = 0, len(text)
    while start < end and _blank(text[start]):
        start += 1
    while end > start and _blank(text[end - 1]):
        end -= 1
    return text[start:end]


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
        description=f"1..{MAX_ITEMS} items; repeated productIds are merged, and a product's "
        f"merged quantity must stay within 1..{MAX_QUANTITY}",
        json_schema_extra={"minItems": 1},
    )
    expectedTotalAmount: float | None = Field(
        None,
        ge=0,
        le=MAX_ITEMS * MAX_QUANTITY * MAX_PRICE,  # the largest order there can be
        allow_inf_nan=False,
        description="Optional: the total the customer was shown (a quote); the purchase is "
        "refused (409) unless its total is exactly this, to the cent, so a price changed "
        "since is never charged",
    )

    @field_validator("expectedTotalAmount")
    @classmethod
    def _in_cents(cls, v: float | None) -> float | None:
        """Money is cents: 2598.004 is not a total any order has (it was taken as 2598.00)."""
        # relative: 134,217,829.95 × 100 is 13421782995.000002 in floats (found from outside)
        if v is not None and abs(v * 100 - round(v * 100)) > 1e-9 * max(1.0, v * 100):
            raise ValueError("at most two decimals: a total in cents")
        return v

    @field_validator("items")
    @classmethod
    def _merged_within_bounds(cls, v: list[OrderItem]) -> list[OrderItem]:
        """The order stores merged lines, each bounded like one item (a restocked product
        could otherwise be bought 16,256 at a time in 13 items of the same id)."""
        totals: dict[int, int] = {}
        for item in v:
            totals[item.productId] = totals.get(item.productId, 0) + item.quantity
            if totals[item.productId] > MAX_QUANTITY:
                raise ValueError(
                    f"product {item.productId} adds up to more than {MAX_QUANTITY} units; "
                    f"at most {MAX_QUANTITY} of one product per purchase"
                )
        return v

    @field_validator("customerName")
    @classmethod
    def _trim(cls, v: str) -> str:
        v = trimmed(v)
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


# --- the owner's catalogue (staff routes, issue #13) ----------------------------------------


def _clean_text(value: str, *, single_line: bool) -> str:
    """Trimmed text both databases can store; names on one line."""
    value = trimmed(value)
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    banned = (lambda c: ord(c) < 32 or ord(c) == 127) if single_line else (lambda c: False)
    if any(banned(c) for c in value):
        raise ValueError("must not contain control characters")
    return value


def _whole_cents(value: float) -> float:
    if abs(value * 100 - round(value * 100)) > 1e-6:
        raise ValueError("must have at most 2 decimal places")
    return value


ProductName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_PRODUCT_NAME, description="Product name, trimmed"),
    BeforeValidator(lambda v: _clean_text(v, single_line=True) if isinstance(v, str) else v),
]
Description = Annotated[
    str,
    Field(max_length=MAX_DESCRIPTION, description="Product description"),
    BeforeValidator(lambda v: _clean_text(v, single_line=False) if isinstance(v, str) else v),
]
UnitPrice = Annotated[
    float,
    Field(ge=0, le=MAX_PRICE, allow_inf_nan=False, description="Unit price, at most 2 decimals"),
    BeforeValidator(lambda v: json_number(v, "number")),
    AfterValidator(_whole_cents),
]
Stock = Annotated[
    int,
    Field(ge=0, le=MAX_STOCK, description="Units in stock"),
    BeforeValidator(json_number),
]
Sku = Annotated[
    str,
    Field(pattern=SKU_PATTERN, description="The owner's product key: imports update by it"),
]


class ProductCreate(BaseModel):
    """Body of POST /api/products."""

    model_config = ConfigDict(extra="forbid")

    name: ProductName
    description: Description = ""
    price: UnitPrice
    stock: Stock = 0
    sku: Sku | None = None


class ProductUpdate(BaseModel):
    """Body of PATCH /api/products/{id}: any of name, description, price (at least one)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    name: ProductName | None = None
    description: Description | None = None
    price: UnitPrice | None = None

    @model_validator(mode="after")
    def _something(self) -> ProductUpdate:
        if not self.model_fields_set - {k for k, v in self if v is None}:
            raise ValueError("give at least one of name, description, price (not null)")
        return self


class StockUpdate(BaseModel):
    """Body of PATCH /api/inventory/{id}: set the stock (`quantity`) or adjust it (`delta`)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    quantity: Stock | None = Field(None, description="Set the units in stock to this")
    delta: (
        Annotated[
            int,
            Field(ge=-MAX_STOCK, le=MAX_STOCK, description="Add (or, negative, take) this many"),
            BeforeValidator(json_number),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _one(self) -> StockUpdate:
        if (self.quantity is None) == (self.delta is None):
            raise ValueError("give exactly one of quantity or delta")
        return self


class CatalogProduct(Product):
    """A product as the staff routes answer: with its SKU and stock."""

    sku: str | None = None
    stock: int = Field(description="Units in stock")


class Change(BaseModel):
    """One event of the change feed (GET /api/changes); `resync` means "re-read everything,
    then follow on after this seq": the events you missed were pruned."""

    seq: int = Field(description="Only grows; resume after the last one you saw")
    productId: int | None = Field(description="The product (null only for resync)")
    kind: ChangeKind
    quantity: int | None = Field(None, description="Units in stock after the change")
    price: float | None = Field(None, description="Unit price after the change")
    at: str = Field(description="ISO-8601 UTC timestamp")


class ImportReport(BaseModel):
    """What a bulk import did (all rows, or nothing when any row is invalid)."""

    created: int
    updated: int
    unchanged: int
    products: list[CatalogProduct]
