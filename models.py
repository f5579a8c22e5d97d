"""Pydantic schemas shared by api.py, main.py and web.py: one place for the wire contract.

Field names are the tutorial's (camelCase: `productId`, `customerName`, `totalAmount`,
`orderDate`) because clients already depend on them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

MAX_QUANTITY = 10_000
MAX_ITEMS = 100
MAX_NAME = 200


def _json_number(value: object) -> object:
    """JSON Schema's integer admits 3.0 but never "3" or true: pydantic's lax int would."""
    if isinstance(value, str | bool):
        raise ValueError("must be a JSON integer, not a string or boolean")
    return value


# Field before the validator: the other order silently drops minimum/maximum from the schema.
ProductId = Annotated[
    int, Field(ge=1, le=2**31 - 1, description="Product ID"), BeforeValidator(_json_number)
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


class PurchaseRequest(BaseModel):
    """Body of POST /api/purchase.

    An empty name or empty item list passes validation on purpose: the route answers them with
    the tutorial's 400 message, which clients already match on.
    """

    model_config = ConfigDict(extra="forbid")

    # Bounds are documented for clients; the route answers an empty name with the seed's 400.
    customerName: str = Field(
        description="Customer name, 1..200 characters once surrounding spaces are trimmed",
        json_schema_extra={"minLength": 1, "maxLength": MAX_NAME},
    )
    items: list[OrderItem] = Field(
        max_length=MAX_ITEMS,
        description="1..100 items; repeated productIds are merged",
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
    groupBy: Literal["product", "customer", "day"]
    since: str | None = None
    until: str | None = None
    groups: list[SalesGroup]
    totals: SalesTotals


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    database: str
