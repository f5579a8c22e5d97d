"""Purchases and order history: the write side, where stock and money change.

A purchase is one transaction: each item's stock is taken with a conditional UPDATE (never
below zero, under any interleaving of threads or processes), the order and its lines are
written, and an Idempotency-Key is recorded with the order, so a retry returns the first order.
On PostgreSQL the clean case runs as one statement first (pg_purchase.py); the transaction
here decides everything else.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from models import MAX_QUANTITY, Order, OrderItem, OrderLine, PurchaseRequest
from product_mcp.core.errors import Conflict, NotFound, ShopError
from product_mcp.shop import changes, pg_purchase
from product_mcp.shop.changes import Event
from product_mcp.shop.database import Database
from product_mcp.shop.schema import (
    customer_key,
    idempotency_keys,
    inventory,
    order_items,
    orders,
    products,
)
from product_mcp.shop.values import iso, money, storable

# A purchase's statements, built once with bind parameters: building each statement and its
# cache key on every call was a quarter of a purchase's CPU in process.
KEY_LOOKUP = select(idempotency_keys).where(idempotency_keys.c.key == bindparam("key"))
PRODUCTS_BY_ID = select(products).where(products.c.id.in_(bindparam("ids", expanding=True)))
TAKE_STOCK = (
    update(inventory)
    .where(
        and_(
            inventory.c.product_id == bindparam("pid"),
            inventory.c.quantity >= bindparam("qty"),
        )
    )
    .values(quantity=inventory.c.quantity - bindparam("qty"))
    .returning(inventory.c.quantity)
)
STOCK_OF = select(inventory.c.quantity).where(inventory.c.product_id == bindparam("pid"))
NEW_ORDER = insert(orders).returning(orders.c.id)
NEW_LINES = insert(order_items)
NEW_KEY = insert(idempotency_keys)
# PostgreSQL: requests with the same Idempotency-Key queue here (two-key advisory locks are a
# space of their own), so a retry waits for the first and replays its order instead of
# meeting the stock that order took ("Insufficient stock" for the same purchase).
KEY_LOCK = text("SELECT pg_advisory_xact_lock(20241, hashtext(:key))")


class OrderQueries(Database):
    """Buying, idempotent replays and listing orders."""

    @staticmethod
    def _request_hash(name: str, items: list[OrderItem]) -> str:
        body = {"customerName": name, "items": sorted((i.productId, i.quantity) for i in items)}
        return hashlib.sha256(json.dumps(body).encode()).hexdigest()

    def purchase(self, req: PurchaseRequest, idempotency_key: str | None = None) -> Order:
        """Check and take stock for every item, then write the order: all of it or nothing."""
        name = req.customerName
        items = req.merged_items()
        if not name or not items:
            raise ShopError("Invalid request: Missing customer name or items")
        check_merged(items)
        if not storable(name):
            raise ShopError("Invalid request: customer name is not valid Unicode text")
        # Not in the digest: a retry with the key after a price change gets the first order,
        # not a 409 (the order was placed at the total the customer saw then).
        digest = self._request_hash(name, items)
        expected = req.expectedTotalAmount
        cents = None if expected is None else round(expected * 100)
        try:
            return self._purchase(name, items, idempotency_key, digest, cents)
        except IntegrityError:
            # Another request with the same key committed first (possible on PostgreSQL).
            if idempotency_key is None:
                raise
            previous = self._replay(idempotency_key, digest)
            if previous is None:
                raise
            return previous

    def _replay(self, key: str, digest: str) -> Order | None:
        with self.engine.connect() as conn:
            return self._replay_in(conn, key, digest)

    def _replay_in(self, conn: Connection, key: str, digest: str) -> Order | None:
        """The order a key already made (None if unused); 409 if it came with another body."""
        row = conn.execute(KEY_LOOKUP, {"key": key}).first()
        if row is None:
            return None
        if row.request_hash != digest:
            raise Conflict("Idempotency-Key was already used with a different request")
        return self._orders(conn, select(orders).where(orders.c.id == row.order_id))[0]

    def _purchase(
        self,
        name: str,
        items: list[OrderItem],
        key: str | None,
        digest: str,
        expected: int | None = None,
    ) -> Order:
        """`expected`: the total in cents the customer was shown, or None. The one-statement
        PostgreSQL purchase cannot check it: a purchase that carries one takes the
        transaction below (a confirmed purchase is one a person waited for)."""
        if self.dialect == "postgresql" and expected is None:
            done = self._purchase_at_once(name, items, key, digest)
            if done is not None:
                return done
        ids = [i.productId for i in items]
        with self._write() as conn:
            # The key is looked up in the write transaction itself (a read before it would cost
            # a connection, a ping and a query more per purchase): on SQLite under the write
            # lock, on PostgreSQL under the key's lock, so an earlier request with the key has
            # committed (or rolled back) and its order is replayed.
            if key is not None:
                if conn.dialect.name == "postgresql":
                    conn.execute(KEY_LOCK, {"key": key})
                previous = self._replay_in(conn, key, digest)
                if previous is not None:
                    return previous
            found = {r.id: r for r in conn.execute(PRODUCTS_BY_ID, {"ids": ids})}
            _check_buyable(found, items)
            if expected is not None:
                _check_total(found, items, expected)
            # Rows are locked in product id order, so two purchases of the same products in
            # opposite orders cannot deadlock on PostgreSQL (SQLite has one writer anyway).
            left = {
                item.productId: _take_stock(conn, item, found[item.productId].name)
                for item in sorted(items, key=lambda i: i.productId)
            }
            order_id, total, now = _write_order(conn, name, items, found)
            if key is not None:
                conn.execute(NEW_KEY, {"key": key, "request_hash": digest, "order_id": order_id})
            # Last (see changes.py). No price: `found` was read without a lock, and an edit
            # committing meanwhile must stay the last word on the price.
            changes.append(
                conn, [Event(pid, "purchased", quantity) for pid, quantity in left.items()]
            )
        return _order(order_id, name, items, total, now, {i: r.name for i, r in found.items()})

    def _purchase_at_once(
        self, name: str, items: list[OrderItem], key: str | None, digest: str
    ) -> Order | None:
        """PostgreSQL: the purchase as one statement and its commit (pg_purchase.py); None
        when it wrote nothing and the transaction below must decide."""
        now = datetime.now(UTC).replace(tzinfo=None)
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                done = pg_purchase.buy(conn, name, customer_key(name), items, key, digest, now)
                if done.short_name is not None and key is not None:
                    # Short of stock, maybe because a request with this key took it while the
                    # statement waited for the row: then that order is the answer.
                    previous = self._replay_in(conn, key, digest)
                    if previous is not None:
                        return previous
        except IntegrityError:
            return None  # undone: a racing request wrote the key first
        if done.short_name is not None:
            raise _short(done.short_name, done.available)
        if done.order_id is None:
            return None
        for wake in self.on_change:
            wake()
        return _order(done.order_id, name, items, done.total_cents, now, done.names)

    @staticmethod
    def _orders(conn: Connection, stmt: Any) -> list[Order]:
        rows = list(conn.execute(stmt))
        if not rows:
            return []
        items: dict[int, list[OrderLine]] = {r.id: [] for r in rows}
        for it in conn.execute(
            select(order_items, products.c.name)
            .join(products, products.c.id == order_items.c.product_id)
            .where(order_items.c.order_id.in_(list(items)))
            .order_by(order_items.c.order_id, order_items.c.line)
        ):
            items[it.order_id].append(
                OrderLine.model_construct(
                    productId=it.product_id, quantity=it.quantity, name=it.name
                )
            )
        return [
            Order(
                id=r.id,
                customerName=r.customer_name,
                items=items[r.id],
                totalAmount=money(r.total_cents),
                orderDate=iso(r.created_at),
            )
            for r in rows
        ]

    def list_orders(
        self,
        *,
        customer: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Order]:
        stmt = select(orders).order_by(orders.c.created_at.desc(), orders.c.id.desc())
        if customer:  # any case, in all of Unicode, through the indexed folded name
            if not storable(customer):
                return []  # no order has such a name (PostgreSQL could not even compare it)
            stmt = stmt.where(orders.c.customer_key == customer_key(customer))
        stmt = in_window(stmt, since, until).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return self._orders(conn, stmt)


def _order(
    order_id: int,
    name: str,
    items: list[OrderItem],
    total: int,
    now: datetime,
    names: dict[int, str],
) -> Order:
    return Order(
        id=order_id,
        customerName=name,
        items=[
            OrderLine.model_construct(
                productId=i.productId, quantity=i.quantity, name=names.get(i.productId)
            )
            for i in items
        ],
        totalAmount=money(total),
        orderDate=iso(now),
    )


def check_merged(items: list[OrderItem]) -> None:
    """Repeated productIds were merged: the per-line bound holds for their sum too."""
    for item in items:
        if item.quantity > MAX_QUANTITY:
            raise ShopError(
                f"Invalid request: at most {MAX_QUANTITY} units of product ID "
                f"{item.productId} per purchase"
            )


def _check_buyable(found: dict[int, Any], items: list[OrderItem]) -> None:
    """Every item's product exists and is not archived (404 / 409 naming it)."""
    for item in items:
        if item.productId not in found:
            raise NotFound(f"Product ID {item.productId} does not exist")
        if found[item.productId].archived:
            raise Conflict(
                f"{found[item.productId].name} (product ID {item.productId}) was "
                "archived and can no longer be bought"
            )


