"""Order totals in 64 bits on PostgreSQL: a purchase worth more than $21,474,836.47 failed.

`orders.total_cents` was a 32-bit `integer` there (SQLite's INTEGER is 64-bit already), and
the purchase statement multiplied two 32-bit values (price in cents × quantity), so a purchase
the API accepts (up to 100 products × 10,000 units × $10,000,000: 10^15 cents) ended in
"integer out of range", a 500 (found by the schemathesis test's stateful phase). The column
becomes `bigint`; the statements now multiply in 64 bits (pg_purchase.py, analytics.py).
Existing orders keep their values; SQLite is untouched.

Revision ID: 0006_order_totals
Revises: 0005_search_names
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0006_order_totals"
down_revision = "0005_search_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE orders ALTER COLUMN total_cents TYPE bigint")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Fails, changing nothing, if an order's total no longer fits 32 bits.
        op.execute("ALTER TABLE orders ALTER COLUMN total_cents TYPE integer")
