"""Sales analytics: units, revenue and order counts grouped by product, customer or day."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, cast, func, select

from models import GroupBy, SalesGroup, SalesReport, SalesTotals
from product_mcp.shop.database import Database
from product_mcp.shop.orders import in_window
from product_mcp.shop.schema import order_items, orders, products
from product_mcp.shop.values import iso, money


class SalesQueries(Database):
    """Grouped sales with totals, over an optional time window."""

    def sales(
        self,
        group_by: GroupBy,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        top: int | None = None,
    ) -> SalesReport:
        """Units, revenue and order count per group, biggest revenue first, plus totals."""
        # In 64 bits: a line may exceed PostgreSQL's 32-bit integer (10,000 × $10,000,000).
        line = cast(order_items.c.quantity, BigInteger) * order_items.c.unit_price_cents
        if group_by == "product":
            key, label = order_items.c.product_id, products.c.name
        elif group_by == "customer":
            key = label = orders.c.customer_name
        else:
            key = label = func.date(orders.c.created_at)  # SQLite and PostgreSQL alike
        units = func.sum(order_items.c.quantity)
        revenue = func.sum(line)
        count = func.count(func.distinct(orders.c.id))
        joined = orders.join(order_items, order_items.c.order_id == orders.c.id).join(
            products, products.c.id == order_items.c.product_id
        )
        stmt = (
            select(key.label("key"), label.label("label"), units, revenue, count)
            .select_from(joined)
            .group_by(key, label)
            .order_by(revenue.desc(), key)
            .limit(top)
        )
        totals = select(units, revenue, count).select_from(joined)
        stmt, totals = in_window(stmt, since, until), in_window(totals, since, until)
        with self.engine.connect() as conn:
            groups = [
                SalesGroup(key=str(k), label=str(lbl), units=u, revenue=money(int(rv)), orders=n)
                for k, lbl, u, rv, n in conn.execute(stmt)
            ]
            tu, tr, tn = conn.execute(totals).one()
        return SalesReport(
            groupBy=group_by,
            since=iso(since) if since else None,
            until=iso(until) if until else None,
            groups=groups,
            totals=SalesTotals(units=tu or 0, revenue=money(int(tr or 0)), orders=tn or 0),
        )
