"""Search speed (issue #12): PostgreSQL's full-text GIN index keeps a short pending list.

GIN adds new and changed products to an unsorted pending list that every search reads in
full, until it reaches `gin_pending_list_limit` (4 MB by default) or VACUUM merges it into the
index. Right after the benchmark wrote its 100,000 products, 15,800 pending entries made each
search cost 16.5 ms of server CPU instead of 12. With a 256 kB limit the list holds at most
about a thousand entries (~0.3 ms per search) and is merged as often as that; bulk writes stay
as fast (100,000 products in 9-12 s either way, where `fastupdate = off`, no list at all, took
14-23 s). What is pending now is merged at once. SQLite's FTS5 index has no such list.

Revision ID: 0003_search_speed
Revises: 0002_live_inventory
Create Date: 2026-11-27
"""

from __future__ import annotations

from alembic import op

revision = "0003_search_speed"
down_revision = "0002_live_inventory"
branch_labels = None
depends_on = None
INDEX = "ix_products_search_vector"  # made by 0001_baseline
PENDING_KB = 256


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER INDEX {INDEX} SET (gin_pending_list_limit = {PENDING_KB})")
    op.execute(f"SELECT gin_clean_pending_list('{INDEX}'::regclass)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER INDEX {INDEX} RESET (gin_pending_list_limit)")
