"""Product & order microservice: the tutorial's REST contract on a real database.

Routes stay thin: validation and bounds live in `models.py`, storage and stock rules in the
shop wing (`product_mcp/shop/`). Run: `uv run python api.py [--host] [--port 8000] [--workers 1]`;
`uv run python api.py import catalogue.csv` imports a catalogue and exits.
At start the database is brought to this release's schema (Alembic, `product_mcp/shop/
migrations/`); `--no-migrate` refuses an older one with a sentence instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from datetime import date, datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from models import (
    MAX_DATE,
    MAX_IDEMPOTENCY_KEY,
    MAX_IMPORT_BYTES,
    MAX_NAME,
    MAX_OFFSET,
    MAX_PRICE,
    MAX_PRODUCT_ID,
    MAX_QUERY,
    MAX_TOP,
    PAGE_MAX,
    RECOMMEND_DEFAULT,
    RECOMMEND_MAX,
    GroupBy,
    Health,
    InventoryItem,
    Order,
    Product,
    PurchaseRequest,
    Quote,
    Recommendation,
    SalesReport,
)
from product_mcp.core.config import MAX_API_WORKERS, load_settings
from product_mcp.core.errors import (
    ProductMcpError,
    error_response,
    http_error_response,
    validation_response,
)
from product_mcp.core.middleware import BodyLimit
from product_mcp.core.serve import int_arg, port_arg, port_given, serve, serve_workers
from product_mcp.shop import Shop, commands, feed_routes, staff_routes, to_utc_naive
from product_mcp.shop.lifespan import database_lost, one_line, running

MAX_BODY = 64 * 1024
WORKER_HEALTHCHECK_SECONDS = 30

Limit = Annotated[int | None, Query(ge=1, le=PAGE_MAX, description="Return at most this many")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Skip this many first")]
Price = Annotated[float | None, Query(ge=0, le=MAX_PRICE, allow_inf_nan=False)]
ProductPath = Annotated[int, Path(ge=1, le=MAX_PRODUCT_ID)]
Bound = Annotated[
    str | None,
    Query(
        max_length=MAX_DATE,
        description="ISO-8601 date or datetime (UTC if no offset); a date `until` is inclusive",
    ),
]


def _bound(name: str, value: str | None, *, end: bool = False) -> datetime | None:
    """Parse a since/until filter; a malformed one is a 422 naming the parameter."""
    if value is None:
        return None
    why = "must be an ISO-8601 date (YYYY-MM-DD) or datetime"
    try:
        parsed: date | datetime = (
            date.fromisoformat(value) if len(value) == 10 else datetime.fromisoformat(value)
        )
        # Near year 1 or 9999 a UTC offset or "end of that day" leaves the calendar: a valid
        # date, out of range (it was called malformed; found from outside).
        why = "is out of range: in UTC it falls outside the years 1 to 9999"
        result = to_utc_naive(parsed, end_of_day=end)
    except (ValueError, OverflowError):
        raise RequestValidationError(
            [{"loc": ("query", name), "msg": why, "type": "value_error", "input": value}]
        ) from None
    return result


async def get_shop(request: Request) -> Shop:
    # async: FastAPI runs a plain `def` dependency in the thread pool, a thread hop per request.
    return request.app.state.shop


ShopDep = Annotated[Shop, Depends(get_shop)]
router = APIRouter()


@router.get("/api/products", response_model=list[Product], tags=["products"])
def get_products(
    shop: ShopDep,
    q: Annotated[
        str | None, Query(max_length=MAX_QUERY, description="Full-text search, best match first")
    ] = None,
    min_price: Price = None,
    max_price: Price = None,
    in_stock: Annotated[bool | None, Query(description="Only (un)available products")] = None,
    limit: Limit = None,
    offset: Offset = 0,
) -> list[Product]:
    """All products by id; with `q`, ranked full-text search over name and description."""
    return shop.list_products(
        q=q,
        min_price=min_price,
        max_price=max_price,
        in_stock=in_stock,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/api/products/{product_id}",
    response_model=Product,
    tags=["products"],
    responses={404: {"description": "Unknown product"}},
)
def get_product(shop: ShopDep, product_id: ProductPath) -> Product:
    return shop.get_product(product_id)[0]


@router.get("/api/inventory", response_model=list[InventoryItem], tags=["products"])
def get_inventory(shop: ShopDep, limit: Limit = None, offset: Offset = 0) -> list[InventoryItem]:
    return shop.list_inventory(limit=limit, offset=offset)


@router.get(
    "/api/inventory/{product_id}",
    response_model=InventoryItem,
    tags=["products"],
    responses={404: {"description": "Unknown product"}},
)
def get_inventory_item(shop: ShopDep, product_id: ProductPath) -> InventoryItem:
    """One product's live stock, with the product."""
    product, quantity = shop.get_product(product_id)
    return InventoryItem(productId=product.id, quantity=quantity, product=product)


