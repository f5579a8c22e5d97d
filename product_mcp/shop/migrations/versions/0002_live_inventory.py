"""Live inventory (issue #13): product SKUs, archiving, and the change feed's outbox.

Adds `products.sku` (nullable, unique: bulk imports update by it), `products.archived`
(false for every existing product), the `product_changes` outbox (seq only grows: SQLite's
AUTOINCREMENT, so pruning never lets a seq be reused) and `change_feed`, the one row that
remembers how far pruning went. Existing rows and orders are untouched, so a database of the
previous revision upgrades in place.

Revision ID: 0002_live_inventory
Revises: 0001_baseline
Create Date: 2026-08-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_live_inventory"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None
SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # SQLite: INTEGER is the rowid


def upgrade() -> None:
    # Plain ALTER TABLE on both dialects (SQLite >= 3.35 drops columns too): no table copy,
    # so the FTS5 triggers on products stay as they are.
    op.add_column("products", sa.Column("sku", sa.String(64), nullable=True))
    op.add_column(
        "products", sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.create_index("ix_products_sku", "products", ["sku"], unique=True)
    op.create_table(
        "product_changes",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("product_id", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("quantity", sa.Integer, nullable=True),
        sa.Column("price_cents", sa.Integer, nullable=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_product_changes_at", "product_changes", ["at"])
    op.create_table(
        "change_feed",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("pruned_through", SEQ, nullable=False, server_default="0"),
    )
    op.execute("INSERT INTO change_feed (id, pruned_through) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table("change_feed")
    op.drop_index("ix_product_changes_at", "product_changes")
    op.drop_table("product_changes")
    op.drop_index("ix_products_sku", "products")
    op.drop_column("products", "archived")
    op.drop_column("products", "sku")
