"""The API app's life: its database opened, migrated and followed by the change feed while it
runs, and what a request gets when the database connection is lost under it.

Why here and not in api.py: api.py stays the REST routes a reader looks for; this is the
plumbing every route relies on (`app.state.shop`, `app.state.feed`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError

from product_mcp.core.config import load_settings
from product_mcp.core.protocol import HeaderTimeoutProtocol
from product_mcp.shop import Shop, make_engine
from product_mcp.shop.feed import ChangeFeed

DATABASE_LOST = (
    "database unavailable: the database could not be reached, dropped the connection, or "
    "stayed locked too long. A purchase may still have been placed (its commit can have "
    "reached the database before the connection was lost): retry it with the same "
    "Idempotency-Key, which places it at most once, or look for it in GET /api/orders "
    "before buying again without one"
)


async def database_lost(_: Request, exc: Exception) -> JSONResponse:
    """The database dropped the connection under the request (a failover or restart of
    PostgreSQL, an administrator's pg_terminate_backend, a server turned read-only:
    shop/schema.py) or stayed locked too long: the pool reconnects, the client may retry (a
    purchase with its Idempotency-Key cannot be placed twice). Not always rolled back: a
    PostgreSQL purchase commits in the round trip whose reply was lost (found from outside:
    17 of 20 such were placed), so the answer says it may have been. Any other database error
    stays a 500."""
    assert isinstance(exc, DBAPIError)
    if not isinstance(exc, OperationalError) and not exc.connection_invalidated:
        raise exc
    logging.getLogger("api").warning("database error, answered 503: %s", one_line(exc.orig))
    return JSONResponse({"detail": DATABASE_LOST}, status_code=503, headers={"Retry-After": "1"})


def one_line(error: object) -> str:
    """A driver's message on one log line (PostgreSQL's carry DETAIL and CONTEXT lines)."""
    return " ".join(str(error).split())


@asynccontextmanager
async def running(
    app: FastAPI,
    *,
    database_url: str | None,
    migrate: bool,
    admin_token: str | None,
    settings: dict[str, Any] | None,
) -> AsyncIterator[None]:
    """Settings are read, the database opened and migrated, and the change feed started when
    the app starts, not on import; all closed when it stops."""
    config = load_settings(**(settings or {}))
    engine = make_engine(
        database_url or config.DATABASE_URL, sqlite_synchronous=config.SQLITE_SYNCHRONOUS
    )
    shop = Shop(engine)
    try:
        before, after = await run_in_threadpool(partial(shop.init, migrate=migrate))
    except BaseException:
        engine.dispose()
        raise
    if before != after:
        print(f"database schema upgraded from {before or 'no revision'} to {after}")
    app.state.shop = shop
    app.state.admin_token = (
        config.ADMIN_TOKEN.get_secret_value() if admin_token is None else admin_token
    )
    feed = ChangeFeed(shop, retention=config.CHANGE_RETENTION, heartbeat=config.CHANGE_HEARTBEAT)
    await feed.start()
    app.state.feed = feed
    app.state.change_streams = {}
    app.state.streams_per_client = config.CHANGE_STREAMS_PER_CLIENT
    HeaderTimeoutProtocol.on_shutdown.append(feed.close_soon)
    try:
        yield
    finally:
        HeaderTimeoutProtocol.on_shutdown.remove(feed.close_soon)
        await feed.close()
        engine.dispose()
