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

from models import (
    MAX_STOCK,
    CatalogProduct,
    ImportReport,
    ProductCreate,
    ProductUpdate,
    StockUpdate,
)
from product_mcp.core.errors import Conflict, NotFound
from product_mcp.shop import changes
from product_mcp.shop.changes import Event
from product_mcp.shop.database import Database, insert_rows
from product_mcp.shop.importer import ImportRejected, ImportRow, RowError
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
    if lock and conn.dialect.name == "postgresql":  # both rows: the event's state is exact
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"Product ID {product_id} does not exist")
    if row.archived:
        raise Conflict(f"Product ID {product_id} was archived: it can no longer be changed")
    return row


class StaffQueries(Database):
    """Creating, editing, archiving and restocking products (and pruning their events)."""

    def prune_changes(self, retention_seconds: float) -> int:
        """Delete change-feed events older than the retention window; how many went."""
        with self._write() as conn:
            return changes.prune(conn, retention_seconds)

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
            # No price: the row was read without a lock (an edit may commit meanwhile).
            changes.append(conn, [Event(product_id, "restocked", quantity)])
        return CatalogProduct(
            id=row.id,
            name=row.name,
            price=money(row.price_cents),
            description=row.description,
            sku=row.sku,
            stock=quantity,
        )

    def import_products(self, rows: list[ImportRow]) -> ImportReport:
        """Create or update (by SKU) every row in one transaction: all of them or none.
        A row whose SKU belongs to an archived product is refused (with its row number)."""
        with self._write() as conn:
            start = next_id(conn)  # first: PostgreSQL's id lock before any row lock
            existing = _by_sku(conn, [r.sku for r in rows])
            archived = [
                RowError(
                    n, "sku", f"{r.sku} is product ID {existing[r.sku].id}, which was archived"
                )
                for n, r in enumerate(rows, start=1)
                if r.sku in existing and existing[r.sku].archived
            ]
            if archived:
                raise ImportRejected(archived)
            events: list[Event] = []
            created, updated, out = 0, 0, []
            new = [r for r in rows if r.sku not in existing]
            ids = dict(zip([r.sku for r in new], range(start, start + len(new)), strict=True))
            if new:
                insert_rows(conn, products, [_product_values(r, ids[r.sku]) for r in new])
                conn.execute(
                    insert(inventory),
                    [{"product_id": ids[r.sku], "quantity": r.stock or 0} for r in new],
                )
            for row in sorted(rows, key=lambda r: ids.get(r.sku) or existing[r.sku].id):
                if row.sku in ids:
                    created += 1
                    product = _imported(row, ids[row.sku], row.stock or 0)
                    events.append(Event(product.id, "created", product.stock, cents(row.price)))
                else:
                    product, kind = _update_from(conn, existing[row.sku], row)
                    if kind is not None:
                        updated += 1
                        events.append(Event(product.id, kind, product.stock, cents(row.price)))
                out.append(product)
            changes.append(conn, events)
        out.sort(key=lambda p: p.id)
        return ImportReport(
            created=created, updated=updated, unchanged=len(rows) - created - updated, products=out
        )


def _by_sku(conn: Connection, skus: list[str]) -> dict[str, Any]:
    """The products with these SKUs and their stock; on PostgreSQL their rows are locked in
    id order (as purchases lock stock), so the events carry exact state and cannot deadlock."""
    stmt = (
        select(products, inventory.c.quantity)
        .join(inventory, inventory.c.product_id == products.c.id)
        .where(products.c.sku.in_(skus))
        .order_by(products.c.id)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return {r.sku: r for r in conn.execute(stmt)}


def _product_values(row: ImportRow, product_id: int) -> dict[str, Any]:
    return {
        "id": product_id,
        "name": row.name,
        "description": row.description,
        "price_cents": cents(row.price),
        "sku": row.sku,
    }


def _imported(row: ImportRow, product_id: int, stock: int) -> CatalogProduct:
    return CatalogProduct(
        id=product_id,
        name=row.name,
        price=money(cents(row.price)),
        description=row.description,
        sku=row.sku,
        stock=stock,
    )


def _update_from(conn: Connection, old: Any, row: ImportRow) -> tuple[CatalogProduct, str | None]:
    """Bring an existing product to the row; the event kind, or None if nothing changed."""
    details = (row.name, row.description, cents(row.price)) != (
        old.name,
        old.description,
        old.price_cents,
    )
    stock = old.quantity if row.stock is None else row.stock
    if details:
        values = _product_values(row, old.id)
        del values["id"]
        conn.execute(update(products).where(products.c.id == old.id).values(**values))
    if stock != old.quantity:
        conn.execute(
            update(inventory).where(inventory.c.product_id == old.id).values(quantity=stock)
        )
    kind = "updated" if details else "restocked" if stock != old.quantity else None
    return _imported(row, old.id, stock), kind
