"""Products, stock, search and recommendations: the read side of the catalogue.

Full-text search is per dialect with one meaning, any query term as a word prefix after
stemming: SQLite's FTS5 ranked by bm25, PostgreSQL's tsvector column (GIN index) ranked by
ts_rank, a portable LIKE ranking elsewhere. Names weigh ten times descriptions in both
rankers (bm25 saturates that); where their orders differ, and why, is stated and tested in
tests/api/test_search_dialects.py. The rest is portable SQL. Why the `top` pre-ranking:
joining every match of a common word with products and inventory before sorting costs more
than ranking them first (see `_match`).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import bindparam, case, false, func, literal_column, or_, select, text

from models import InventoryItem, Product, Recommendation
from product_mcp.core.errors import NotFound
from product_mcp.shop.database import Database
from product_mcp.shop.schema import SEARCH_COLUMN, SEARCH_CONFIG, inventory, products
from product_mcp.shop.values import cents, product_of, search_terms


class CatalogQueries(Database):
    """Listing, looking up, searching and recommending products."""

    def _match(self, terms: list[str], top: int | None = None) -> tuple[Any, Any] | None:
        """(where-clause, rank-expression; lower ranks first) for a full-text match of any term.

        With `top` (SQLite), only the `top` best matches by (rank, id) leave the index: joining
        every match of a common word with products and inventory before sorting costs more
        than ranking them (14,000 matches of "wireless" in 100,000 products: 27 ms vs 16 ms).
        """
        if not terms:
            return None
        if self.dialect == "sqlite":
            query = " OR ".join('"' + t.replace('"', '""') + '"*' for t in terms)
            bm25 = literal_column("bm25(products_fts, 10.0, 1.0)")
            fts = (
                select(literal_column("rowid").label("id"), bm25.label("rank"))
                .select_from(text("products_fts"))
                .where(text("products_fts MATCH :q").bindparams(q=query))
            )
            if top is not None:
                fts = fts.order_by(bm25, literal_column("rowid")).limit(top)
            fts = fts.subquery()
            return fts, fts.c.rank
        if self.dialect == "postgresql":
            return _tsquery_match(terms)
        hay = func.lower(products.c.name + " " + products.c.description)
        hits = [case((hay.contains(t, autoescape=True), 1), else_=0) for t in terms]
        name = func.lower(products.c.name)
        name_hits = [case((name.contains(t, autoescape=True), 2), else_=0) for t in terms]
        rank = -sum(hits + name_hits, start=literal_column("0"))
        return or_(*[hay.contains(t, autoescape=True) for t in terms]), rank

    def _product_query(self, terms: list[str], top: int | None = None) -> Any:
        cols = [products, inventory.c.quantity]
        base = (
            select(*cols)
            .join(inventory, inventory.c.product_id == products.c.id)
            .where(products.c.archived == false())
        )
        match = self._match(terms, top)
        if match is None:
            return base.order_by(products.c.id), None
        where, rank = match
        if self.dialect == "sqlite":
            base = base.join(where, where.c.id == products.c.id)
        else:
            base = base.where(where)
        return base.order_by(rank, products.c.id), rank

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

        def query(top: int | None) -> Any:
            stmt, _ = self._product_query(terms, top)
            if min_price is not None:
                stmt = stmt.where(products.c.price_cents >= cents(min_price))
            if max_price is not None:
                stmt = stmt.where(products.c.price_cents <= cents(max_price))
            if in_stock is True:
                stmt = stmt.where(inventory.c.quantity > 0)
            elif in_stock is False:
                stmt = stmt.where(inventory.c.quantity == 0)
            return stmt.limit(limit).offset(offset)

        top = self._top(terms, limit, offset)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query(top)))
            if top is not None and len(rows) < (limit or 0):
                rows = list(conn.execute(query(None)))  # filters left too few: rank them all
        return [product_of(r) for r in rows]

    def _top(self, terms: list[str], limit: int | None, offset: int) -> int | None:
        """How many best text matches to rank before filters, or None for all of them.

        Exact: if the page comes back full, every row of it is among the first `top` by
        (rank, id), so ranking the rest could not change it; a short page is retried on all.
        """
        if not terms or limit is None or self.dialect != "sqlite":
            return None
        return max(200, 8 * (limit + offset))

    def get_product(self, product_id: int) -> tuple[Product, int]:
        stmt = (
            select(products, inventory.c.quantity)
            .join(inventory, inventory.c.product_id == products.c.id)
            .where(products.c.id == product_id)
        )
        with self.engine.connect() as conn:
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
        with self.engine.connect() as conn:
            return [
                InventoryItem(productId=r.id, quantity=r.quantity, product=product_of(r))
                for r in conn.execute(stmt)
            ]

    def recommend(
        self, preferences: str, *, budget: float | None = None, limit: int = 5
    ) -> list[Recommendation]:
        """In-stock products within budget, best preference match first, each with its reason."""
        terms = search_terms(preferences, drop_stopwords=True)

        def query(top: int | None) -> Any:
            stmt, rank = self._product_query(terms, top)
            stmt = stmt.where(inventory.c.quantity > 0)
            if budget is not None:
                stmt = stmt.where(products.c.price_cents <= cents(budget))
            score = (rank if rank is not None else literal_column("0")).label("score")
            return stmt.add_columns(score).limit(limit)

        top = self._top(terms, limit, 0)
        with self.engine.connect() as conn:
            rows = list(conn.execute(query(top)))
            if top is not None and len(rows) < limit:
                rows = list(conn.execute(query(None)))
            if not rows:  # nothing matched: still offer what is in stock, most plentiful first
                fallback, _ = self._product_query([])
                fallback = fallback.where(inventory.c.quantity > 0)
                if budget is not None:
                    fallback = fallback.where(products.c.price_cents <= cents(budget))
                fallback = fallback.order_by(None).order_by(
                    inventory.c.quantity.desc(), products.c.id
                )
                rows = list(
                    conn.execute(
                        fallback.add_columns(literal_column("0").label("score")).limit(limit)
                    )
                )
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


def _tsquery_match(terms: list[str]) -> tuple[Any, Any]:
    """PostgreSQL: (match, rank) over the GIN-indexed tsvector column, FTS5's meaning.

    Each term becomes a quoted prefix ('term':*) normalised by the same configuration as the
    column, ORed, as the SQLite query is; `search_terms` keeps only word characters, so no
    term can carry tsquery syntax. ts_rank weights names (A) 1.0 and descriptions (B) 0.1
    (bm25's 10 to 1) and divides by 1 + log(words in the product), as bm25 favours shorter
    products; ts_rank has no term rarity (IDF) and counts repeats differently (see the test).
    """
    query = " | ".join(f"'{t}':*" for t in terms)
    tsquery = func.to_tsquery(
        literal_column(f"'{SEARCH_CONFIG}'::regconfig"), bindparam("tsquery", query)
    )
    vector = literal_column(f"products.{SEARCH_COLUMN}")
    weights = literal_column("'{0, 0, 0.1, 1.0}'::float4[]")
    return vector.op("@@")(tsquery), -func.ts_rank(weights, vector, tsquery, 1)