@router.get("/api/recommendations", response_model=list[Recommendation], tags=["products"])
def get_recommendations(
    shop: ShopDep,
    preferences: Annotated[
        str, Query(min_length=1, max_length=MAX_QUERY, description="What the customer wants")
    ],
    budget: Price = None,
    limit: Annotated[int, Query(ge=1, le=RECOMMEND_MAX)] = RECOMMEND_DEFAULT,
) -> list[Recommendation]:
    """In-stock products within budget, best match to the preferences first, with reasons."""
    return shop.recommend(preferences, budget=budget, limit=limit)


@router.get("/api/orders", response_model=list[Order], tags=["orders"])
def get_orders(
    shop: ShopDep,
    customer: Annotated[
        str | None, Query(max_length=MAX_NAME, description="Exact name, any case")
    ] = None,
    since: Bound = None,
    until: Bound = None,
    limit: Limit = None,
    offset: Offset = 0,
) -> list[Order]:
    """Orders, newest first."""
    return shop.list_orders(
        customer=customer,
        since=_bound("since", since),
        until=_bound("until", until, end=True),
        limit=limit,
        offset=offset,
    )


@router.post(
    "/api/purchase",
    response_model=Order,
    tags=["orders"],
    responses={
        400: {"description": "Missing name or items, or insufficient stock"},
        404: {"description": "Unknown product"},
        409: {
            "description": "Idempotency-Key reused with a different body, archived product, or "
            "a total other than expectedTotalAmount (a price changed)"
        },
        413: {"description": "Body over 64 KiB"},
    },
)
async def create_purchase(
    shop: ShopDep,
    request: PurchaseRequest,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=MAX_IDEMPOTENCY_KEY,
            description="Repeat-safe retries: same key, same order",
        ),
    ] = None,
) -> Response:
    """Buy: every item's stock is checked and taken in one transaction, or nothing changes."""
    # The hot path: only the transaction goes to the thread pool. The Order was built and
    # checked by `Order(...)` already, so it is written as it is: FastAPI would validate it a
    # second time, in another thread hop (`response_model` still documents it).
    if idempotency_key is not None:  # RFC 9110: the spaces around a value are not part of it
        idempotency_key = idempotency_key.strip(" \t")
        if not idempotency_key:
            raise RequestValidationError(
                [{"type": "value_error", "loc": ("header", "idempotency-key"),
                  "msg": "must not be blank", "input": ""}]
            )  # fmt: skip
    order = await run_in_threadpool(shop.purchase, request, idempotency_key)
    return Response(order.model_dump_json(), media_type="application/json")


@router.post(
    "/api/purchase/quote",
    response_model=Quote,
    tags=["orders"],
    responses={
        400: {"description": "Missing name or items"},
        404: {"description": "Unknown product"},
        409: {"description": "A product was archived"},
        413: {"description": "Body over 64 KiB"},
    },
)
def quote_purchase(shop: ShopDep, request: PurchaseRequest) -> Quote:
    """Price a purchase body (names, prices, totals, stock now) without buying anything."""
    return shop.quote(request)


@router.get("/api/analytics/sales", response_model=SalesReport, tags=["orders"])
def get_sales(
    shop: ShopDep,
    group_by: GroupBy = "product",
    since: Bound = None,
    until: Bound = None,
    top: Annotated[int | None, Query(ge=1, le=MAX_TOP)] = None,
) -> SalesReport:
    """Units, revenue and order count per product, customer or day, plus totals."""
    return shop.sales(
        group_by,
        since=_bound("since", since),
        until=_bound("until", until, end=True),
        top=top,
    )


