"""The shop's connection to its database: one engine, short transactions, one writer lock.

Why a base class: the query modules (catalog, orders, analytics) are mixins over this one
`Database`, so `Shop` stays one object for api.py while each module keeps one job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError

from product_mcp.shop import migrate as migrations
from product_mcp.shop.changes import CHANGED
from product_mcp.shop.schema import inventory, products
from product_mcp.shop.seed import seed

# pg_advisory_xact_lock's key for schema changes: any fixed 64-bit number of our own.
MIGRATION_LOCK = 0x5E0B_5C4E_3A11


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows. On PostgreSQL as multi-row INSERTs of 1,000 rows (SQLAlchemy's
    "insertmanyvalues", which it uses for an executemany with RETURNING): products'
    statement-level triggers (migration 0004: the search table and its words) then handle a
    batch at once, where a plain executemany is a statement, and a trigger run, per row
    (writing 100,000 products took ~50 % longer that way). SQLite's executemany is one
    prepared statement stepped per row, as its FTS5 triggers are: left as it is."""
    if conn.dialect.name == "postgresql":
        conn.execute(insert(table).returning(*table.primary_key.columns), rows)
    else:
        conn.execute(insert(table), rows)


@dataclass
class Database:
    """The engine plus the write discipline every query module uses."""

    engine: Engine
    # SQLite has one writer at a time. Threads of this process queue here instead of in
    # SQLite's busy handler, which polls with sleeps of up to 100 ms; other processes still
    # wait in busy_timeout.
    _write_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # Called (from the writer's thread) after a transaction that appended to the change feed
    # commits: the API's feed (feed.py) wakes its streams without waiting for its next poll.
    on_change: list[Callable[[], None]] = field(default_factory=list, init=False, repr=False)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        changed = False
        if self.dialect != "sqlite":
            with self.engine.connect().execution_options(write=True) as conn, conn.begin():
                yield conn
                # Not in a `finally`: after a lost connection `conn.info` raises
                # PendingRollbackError, which hid the OperationalError the API answers with 503.
                changed = bool(conn.info.pop(CHANGED, False))
        else:
            with (
                self._write_lock,
                self.engine.connect().execution_options(write=True) as conn,
                conn.begin(),
            ):
                yield conn
                changed = bool(conn.info.pop(CHANGED, False))
        if changed:  # committed: an exception above would have skipped this
            for wake in self.on_change:
                wake()

    def init(self, *, migrate: bool = True, seed_empty: bool = True) -> tuple[str | None, str]:
        """Bring the schema to this release's revision (`migrate=False`: refuse with a
        sentence unless it is there already), then seed an empty catalogue (`seed_empty`;
        not when a catalogue is being imported into it); returns the revisions before and
        after.

        One transaction holding the migration lock does it all (SQLite: BEGIN IMMEDIATE, the
        file's write lock; PostgreSQL: a transaction-scoped advisory lock, with DDL in the same
        transaction), so workers starting together queue, and the later ones find it done.
        A lock wait that runs out (SQLite's busy timeout) is retried.
        """
        for attempt in range(5):
            try:
                with self._write() as conn:
                    if self.dialect == "postgresql":
                        conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
                    if migrate:
                        revisions = migrations.upgrade(conn)
                    else:
                        revision = migrations.require_current(conn)
                        revisions = (revision, revision)
                    empty = conn.scalar(select(func.count()).select_from(products)) == 0
                    if seed_empty and empty:
                        seed(conn)
                return revisions
            except (OperationalError, IntegrityError):
                if attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))
        raise AssertionError("unreachable")

    def add_products(self, rows: list[tuple[str, int, str, int]]) -> None:
        """Bulk-insert (name, price_cents, description, stock); used by benchmarks and tests."""
        with self._write() as conn:
            start = (conn.scalar(select(func.max(products.c.id))) or 0) + 1
            ids = range(start, start + len(rows))
            insert_rows(
                conn,
                products,
                [
                    {"id": i, "name": n, "price_cents": p, "description": d}
                    for i, (n, p, d, _) in zip(ids, rows, strict=True)
                ],
            )
            conn.execute(
                insert(inventory),
                [{"product_id": i, "quantity": r[3]} for i, r in zip(ids, rows, strict=True)],
            )

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))
