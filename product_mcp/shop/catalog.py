"""Products, stock, search and recommendations: the read side of the catalogue.

Full-text search is per dialect with one meaning, any query term as a word prefix after
stemming: SQLite's FTS5 ranked by bm25, PostgreSQL's tsvectors (GIN index, in the narrow
`product_search` table) ranked by ts_rank, a portable LIKE ranking elsewhere. Names weigh ten
times descriptions in both rankers (bm25 saturates that); where their orders differ, and why,
is stated and tested in tests/api/test_search_dialects.py. The rest is portable SQL. Why the
`top` pre-ranking, on both databases: joining every match of a common word with products and
inventory before sorting costs more than ranking them first (see `_match`); PostgreSQL's
statements, and its shortcut for that pre-ranking (name matches first), are in pg_search.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Connection,
    Integer,
    String,
    Table,
    bindparam,
    case,
    false,
    func,
    literal_column,
    or_,
    select,
    text,
)

from models import InventoryItem, Product, Recommendation
from product_mcp.core.errors import NotFound
from product_mcp.shop import pg_search
from product_mcp.shop.database import Database
from product_mcp.shop.pg_search import TOP
from product_mcp.shop.schema import inventory, product_search, products
from product_mcp.shop.values import cents, product_of, search_terms

# What a listing or a recommendation reads: no SKU, no archived flag (both filtered already).
ROW_COLUMNS = (
    products.c.id,
    products.c.name,
    products.c.description,
    products.c.price_cents,
    inventory.c.quantity,
)
# Values reach the statements as these parameters, so one statement per shape (which filters,
# whether pre-ranked) serves every call: building a select and its cache key per call was a
# fifth of a search's CPU in api.py.
LIMIT = bindparam("limit", type_=Integer)
OFFSET = bindparam("offset", type_=Integer)
# The most best matches ranked first (a bound parameter: an int4 on PostgreSQL).
TOP_MAX = 1_000_000
MIN_CENTS = bindparam("min_cents", type_=Integer)
MAX_CENTS = bindparam("max_cents", type_=Integer)
_STATEMENTS: dict[tuple[Any, ...], Any] = {}
# Which price bounds a call gives: (minimum?, maximum?).
Prices = tuple[bool, bool]


class CatalogQueries(Database):
    """Listing, looking up, searching and recommending products."""

    def _read(self) -> Connection:
        """A connection for reads. On PostgreSQL each statement is its own transaction
        (autocommit): one round trip per query instead of BEGIN, query and ROLLBACK."""
        conn = self.engine.connect()
        if self.dialect == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn

    def _rows(
        self,
        conn: Connection,
        shape: tuple[Any, ...],
        build: Callable[[bool], Any],
        params: dict[str, Any],
    ) -> list[Any]:
        """Run the statement of this shape (its last item: pre-ranked or not), built once:
        SQLite and PostgreSQL match through a parameter; the LIKE fallback writes its terms
        into the statement, so it is built each time."""
        key = (self.dialect, *shape)
        stmt = _STATEMENTS.get(key)
        if stmt is None:
            stmt = build(shape[-1])
            if self.dialect in ("sqlite", "postgresql"):
                _STATEMENTS[key] = stmt
        return list(conn.execute(stmt, params))

    def _match_params(self, terms: list[str]) -> dict[str, Any]:
        """The match's parameters for `terms`: FTS5's query (q), or the tsquery's text and
        (PostgreSQL) the terms themselves, which the index is asked for (pg_search.py)."""
        if self.dialect == "sqlite":
            return {"q": " OR ".join('"' + t.replace('"', '""') + '"*' for t in terms)}
        return {"tsquery": " | ".join(f"'{t}':*" for t in terms), "terms": terms}

    def _match(self, terms: list[str], top: bool, prices: Prices) -> Any | None:
        """The products matching any term, as a subquery (id, rank; lower ranks first).

        With `top`, only the `top` best matches by (rank, id) leave it: joining every match of
        a common word with products and inventory before sorting costs more than ranking them
        first (14,000 matches of "wireless" in 100,000 products: on SQLite 27 ms vs 16 ms; on
        PostgreSQL a hash join of all of them with inventory, 33 ms vs 11 ms). The conditions
        on products alone (`_narrow`: archived, price) are applied before ranking on
        PostgreSQL, from `product_search`'s own copies, so fewer pages come back short; FTS5's
        table has no such columns. PostgreSQL ranks name matches first (pg_search.py).
        """
        if not terms:
            return None
        if self.dialect == "postgresql":
            if top:
                bounds = (MIN_CENTS if prices[0] else None, MAX_CENTS if prices[1] else None)
                return pg_search.ranked_hits(*bounds)
            return pg_search.all_hits(_narrow(product_search, prices))
        if self.dialect == "sqlite":
            rank = literal_column("bm25(products_fts, 10.0, 1.0)")
            rowid = literal_column("rowid")
            hits = (
                select(rowid.label("id"), rank.label("rank"))
                .select_from(text("products_fts"))
                .where(text("products_fts MATCH :q").bindparams(bindparam("q", type_=String)))
            )
            order = [rank, rowid]  # the expression: FTS5 has a hidden column named "rank"
        else:
            where, rank = _like_match(terms)
            ranked = rank.label("rank")
            hits = select(products.c.id.label("id"), ranked)
            hits = hits.where(where, *_narrow(products, prices))
            order = [ranked, products.c.id]
        if top:
            hits = hits.order_by(*order).limit(TOP)
        return hits.subquery("hits")

    def _product_query(
        self, terms: list[str], top: bool = False, prices: Prices = (False, False)
    ) -> tuple[Any, Any]:
        """(products with their stock, matching `terms`, best first; the rank column or None)."""
        base = (
            select(*ROW_COLUMNS)
            .join(inventory, inventory.c.product_id == products.c.id)
            .where(*_narrow(products, prices))
        )
        hits = self._match(terms, top, prices)
        if hits is None:
            return base.order_by(products.c.id), None
        base = base.join(hits, hits.c.id == products.c.id)
        return base.order_by(hits.c.rank, products.c.id), hits.c.rank

    def list_products(
        self,
        *,
        q: str | None = None,
        min_price: float | None = None,
        max_price: float | None = None,
        in_stock: bool | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Product]:
        terms = search_terms(q) if q else []
        if q and not terms:
            return []

        params: dict[str, Any] = {"limit": limit, "offset": offset, **self._match_params(terms)}
        if min_price is not None:
            params["min_cents"] = cents(min_price)
        if max_price is not None:
            params["max_cents"] = cents(max_price)
        prices = (min_price is not None, max_price is not None)

        def query(top: bool) -> Any:
            stmt, _ = self._product_query(terms, top, prices)
            if in_stock is True:
                stmt = stmt.where(inventory.c.quantity > 0)
            elif in_stock is False:
                stmt = stmt.where(inventory.c.quantity == 0)
            stmt = stmt.limit(None if limit is None else LIMIT)
            return stmt.offset(OFFSET) if offset else stmt

        # No OFFSET clause for a first page: with one, PostgreSQL's plan for any parameters
        # (psycopg prepares a statement after 5 runs) guessed it skips rows and cost more
        # than planning each call for its values, so every search was planned anew (~0.5 ms).
        shape = ("list", bool(terms), *prices, in_stock)
        shape += (limit is None, offset == 0)
        top = params["top"] = self._top(terms, limit, offset, in_stock)
        with self._read() as conn:
            rows = self._rows(conn, (*shape, top is not None), query, params)
            if top is not None and len(rows) < (limit or 0):
                rows = self._rows(conn, (*shape, False), query, params)  # too few: rank all
        return [product_of(r) for r in rows]

    def _recommended(
        self, conn: Connection, terms: list[str], budget: float | None, limit: int
    ) -> list[Any]:
        """Rows for `recommend`: the best in-stock matches within budget, else (nothing
        matched) what is in stock, most plentiful first; each with its score."""
        prices = (False, budget is not None)
        params = {"limit": limit, **self._match_params(terms)}
        if budget is not None:
            params["max_cents"] = cents(budget)

        def query(top: bool) -> Any:
            stmt, rank = self._product_query(terms, top, prices)
            stmt = stmt.where(inventory.c.quantity > 0)
            score = (rank if rank is not None else literal_column("0")).label("score")
            return stmt.add_columns(score).limit(LIMIT)

        def fallback(_top: bool) -> Any:
            stmt, _ = self._product_query([], False, prices)
            stmt = stmt.where(inventory.c.quantity > 0).order_by(None)
            stmt = stmt.order_by(inventory.c.quantity.desc(), products.c.id)
            return stmt.add_columns(literal_column("0").label("score")).limit(LIMIT)

        shape = ("recommend", bool(terms), budget is not None)
        top = params["top"] = self._top(terms, limit, 0, True)  # in stock only
        rows = self._rows(conn, (*shape, top is not None), query, params)
        if top is not None and len(rows) < limit:
            rows = self._rows(conn, (*shape, False), query, params)
        if not rows:
            rows = self._rows(conn, ("fallback", *shape[2:]), fallback, params)
        return rows

    def _top(
        self, terms: list[str], limit: int | None, offset: int, in_stock: bool | None = None
    ) -> int | None:
        """How many best text matches to rank before filters, or None for all of them.

        Exact: if the page comes back full, every row of it is among the first `top` by
        (rank, id), so ranking the rest could not change it; a short page is retried on all.
        On PostgreSQL only the stock filter (`in_stock`) comes after the ranking, so without
        it the page itself is enough; with it, a margin for the products it drops: twice the
        page and 10 when in stock is asked (most are), else at least 200. Fewer makes the
        shortcut (pg_search.py) stop sooner: the last of the page scores higher. FTS5's
        ranking knows no archived flag or price either: at least 200 there.
        """
        if not terms or limit is None:
            return None
        page = limit + offset
        if self.dialect != "postgresql" or in_stock is False:
            top = max(200, 8 * page)
        else:
            top = page if in_stock is None else 2 * page + 10
        return top if top <= TOP_MAX else None  # a page that deep: rank them all

    def get_product(self, product_id: int) -> tuple[Product, int]:
        stmt = (
            select(products, inventory.c.quantity)
            .join(inventory, inventory.c.product_id == products.c.id)
            .where(products.c.id == product_id)
        )
        with self._read() as conn:
            row = conn.execute(stmt).first()
        if row is None:
            raise NotFound(f"Product ID {product_id} does not exist")
        if row.archived:
            raise NotFound(f"Product ID {product_id} was archived: it is no longer sold")
        return product_of(row), row.quantity

    def list_inventory(self, *, limit: int | None = None, offset: int = 0) -> list[InventoryItem]:
        stmt = (
            select(products, inventory.c.quantity)
            .join(inventory, inventory.c.product_id == products.c.id)
            .where(products.c.archived == false())
            .order_by(products.c.id)
            .limit(limit)
            .offset(offset)
        )
        with self._read() as conn:
            return [
                InventoryItem(productId=r.id, quantity=r.quantity, product=product_of(r))
                for r in conn.execute(stmt)
            ]

    def recommend(
        self, preferences: str, *, budget: float | None = None, limit: int = 5
    ) -> list[Recommendation]:
        """In-stock products within budget, best preference match first, each with its reason."""
        terms = search_terms(preferences, drop_stopwords=True)

        with self._read() as conn:
            rows = self._recommended(conn, terms, budget, limit)
        within = f" and within the budget of {budget:g}" if budget is not None else ""
        out = []
        for r in rows:
            hay = f"{r.name} {r.description}".lower()
            matched = [t for t in terms if re.search(rf"\b{re.escape(t)}", hay)]
            out.append(
                Recommendation(
                    product=product_of(r),
                    stock=r.quantity,
                    score=round(-float(r.score), 4) + 0.0,  # never -0.0
                    matchedTerms=matched,
                    reason=(f"Matches {', '.join(matched)}; " if matched else "No close match; ")
                    + f"{r.quantity} in stock{within}.",
                )
            )
        return out


def _narrow(table: Table, prices: Prices) -> list[Any]:
    """The conditions on a product alone, on `table`'s columns (products, or product_search's
    copies): not archived, and the price bounds that `prices` (min?, max?) says are given."""
    out = [table.c.archived == false()]
    if prices[0]:
        out.append(table.c.price_cents >= MIN_CENTS)
    if prices[1]:
        out.append(table.c.price_cents <= MAX_CENTS)
    return out


def _like_match(terms: list[str]) -> tuple[Any, Any]:
    """Any other dialect: (match, rank) by substring, names counting three times descriptions."""
    hay = func.lower(products.c.name + " " + products.c.description)
    hits = [case((hay.contains(t, autoescape=True), 1), else_=0) for t in terms]
    name = func.lower(products.c.name)
    name_hits = [case((name.contains(t, autoescape=True), 2), else_=0) for t in terms]
    rank = -sum(hits + name_hits, start=literal_column("0"))
    return or_(*[hay.contains(t, autoescape=True) for t in terms]), rank
