"""The shop's database layer: schema, seed data and every query, on SQLAlchemy Core.

Money is stored as integer cents so totals add up exactly; the JSON API converts to the seed's
float prices at the edge. Stock changes only through a conditional UPDATE, so no interleaving
of requests, threads or processes can take it below zero. Core paths use portable SQL; only the
full-text index is per dialect (SQLite FTS5, with a portable LIKE fallback elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    create_engine,
    event,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from models import (
    InventoryItem,
    Order,
    OrderItem,
    Product,
    PurchaseRequest,
    Recommendation,
    SalesGroup,
    SalesReport,
    SalesTotals,
)

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("price_cents", Integer, CheckConstraint("price_cents >= 0"), nullable=False),
)
inventory = Table(
    "inventory",
    metadata,
    Column("product_id", Integer, ForeignKey("products.id"), primary_key=True),
    Column("quantity", Integer, CheckConstraint("quantity >= 0"), nullable=False),
)
orders = Table(
    "orders",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("customer_name", String(200), nullable=False, index=True),
    Column("total_cents", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False, index=True),
)
order_items = Table(
    "order_items",
    metadata,
    Column("order_id", Integer, ForeignKey("orders.id"), primary_key=True),
    Column("product_id", Integer, ForeignKey("products.id"), primary_key=True, index=True),
    Column("quantity", Integer, CheckConstraint("quantity > 0"), nullable=False),
    Column("unit_price_cents", Integer, nullable=False),
    Column("line", Integer, nullable=False),
)
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(255), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("order_id", Integer, ForeignKey("orders.id"), nullable=False),
)

SEED: list[tuple[int, str, int, str, int]] = [
    (1, "Galaxy Smart Watch", 129900,
     "Health monitoring, activity tracking, supports multiple apps", 100),
    (2, "Pro Wireless Bluetooth Earbuds", 89900,
     "Active noise cancellation, 30-hour battery life, IPX7 waterproof", 50),
    (3, "Portable Power Bank", 29900,
     "20000mAh capacity, fast charging, lightweight design", 200),
    (4, "Huawei MateBook X Pro", 159900,
     "14.2-inch full-screen display, 3:2 aspect ratio, 100% sRGB color gamut", 150),
]  # fmt: skip

STOPWORDS = frozenset(
    "a an and any are as at be but by for from i im in is it me my of on or some something "
    "that the this to want need with looking like would good best".split()
)


class ShopError(Exception):
    """A request the shop refuses; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def make_engine(url: str, *, sqlite_synchronous: str = "FULL") -> Engine:
    """An engine with SQLite made safe for many threads and processes (WAL, busy wait)."""
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    engine = create_engine(
        url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=16
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide where transactions begin (so BEGIN IMMEDIATE works).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA synchronous={sqlite_synchronous}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the lock up front: no deadlocked read→write upgrades between processes.
        conn.exec_driver_sql(
            "BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN"
        )

    return engine


def _cents(amount: float) -> int:
    return round(amount * 100)


def _money(cents: int) -> float:
    return cents / 100


def _iso(dt: datetime) -> str:
    return dt.replace(tzinfo=UTC).isoformat()


def _terms(textval: str, *, drop_stopwords: bool = False) -> list[str]:
    words = [w.lower() for w in re.findall(r"\w+", textval)]
    if drop_stopwords:
        words = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(words))[:20]


def _product(row: Any) -> Product:
    return Product(
        id=row.id, name=row.name, price=_money(row.price_cents), description=row.description
    )


