"""The shop wing: the product/order service's database, queries and rules (used by api.py).

`Shop` is every query the API needs, composed from one module per concern.
"""

from __future__ import annotations

from product_mcp.shop.analytics import SalesQueries
from product_mcp.shop.catalog import CatalogQueries
from product_mcp.shop.manage import StaffQueries
from product_mcp.shop.orders import OrderQueries
from product_mcp.shop.quotes import QuoteQueries
from product_mcp.shop.schema import make_engine
from product_mcp.shop.values import to_utc_naive


class Shop(CatalogQueries, OrderQueries, QuoteQueries, SalesQueries, StaffQueries):
    """All reads and writes the API needs, each in its own short transaction."""


__all__ = ["Shop", "make_engine", "to_utc_naive"]
