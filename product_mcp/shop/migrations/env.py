"""Alembic's entry point: run the migrations on the connection api.py hands over.

`product_mcp.shop.migrate` configures Alembic in code and passes an open connection, already
inside a transaction that holds the shop's migration lock (SQLite's write lock, a PostgreSQL
advisory lock), in `config.attributes["connection"]`; Alembic then runs inside that
transaction. Without one (Alembic driven by hand, e.g. `revision --autogenerate`), it opens
the database of `DATABASE_URL`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from product_mcp.shop.migrate import include_name
from product_mcp.shop.schema import make_engine, metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_name=include_name,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite's ALTER TABLE is small
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        raise SystemExit("offline (--sql) migrations are not supported: run them on a database")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    from product_mcp.core.config import load_settings

    engine = make_engine(load_settings().DATABASE_URL)
    try:
        with engine.connect() as conn:
            run(conn)
            conn.commit()
    finally:
        engine.dispose()


main()