@router.get("/healthz", response_model=Health, tags=["health"])
def healthz(shop: ShopDep) -> Health | JSONResponse:
    try:
        shop.ping()
    except Exception as e:
        # The driver's words name the host, port and database: they go to the log, not to
        # whoever asks (found from outside: /healthz needs no token), once per outage, so
        # that asking often cannot flood the log.
        if not _HEALTH["down"]:
            logging.getLogger("api").warning("health check: database unavailable: %s", one_line(e))
        _HEALTH["down"] = True
        detail = f"database unavailable ({type(e).__name__}): api.py's log says why"
        return JSONResponse({"detail": detail}, status_code=503)
    if _HEALTH["down"]:
        _HEALTH["down"] = False
        logging.getLogger("api").warning("health check: the database answers again")
    return Health(database=shop.dialect)


_HEALTH = {"down": False}  # whether the last health check found the database unavailable


def create_app(
    database_url: str | None = None,
    *,
    migrate: bool = True,
    admin_token: str | None = None,
    settings: dict[str, Any] | None = None,
) -> FastAPI:
    """The API app; the database opens when it starts (settings are read then, not on import)
    and is migrated to this release's schema then (`migrate=False`: refused if it is not).
    `admin_token` overrides ADMIN_TOKEN (the staff routes' token; empty: they are off),
    `settings` any other setting (tests)."""
    app = FastAPI(
        title="Product & Order Service",
        description="Products, inventory, orders and sales analytics for the MCP shop assistant.",
        version="1.0.0",
        lifespan=partial(
            running,
            database_url=database_url,
            migrate=migrate,
            admin_token=admin_token,
            settings=settings,
        ),
    )
    app.include_router(router)
    app.include_router(staff_routes.router)
    app.include_router(feed_routes.router)
    app.add_exception_handler(ProductMcpError, error_response)
    app.add_exception_handler(RequestValidationError, validation_response)
    app.add_exception_handler(HTTPException, http_error_response)
    app.add_exception_handler(DBAPIError, database_lost)
    app.add_middleware(
        BodyLimit, max_bytes=MAX_BODY, larger={"/api/products/import": MAX_IMPORT_BYTES}
    )
    return app


app = create_app()


def main() -> None:
    if sys.argv[1:2] == ["import"]:
        return commands.import_file(sys.argv[2:])
    settings = load_settings()
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="`api.py import FILE` imports a CSV or JSON catalogue and exits "
        "(api.py import --help).",
    )
    parser.add_argument(
        "--host", default=settings.API_HOST, help="bind address; 0.0.0.0 exposes the API"
    )
    parser.add_argument("--port", type=port_arg, default=None, help="default: API_PORT")
    parser.add_argument("--workers", type=int_arg(1, MAX_API_WORKERS), default=settings.API_WORKERS)
    parser.add_argument("--database-url", default=settings.DATABASE_URL)
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log one line per request (off by default: it costs ~5%% of a request's CPU)",
    )
    parser.add_argument(
        "--no-migrate",
        action="store_true",
        help="refuse to start on a database not at this release's schema revision "
        "instead of upgrading it",
    )
    args = parser.parse_args()
    args.port, moved_by = port_given(args.port, settings.API_PORT, "--port", "API_PORT")
    commands.check_database(args.database_url)
    if args.no_migrate:
        commands.require_current_schema(args.database_url)
    os.environ["DATABASE_URL"] = args.database_url  # worker processes read it when they start
    sqlite = args.database_url.startswith("sqlite")  # the setting means nothing elsewhere
    banner = f"Product & Order Service on http://{args.host}:{args.port}\n" + settings.summary(
        ["SQLITE_SYNCHRONOUS", "ADMIN_TOKEN"] if sqlite else ["ADMIN_TOKEN"],
        {"DATABASE_URL": args.database_url, "API_WORKERS": args.workers},
    )
    log = {"access_log": args.access_log, **settings.server_limits()}
    if args.workers > 1:
        # Each worker's start migrates (one at a time, under the migration lock); with
        # --no-migrate the check above found the schema current, so theirs change nothing.
        # uvicorn kills a worker that has not answered its supervisor within the health-check
        # timeout (5 s): 30 s still replaces a hung worker, and gives a slow database time.
        serve_workers(
            "api:app",
            args.host,
            args.port,
            moved_by,
            banner,
            args.workers,
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
            **log,
        )
    else:
        app = create_app(args.database_url, migrate=not args.no_migrate)
        serve(app, args.host, args.port, moved_by, banner=banner, **log)


if __name__ == "__main__":
    main()
