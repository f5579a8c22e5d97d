"""Quotes: a purchase priced against the catalogue and stock of now, changing nothing.

Why a query of its own: a client (main.py's create_purchase) shows the user what a purchase
would cost before asking them to confirm it. The same checks as a purchase run first, so a
quote and the purchase after it answer a bad body with the same error; short stock is not an
error here but `inStock: false`, since showing it is the point of a quote.
"""

from __future__ import annotations

from sqlalchemy import select

from models import PurchaseRequest, Quote, QuoteItem
from product_mcp.core.errors import Conflict, NotFound, ShopError
from product_mcp.shop.database import Database
from product_mcp.shop.orders import check_merged
from product_mcp.shop.schema import inventory, products
from product_mcp.shop.values import money, storable


class QuoteQueries(Database):
    """Pricing a purchase without making it."""

    def quote(self, req: PurchaseRequest) -> Quote:
        name = req.customerName
        items = req.merged_items()
        if not name or not items:
            raise ShopError("Invalid request: Missing customer name or items")
        if not storable(name):
            raise ShopError("Invalid request: customer name is not valid Unicode text")
        check_merged(items)
        ids = [i.productId for i in items]
        stmt = (
            select(
                products.c.id,
                products.c.name,
                products.c.price_cents,
                products.c.archived,
                inventory.c.quantity,
            )
            .select_from(products.outerjoin(inventory, inventory.c.product_id == products.c.id))
            .where(products.c.id.in_(ids))
        )
        with self.engine.connect() as conn:
            found = {r.id: r for r in conn.execute(stmt)}
        lines: list[QuoteItem] = []
        total = 0
        for item in items:
            row = found.get(item.productId)
            if row is None:
                raise NotFound(f"Product ID {item.productId} does not exist")
            if row.archived:  # worded as the purchase words it
                raise Conflict(
                    f"{row.name} (product ID {item.productId}) was archived and can no longer "
                    "be bought"
                )
            line = row.price_cents * item.quantity
            total += line
            lines.append(
                QuoteItem(
                    productId=row.id,
                    name=row.name,
                    unitPrice=money(row.price_cents),
                    quantity=item.quantity,
                    lineTotal=money(line),
                    available=row.quantity or 0,
                )
            )
        return Quote(
            items=lines,
            totalAmount=money(total),
            inStock=all(q.quantity <= q.available for q in lines),
        )