def to_utc_naive(value: datetime | date, *, end_of_day: bool = False) -> datetime:
    """Normalise a filter bound; a bare date as `until` means through the end of that day."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
        if end_of_day:
            value += timedelta(days=1)
    elif value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


@dataclass
class Shop:
    """All reads and writes the API needs, each in its own short transaction."""

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

    # ---- schema -------------------------------------------------------------------------

    def init(self) -> None:
        """Create tables, search index and seed data once; safe when several workers race."""
        for attempt in range(5):
            try:
                with self._write() as conn:
                    metadata.create_all(conn)
                    if self.dialect == "sqlite":
                        self._init_sqlite_fts(conn)
                    if conn.scalar(select(func.count()).select_from(products)) == 0:
                        self._seed(conn)
                return
            except (OperationalError, IntegrityError):
                if attempt == 4:
                    raise

    @staticmethod
    def _init_sqlite_fts(conn: Connection) -> None:
        conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5("
            "name, description, content='products', content_rowid='id', "
            "tokenize='porter unicode61')"
        )
        for name, body in {
            "products_ai": "AFTER INSERT ON products BEGIN INSERT INTO products_fts"
            "(rowid, name, description) VALUES (new.id, new.name, new.description); END",
            "products_ad": "AFTER DELETE ON products BEGIN INSERT INTO products_fts"
            "(products_fts, rowid, name, description) VALUES "
            "('delete', old.id, old.name, old.description); END",
            "products_au": "AFTER UPDATE ON products BEGIN INSERT INTO products_fts"
            "(products_fts, rowid, name, description) VALUES "
            "('delete', old.id, old.name, old.description); INSERT INTO products_fts"
            "(rowid, name, description) VALUES (new.id, new.name, new.description); END",
        }.items():
            conn.exec_driver_sql(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")

    @staticmethod
    def _seed(conn: Connection) -> None:
        conn.execute(
            insert(products),
            [{"id": i, "name": n, "price_cents": p, "description": d} for i, n, p, d, _ in SEED],
        )
        conn.execute(insert(inventory), [{"product_id": i, "quantity": q} for i, *_, q in SEED])

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

    # ---- products -----------------------------------------------------------------------

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
        hay = func.lower(products.c.name + " " + products.c.description)
        hits = [case((hay.contains(t, autoescape=True), 1), else_=0) for t in terms]
        name = func.lower(products.c.name)
        name_hits = [case((name.contains(t, autoescape=True), 2), else_=0) for t in terms]
        rank = -sum(hits + name_hits, start=literal_column("0"))
        return or_(*[hay.contains(t, autoescape=True) for t in terms]), rank

    def _product_query(self, terms: list[str], top: int | None = None) -> Any:
        cols = [products, inventory.c.quantity]
        base = select(*cols).join(inventory, inventory.c.product_id == products.c.id)
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
        terms = _terms(q) if q else []
        if q and not terms:
            return []

        def query(top: int | None) -> Any:
            stmt, _ = self._product_query(terms, top)
            if min_price is not None:
                stmt = stmt.where(products.c.price_cents >= _cents(min_price))
            if max_price is not None:
                stmt = stmt.where(products.c.price_cents <= _cents(max_price))
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
        return [_product(r) for r in rows]

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
            raise ShopError(404, f"Product ID {product_id} does not exist")
        return _product(row), row.quantity

    def list_inventory(self, *, limit: int | None = None, offset: int = 0) -> list[InventoryItem]:
        stmt = (
            select(products, inventory.c.quantity)
            .join(inventory, inventory.c.product_id == products.c.id)
            .order_by(products.c.id)
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as conn:
            return [
                InventoryItem(productId=r.id, quantity=r.quantity, product=_product(r))
                for r in conn.execute(stmt)
            ]

    def recommend(
        self, preferences: str, *, budget: float | None = None, limit: int = 5
    ) -> list[Recommendation]:
        """In-stock products within budget, best preference match first, each with its reason."""
        terms = _terms(preferences, drop_stopwords=True)

        def query(top: int | None) -> Any:
            stmt, rank = self._product_query(terms, top)
            stmt = stmt.where(inventory.c.quantity > 0)
            if budget is not None:
                stmt = stmt.where(products.c.price_cents <= _cents(budget))
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
                    fallback = fallback.where(products.c.price_cents <= _cents(budget))
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
                    product=_product(r),
                    stock=r.quantity,
                    score=round(-float(r.score), 4) + 0.0,  # never -0.0
                    matchedTerms=matched,
                    reason=(f"Matches {', '.join(matched)}; " if matched else "No close match; ")
                    + f"{r.quantity} in stock{within}.",
                )
            )
        return out

    # ---- orders -------------------------------------------------------------------------

    @staticmethod
    def _request_hash(name: str, items: list[OrderItem]) -> str:
        body = {"customerName": name, "items": sorted((i.productId, i.quantity) for i in items)}
        return hashlib.sha256(json.dumps(body).encode()).hexdigest()

    def purchase(self, req: PurchaseRequest, idempotency_key: str | None = None) -> Order:
        """Check and take stock for every item, then write the order: all of it or nothing."""
        name = req.customerName
        items = req.merged_items()
        if not name or not items:
            raise ShopError(400, "Invalid request: Missing customer name or items")
        digest = self._request_hash(name, items)
        if idempotency_key is not None and self.dialect != "sqlite":
            # On SQLite the write transaction looks the key up itself, under the write lock:
            # a separate read first would only cost a connection and a query per purchase.
            previous = self._replay(idempotency_key, digest)
            if previous is not None:
                return previous
        try:
            return self._purchase(name, items, idempotency_key, digest)
        except IntegrityError:
            # Another request with the same key committed first (possible on PostgreSQL).
            if idempotency_key is None:
                raise
            previous = self._replay(idempotency_key, digest)
            if previous is None:
                raise
            return previous

    def _replay(self, key: str, digest: str) -> Order | None:
        with self.engine.connect() as conn:
            return self._replay_in(conn, key, digest)

    def _replay_in(self, conn: Connection, key: str, digest: str) -> Order | None:
        """The order a key already made (None if unused); 409 if it came with another body."""
        row = conn.execute(select(idempotency_keys).where(idempotency_keys.c.key == key)).first()
        if row is None:
            return None
        if row.request_hash != digest:
            raise ShopError(409, "Idempotency-Key was already used with a different request")
        return self._orders(conn, select(orders).where(orders.c.id == row.order_id))[0]

    def _purchase(self, name: str, items: list[OrderItem], key: str | None, digest: str) -> Order:
        ids = [i.productId for i in items]
        with self._write() as conn:
            if key is not None:  # on SQLite, under the write lock: the winner has committed
                previous = self._replay_in(conn, key, digest)
                if previous is not None:
                    return previous
            found = {r.id: r for r in conn.execute(select(products).where(products.c.id.in_(ids)))}
            total = 0
            for item in items:
                product = found.get(item.productId)
                if product is None:
                    raise ShopError(404, f"Product ID {item.productId} does not exist")
                taken = conn.execute(
                    update(inventory)
                    .where(
                        and_(
                            inventory.c.product_id == item.productId,
                            inventory.c.quantity >= item.quantity,
                        )
                    )
                    .values(quantity=inventory.c.quantity - item.quantity)
                ).rowcount
                if taken != 1:
                    available = conn.scalar(
                        select(inventory.c.quantity).where(inventory.c.product_id == item.productId)
                    )
                    raise ShopError(
                        400, f"Insufficient stock for {product.name}. Available: {available or 0}"
                    )
                total += product.price_cents * item.quantity
            now = datetime.now(UTC).replace(tzinfo=None)
            order_id = conn.execute(
                insert(orders)
                .values(customer_name=name, total_cents=total, created_at=now)
                .returning(orders.c.id)
            ).scalar_one()
            conn.execute(
                insert(order_items),
                [
                    {
                        "order_id": order_id,
                        "product_id": i.productId,
                        "quantity": i.quantity,
                        "unit_price_cents": found[i.productId].price_cents,
                        "line": n,
                    }
                    for n, i in enumerate(items)
                ],
            )
            if key is not None:
                conn.execute(
                    insert(idempotency_keys).values(key=key, request_hash=digest, order_id=order_id)
                )
        return Order(
            id=order_id,
            customerName=name,
            items=[
                OrderItem.model_construct(productId=i.productId, quantity=i.quantity) for i in items
            ],
            totalAmount=_money(total),
            orderDate=_iso(now),
        )

    @staticmethod
    def _orders(conn: Connection, stmt: Any) -> list[Order]:
        rows = list(conn.execute(stmt))
        if not rows:
            return []
        items: dict[int, list[OrderItem]] = {r.id: [] for r in rows}
        for it in conn.execute(
            select(order_items)
            .where(order_items.c.order_id.in_(list(items)))
            .order_by(order_items.c.order_id, order_items.c.line)
        ):
            items[it.order_id].append(
                OrderItem.model_construct(productId=it.product_id, quantity=it.quantity)
            )
        return [
            Order(
                id=r.id,
                customerName=r.customer_name,
                items=items[r.id],
                totalAmount=_money(r.total_cents),
                orderDate=_iso(r.created_at),
            )
            for r in rows
        ]

    def list_orders(
        self,
        *,
        customer: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Order]:
        stmt = select(orders).order_by(orders.c.created_at.desc(), orders.c.id.desc())
        if customer:
            stmt = stmt.where(func.lower(orders.c.customer_name) == customer.strip().lower())
        stmt = self._window(stmt, since, until).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return self._orders(conn, stmt)

    @staticmethod
    def _window(stmt: Any, since: datetime | None, until: datetime | None) -> Any:
        if since is not None:
            stmt = stmt.where(orders.c.created_at >= since)
        if until is not None:
            stmt = stmt.where(orders.c.created_at < until)
        return stmt

    def sales(
        self,
        group_by: Literal["product", "customer", "day"],
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        top: int | None = None,
    ) -> SalesReport:
        """Units, revenue and order count per group, biggest revenue first, plus totals."""
        line = order_items.c.quantity * order_items.c.unit_price_cents
        if group_by == "product":
            key, label = order_items.c.product_id, products.c.name
        elif group_by == "customer":
            key = label = orders.c.customer_name
        else:
            key = label = func.date(orders.c.created_at)  # SQLite and PostgreSQL alike
        units = func.sum(order_items.c.quantity)
        revenue = func.sum(line)
        count = func.count(func.distinct(orders.c.id))
        joined = orders.join(order_items, order_items.c.order_id == orders.c.id).join(
            products, products.c.id == order_items.c.product_id
        )
        stmt = (
            select(key.label("key"), label.label("label"), units, revenue, count)
            .select_from(joined)
            .group_by(key, label)
            .order_by(revenue.desc(), key)
            .limit(top)
        )
        totals = select(units, revenue, count).select_from(joined)
        stmt, totals = self._window(stmt, since, until), self._window(totals, since, until)
        with self.engine.connect() as conn:
            groups = [
                SalesGroup(key=str(k), label=str(lbl), units=u, revenue=_money(rv), orders=n)
                for k, lbl, u, rv, n in conn.execute(stmt)
            ]
            tu, tr, tn = conn.execute(totals).one()
        return SalesReport(
            groupBy=group_by,
            since=_iso(since) if since else None,
            until=_iso(until) if until else None,
            groups=groups,
            totals=SalesTotals(units=tu or 0, revenue=_money(tr or 0), orders=tn or 0),
        )
