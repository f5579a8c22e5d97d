"""The shop's connection to its database: one engine, short transactions, one writer lock.

Why a base class: the query modules (catalog, orders, analytics) are mixins over this one
`Database`, so `Shop` stays one object for api.py while each module keeps one job.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from product_mcp.shop.schema import init_sqlite_fts, inventory, metadata, products, upgrade
from product_mcp.shop.seed import seed


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

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        if self.dialect != "sqlite":
            with self.engine.connect().execution_options(write=True) as conn, conn.begin():
                yield conn
            return
        with (
            self._write_lock,
            self.engine.connect().execution_options(write=True) as conn,
            conn.begin(),
        ):
            yield conn

    def init(self) -> None:
        """Create or upgrade tables, search index and seed data once; safe when several
        workers race (on PostgreSQL the loser of a DDL race sees ProgrammingError, then
        finds the work done on its retry)."""
        for attempt in range(5):
            try:
                with self._write() as conn:
                    metadata.create_all(conn)
                    upgrade(conn)  # a database from an earlier release, in place
                    if self.dialect == "sqlite":
                        init_sqlite_fts(conn)
                    if conn.scalar(select(func.count()).select_from(products)) == 0:
                        seed(conn)
                return
            except (OperationalError, IntegrityError, ProgrammingError):
                if attempt == 4:
                    raise

    def add_products(self, rows: list[tuple[str, int, str, int]]) -> None:
        """Bulk-insert (name, price_cents, description, stock); used by benchmarks and tests."""
        with self._write() as conn:
            start = (conn.scalar(select(func.max(products.c.id))) or 0) + 1
            ids = range(start, start + len(rows))
            conn.execute(
                insert(products),
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
