"""Search speed (issue #12): PostgreSQL's full-text GIN index without a pending list.

With GIN's default `fastupdate`, new and changed products go to an unsorted pending list that
every search reads in full until VACUUM (or 4 MB of them) merges it into the index: right
after the 100,000 products of the benchmark were written, 15,800 pending entries made each
search cost 16.5 ms of server CPU instead of 12. Products are written rarely and searched
often (purchases change `inventory`, not `products`), so they now go straight into the
index; what is pending is merged at once. SQLite's FTS5 index has no such list: nothing to do.

Revision ID: 0004_search_speed
Revises: 0002_live_inventory
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0004_search_speed"
down_revision = "0002_live_inventory"
branch_labels = None
depends_on = None
INDEX = "ix_products_search_vector"  # made by 0001_baseline


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER INDEX {INDEX} SET (fastupdate = off)")
    op.execute(f"SELECT gin_clean_pending_list('{INDEX}'::regclass)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER INDEX {INDEX} RESET (fastupdate)")
