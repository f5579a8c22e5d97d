"""The owner's side of the catalogue: add, edit, archive and restock products (staff routes).

Each change is one short transaction that also appends its change-feed event (`changes.py`),
so a product and its event commit together. Stock moves by one conditional UPDATE, as a
purchase's does: setting or adjusting it can never take it below zero (or past `MAX_STOCK`),
however many purchases run alongside, in this process or any other. New ids are the largest
plus one, drawn under the write lock (SQLite) or an advisory lock (PostgreSQL), as the seed
and `add_products` number products explicitly and leave PostgreSQL's sequence behind.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, text, update

from models import MAX_STOCK, CatalogProduct, ProductCreate, ProductUpdate, StockUpdate
from product_mcp.core.errors import Conflict, NotFound
from product_mcp.shop import changes
from product_mcp.shop.changes import Event
from product_mcp.shop.database import Database
from product_mcp.shop.schema import inventory, products
from product_mcp.shop.values import cents, money

ID_LOCK = 0x5E0B_1D5A_110C  # pg_advisory_xact_lock key of whoever draws new product ids


def catalog_product(row: Any) -> CatalogProduct:
    return CatalogProduct(
        id=row.id,
        name=row.name,
        price=money(row.price_cents),
        description=row.description,
        sku=row.sku,
        stock=row.quantity,
    )


def next_id(conn: Connection) -> int:
    """The next product id (call once per transaction; then count up from it)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ID_LOCK})
    return (conn.scalar(select(func.max(products.c.id))) or 0) + 1


def live_row(conn: Connection, product_id: int, *, lock: bool = False) -> Any:
    """The product with its stock; 404 if unknown, 409 if archived."""
    stmt = (
        select(products, inventory.c.quantity)
        .join(inventory, inventory.c.product_id == products.c.id)
        .where(products.c.id == product_id)
    )
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=products)
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"Product ID {product_id} does not exist")
    if row.archived:
        raise Conflict(f"Product ID {product_id} was archived: it can no longer be changed")
    return row


class StaffQueries(Database):
    """Creating, editing, archiving and restocking products."""

    def create_product(self, req: ProductCreate) -> CatalogProduct:
        with self._write() as conn:
            if req.sku is not None:
                taken = conn.scalar(select(products.c.id).where(products.c.sku == req.sku))
                if taken is not None:
                    raise Conflict(f"SKU {req.sku} is already product ID {taken}")
            product_id = next_id(conn)
            price = cents(req.price)
            conn.execute(
                insert(products).values(
                    id=product_id,
                    name=req.name,
                    description=req.description,
                    price_cents=price,
                    sku=req.sku,
                )
            )
            conn.execute(insert(inventory).values(product_id=product_id, quantity=req.stock))
            changes.append(conn, [Event(product_id, "created", req.stock, price)])
        return CatalogProduct(
            id=product_id,
            name=req.name,
            price=money(price),
            description=req.description,
            sku=req.sku,
            stock=req.stock,
        )

    def update_product(self, product_id: int, req: ProductUpdate) -> CatalogProduct:
        values: dict[str, Any] = {}
        if req.name is not None:
            values["name"] = req.name
        if req.description is not None:
            values["description"] = req.description
        if req.price is not None:
            values["price_cents"] = cents(req.price)
        with self._write() as conn:
            live_row(conn, product_id, lock=True)
            conn.execute(update(products).where(products.c.id == product_id).values(**values))
            row = live_row(conn, product_id)
            changes.append(conn, [Event(product_id, "updated", row.quantity, row.price_cents)])
        return catalog_product(row)

    def archive_product(self, product_id: int) -> CatalogProduct:
        with self._write() as conn:
            row = live_row(conn, product_id, lock=True)
            conn.execute(update(products).where(products.c.id == product_id).values(archived=True))
            changes.append(conn, [Event(product_id, "archived", row.quantity, row.price_cents)])
        return catalog_product(row)

    def set_stock(self, product_id: int, req: StockUpdate) -> CatalogProduct:
        """Set or adjust one product's stock in one conditional UPDATE; an adjustment that
        would leave 0..MAX_STOCK is refused with what is there now."""
        if req.quantity is not None:
            new = req.quantity
            where = inventory.c.product_id == product_id
        else:
            delta = req.delta or 0
            new = inventory.c.quantity + delta
            where = and_(
                inventory.c.product_id == product_id,
                inventory.c.quantity + delta >= 0,
                inventory.c.quantity + delta <= MAX_STOCK,
            )
        with self._write() as conn:
            row = live_row(conn, product_id)
            quantity = conn.execute(
                update(inventory).where(where).values(quantity=new).returning(inventory.c.quantity)
            ).scalar()
            if quantity is None:
                now = conn.scalar(
                    select(inventory.c.quantity).where(inventory.c.product_id == product_id)
                )
                bound = "below zero" if (req.delta or 0) < 0 else f"above {MAX_STOCK}"
                raise Conflict(
                    f"Stock of {row.name} cannot go {bound}: {now} in stock, delta {req.delta:+d}"
                )
            changes.append(conn, [Event(product_id, "restocked", quantity, row.price_cents)])
        return CatalogProduct(
            id=row.id,
            name=row.name,
            price=money(row.price_cents),
            description=row.description,
            sku=row.sku,
            stock=quantity,
        )