def _check_total(found: dict[int, Any], items: list[OrderItem], expected: int) -> None:
    """The total at the prices read now must be the one the customer was shown (found from
    outside: a price raised while the customer was asked was charged, unseen)."""
    total = sum(found[i.productId].price_cents * i.quantity for i in items)
    if total != expected:
        raise Conflict(
            f"The total is now {total / 100:,.2f}, not the {expected / 100:,.2f} expected: a "
            "price changed since the quote; nothing was bought"
        )


def _write_order(
    conn: Connection, name: str, items: list[OrderItem], found: dict[int, Any]
) -> tuple[int, int, datetime]:
    """Insert the order and its lines at the prices read: (order id, total cents, time)."""
    total = sum(found[i.productId].price_cents * i.quantity for i in items)
    now = datetime.now(UTC).replace(tzinfo=None)
    order_id = conn.execute(
        NEW_ORDER,
        {
            "customer_name": name,
            "customer_key": customer_key(name),
            "total_cents": total,
            "created_at": now,
        },
    ).scalar_one()
    conn.execute(
        NEW_LINES,
        [
            {
                "order_id": order_id,
                "product_id": i.productId,
                "quantity": i.quantity,
                "unit_price_cents": found[i.productId].price_cents,
                "line": n,
            }
            for n, i in enumerate(items)
        ],
    )
    return order_id, total, now


def _take_stock(conn: Connection, item: OrderItem, name: str) -> int:
    """Take the item's units and return what is left, or refuse the whole purchase: never
    below zero, whatever runs alongside, because the check and the decrement are one
    conditional UPDATE."""
    left = conn.execute(TAKE_STOCK, {"pid": item.productId, "qty": item.quantity}).scalar()
    if left is not None:
        return left
    raise _short(name, conn.scalar(STOCK_OF, {"pid": item.productId}) or 0)


def _short(name: str, available: int) -> ShopError:
    return ShopError(f"Insufficient stock for {name}. Available: {available}")


def in_window(stmt: Any, since: datetime | None, until: datetime | None) -> Any:
    """Restrict a query over orders to since <= created_at < until."""
    if since is not None:
        stmt = stmt.where(orders.c.created_at >= since)
    if until is not None:
        stmt = stmt.where(orders.c.created_at < until)
    return stmt
