"""api.py's staff routes: the owner adds, edits, archives and restocks products (issue #13).

Why a router of its own: these routes share one guard, the staff token (`ADMIN_TOKEN`, sent as
`Authorization: Bearer`, compared in constant time), which the public routes never ask for.
Without a token configured the staff routes are off and say so (503); a missing token is 401,
a wrong one 403, each with a sentence.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from models import (
    MAX_IMPORT_BYTES,
    MAX_IMPORT_ROWS,
    MAX_PRODUCT_ID,
    CatalogProduct,
    ImportReport,
    ProductCreate,
    ProductUpdate,
    StockUpdate,
)
from product_mcp.shop import Shop
from product_mcp.shop.importer import FIELDS, parse

bearer = HTTPBearer(auto_error=False, description="The staff token (ADMIN_TOKEN)")
ProductPath = Annotated[int, Path(ge=1, le=MAX_PRODUCT_ID)]

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Body is not JSON"},
    401: {"description": "No staff token (Authorization: Bearer)"},
    403: {"description": "Wrong staff token"},
    413: {"description": "Body too large"},
    503: {"description": "Staff routes are off: ADMIN_TOKEN is not set"},
}


async def require_staff(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    """The staff token guard: 503 when off, 401 without a bearer token, 403 when wrong."""
    token: str = request.app.state.admin_token
    if not token:
        raise HTTPException(
            503, "Staff routes are off: set ADMIN_TOKEN on api.py to manage the catalogue"
        )
    if credentials is None:
        raise HTTPException(
            401,
            "This route needs the staff token: send Authorization: Bearer <ADMIN_TOKEN>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
        raise HTTPException(403, "The staff token is wrong")


async def get_shop(request: Request) -> Shop:  # async: no thread hop
    return request.app.state.shop


ShopDep = Annotated[Shop, Depends(get_shop)]
router = APIRouter(tags=["staff"], dependencies=[Depends(require_staff)])


@router.post(
    "/api/products",
    response_model=CatalogProduct,
    status_code=201,
    responses={**AUTH_RESPONSES, 409: {"description": "SKU already used"}},
)
def create_product(shop: ShopDep, body: ProductCreate) -> CatalogProduct:
    """Add a product with its opening stock (201 with the product and its new `id`)."""
    return shop.create_product(body)


@router.patch(
    "/api/products/{product_id}",
    response_model=CatalogProduct,
    responses={
        **AUTH_RESPONSES,
        404: {"description": "Unknown product"},
        409: {"description": "Archived product"},
    },
)
def update_product(shop: ShopDep, product_id: ProductPath, body: ProductUpdate) -> CatalogProduct:
    """Change any of a product's name, description and price."""
    return shop.update_product(product_id, body)


@router.delete(
    "/api/products/{product_id}",
    response_model=CatalogProduct,
    responses={
        **AUTH_RESPONSES,
        404: {"description": "Unknown product"},
        409: {"description": "Already archived"},
    },
)
def archive_product(shop: ShopDep, product_id: ProductPath) -> CatalogProduct:
    """Archive a product: it leaves listings, search and sale; past orders keep it."""
    return shop.archive_product(product_id)


@router.patch(
    "/api/inventory/{product_id}",
    response_model=CatalogProduct,
    responses={
        **AUTH_RESPONSES,
        404: {"description": "Unknown product"},
        409: {"description": "Archived product, or stock would leave 0..1,000,000,000"},
    },
)
def set_stock(shop: ShopDep, product_id: ProductPath, body: StockUpdate) -> CatalogProduct:
    """Set the stock (`{"quantity": n}`) or adjust it (`{"delta": n}`), atomically with
    purchases: it never goes below zero."""
    return shop.set_stock(product_id, body)


IMPORT_BODY = {
    "required": True,
    "content": {
        "text/csv": {"schema": {"type": "string", "description": f"header: {','.join(FIELDS)}"}},
        "application/json": {
            "schema": {
                "type": "array",
                "maxItems": MAX_IMPORT_ROWS,
                "items": {
                    "type": "object",
                    "required": ["sku", "name", "price"],
                    "properties": {f: {} for f in FIELDS},
                },
            }
        },
    },
}


@router.post(
    "/api/products/import",
    response_model=ImportReport,
    openapi_extra={"requestBody": IMPORT_BODY},
    responses={
        **AUTH_RESPONSES,
        413: {"description": f"Body over {MAX_IMPORT_BYTES} bytes"},
        415: {"description": "Not text/csv or application/json"},
        422: {"description": "Invalid rows (each with its row and field): nothing imported"},
    },
)
async def import_products(shop: ShopDep, request: Request) -> ImportReport:
    """Create or update products from a CSV or JSON catalogue, by SKU: every row is checked
    first and every error reported with its row and field; then all rows are written in one
    transaction, or none. Importing the same file again changes nothing."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("text/csv", "application/json"):
        raise HTTPException(415, "Send the catalogue as text/csv or application/json")
    data = await request.body()
    rows = await run_in_threadpool(parse, data, "csv" if kind == "text/csv" else "json")
    return await run_in_threadpool(shop.import_products, rows)
