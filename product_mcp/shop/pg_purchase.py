"""A PostgreSQL purchase in one statement, committed in the same round trip.

Why: with the statements of orders.py (key lock, key lookup, products, stock, order, lines,
key, outbox lock, outbox, COMMIT) a purchase held its stock row's lock for seven round trips,
each waiting for this process's GIL between them; 32 clients buying one product queued on that
row. Here the whole purchase is one data-modifying statement run in autocommit: PostgreSQL
takes the row lock, writes everything and commits (the WAL flush) without waiting for the
client in between, and the client parses, plans and sends one statement, not ten.

It writes only a clean purchase, all or nothing, and answers a plain refusal for want of stock;
anything else (a product missing or archived, an Idempotency-Key used already) writes nothing,
and the caller runs the original transaction, which decides and words the answer:
- the stock is still taken by a conditional UPDATE, after every item's row is locked in product
  id order (as orders.py does, so two purchases of the same products cannot deadlock) and
  found to hold enough: with the rows locked, the UPDATE takes every item or none. Should it
  take only some all the same, the order's total is NULL and its NOT NULL constraint aborts
  the statement, undoing all of it;
- a refusal names the first item short of stock in product id order, with what its row holds
  under the lock (the original transaction's message);
- the Idempotency-Key: a key already committed is seen before any stock is taken; one being
  written by a running purchase makes this INSERT wait for it at the unique index and then fail
  (IntegrityError, the statement undone), and the caller replays the first order as before;
  one committed while this statement waited for the stock row is not seen by it (its snapshot
  is older), so a refusal with a key looks the key up before answering (orders.py);
- the change feed's rows come last, after the outbox's shared lock (changes.py), which is
  taken once the stock rows and the key's index entry are held: a feed reader waiting for
  appenders does not wait behind one waiting for those. What can still wait after it is the
  foreign keys' KEY SHARE lock on a product, checked at the statement's end, for a staff edit
  holding that product FOR UPDATE; such an edit holds it while waiting for the stock row this
  purchase has (it locks both at once), so it is not appending: PostgreSQL breaks that cycle as
  it did for the old transaction. Taking those KEY SHARE locks first instead made every
  waiting buyer of one product share the product's row lock (a MultiXact rewritten per
  buyer): 310 instead of 430 purchases/s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, text

from models import OrderItem
from product_mcp.shop.changes import OUTBOX_LOCK

# Order of work: the main SELECT reads `ord`, which needs every row of `take` (its count), which
# waits for `locked` and `short`: all stock is taken and the order written before PostgreSQL
# runs the other CTEs to their end, the last one first (feed); feed's lock waits for `k` to be
# written (its count), so that lock is the last one taken.
PURCHASE = text(
    """
WITH v AS (
    SELECT * FROM unnest(CAST(:pids AS int[]), CAST(:qtys AS int[]))
        WITH ORDINALITY AS v(pid, qty, n)
), p AS (
    SELECT id, name, price_cents FROM products
    WHERE id = ANY(CAST(:pids AS int[])) AND NOT archived
), go AS (
    SELECT (SELECT count(*) FROM p) = cardinality(CAST(:pids AS int[]))
        AND NOT EXISTS (
            SELECT 1 FROM idempotency_keys WHERE key = CAST(:key AS varchar)
        ) AS ok
), locked AS (
    SELECT product_id, quantity FROM inventory
    WHERE product_id = ANY(CAST(:pids AS int[])) AND (SELECT ok FROM go)
    ORDER BY product_id
    FOR UPDATE
), short AS (
    SELECT l.product_id, p.name, l.quantity
    FROM locked l JOIN v ON v.pid = l.product_id JOIN p ON p.id = l.product_id
    WHERE l.quantity < v.qty
    ORDER BY l.product_id
    LIMIT 1
), take AS (
    UPDATE inventory i SET quantity = i.quantity - v.qty
    FROM v
    WHERE i.product_id = v.pid AND i.quantity >= v.qty
        AND (SELECT count(*) FROM locked) = cardinality(CAST(:pids AS int[]))
        AND NOT EXISTS (SELECT 1 FROM short)
    RETURNING i.product_id, i.quantity
), ord AS (
    INSERT INTO orders (customer_name, customer_key, total_cents, created_at)
    SELECT CAST(:name AS varchar), CAST(:ckey AS varchar),
        CASE WHEN (SELECT count(*) FROM take) = cardinality(CAST(:pids AS int[]))
            THEN (SELECT sum(CAST(p.price_cents AS bigint) * v.qty) FROM p JOIN v ON v.pid = p.id)
        END,
        CAST(:now AS timestamp)
    WHERE (SELECT count(*) FROM take) > 0
    RETURNING id, total_cents
), lines AS (
    INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents, line)
    SELECT ord.id, v.pid, v.qty, p.price_cents, v.n - 1
    FROM ord, v JOIN p ON p.id = v.pid
), k AS (
    INSERT INTO idempotency_keys (key, request_hash, order_id)
    SELECT CAST(:key AS varchar), CAST(:hash AS varchar), ord.id
    FROM ord WHERE CAST(:key AS varchar) IS NOT NULL
    RETURNING order_id
), feed AS (
    INSERT INTO product_changes (product_id, kind, quantity, at)
    SELECT t.product_id, 'purchased', t.quantity, CAST(:now AS timestamp)
    FROM ord
        CROSS JOIN LATERAL (
            SELECT pg_advisory_xact_lock_shared(:outbox + 0 * ord.id + 0 * (SELECT count(*) FROM k))
        ) l
        CROSS JOIN take t
    ORDER BY t.product_id
)
SELECT ord.id, ord.total_cents, short.product_id AS short_id, short.name AS short_name,
    short.quantity AS available,
    (SELECT json_object_agg(p.id, p.name) FROM p) AS names
FROM go
    LEFT JOIN ord ON true
    LEFT JOIN short ON true
"""
)


@dataclass(frozen=True)
class Outcome:
    """What the statement did: an order, or refused for want of stock (nothing written), or
    neither (nothing written: the caller's transaction decides)."""

    order_id: int | None = None
    total_cents: int = 0
    short_name: str | None = None  # the first item short of stock, in product id order
    available: int = 0  # its units in stock, read under its row lock
    names: dict[int, str] = field(default_factory=dict)  # the products' names, for the answer


def buy(
    conn: Connection,
    name: str,
    customer_key: str,
    items: list[OrderItem],
    key: str | None,
    digest: str,
    now: datetime,
) -> Outcome:
    """Run the purchase; `conn` must be in autocommit (the statement is its own transaction).
    Raises IntegrityError when a racing request's key undid the statement."""
    row = conn.execute(
        PURCHASE,
        {
            "pids": [i.productId for i in items],
            "qtys": [i.quantity for i in items],
            "key": key,
            "hash": digest,
            "name": name,
            "ckey": customer_key,
            "now": now,
            "outbox": OUTBOX_LOCK,
        },
    ).one()
    names = {int(k): v for k, v in (row.names or {}).items()}
    return Outcome(row.id, row.total_cents or 0, row.short_name, row.available or 0, names)
