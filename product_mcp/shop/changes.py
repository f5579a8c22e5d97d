"""The change feed's outbox: appended in the writer's transaction, read back in seq order.

Why an outbox and not a message bus: the event and the change it describes commit together or
not at all, so a consumer that reads the table after its last seq gets exactly what it missed,
in order, from any number of API workers.

A reader must never pass a seq whose writer has not finished: if seq 12 commits before seq 11,
a consumer that read 12 and moved its bookmark to it would never see 11. SQLite has one writer
at a time, so seqs commit in order. On PostgreSQL writers run in parallel and the order is
kept on the reading side (`settle`):
- every appender takes the outbox lock in SHARED mode before it draws a seq, held to its
  commit: appenders never wait for one another (an exclusive lock here, or a NOTIFY in the
  transaction, which PostgreSQL serialises to commit order, held every purchase's commit and
  fsync one at a time: 116 purchases/s with 1 or 4 workers);
- a reader first takes it in EXCLUSIVE mode: that waits until every appender that has drawn a
  seq has committed or rolled back, and holds new ones off for the read (a statement or two),
  so what the read sees is a complete prefix: no seq below the newest one it returns can
  commit later.
Why not the writer's xid against `pg_snapshot_xmin(pg_current_snapshot())`: a transaction's
xid is assigned at its first write (the stock UPDATE), its seq at its last (this append), so
xid order is not seq order. T1 (xid 100) draws seq 11, T2 (xid 99) draws 12 and commits; with
T1 running, xmin is 100 > 99 and seq 12 would be returned before 11 commits. That rule is
sound only with the pair (xid, seq) as the consumer's bookmark, and ours is one seq.
Readers are few (one watcher per API process reads for all its streams, feed.py; JSON pages).

Old events are pruned after a retention window; `change_feed.pruned_through` remembers how far,
so a consumer that asks from before it is told to resync instead of silently missing events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, delete, func, insert, select, text, update

from models import Change
from product_mcp.shop.schema import change_feed, product_changes
from product_mcp.shop.values import iso, money

OUTBOX_LOCK = 0x5E0B_C4A9_0E5E  # PostgreSQL advisory lock: appenders shared, readers exclusive
APPENDING = text("SELECT pg_advisory_xact_lock_shared(:k)")
SETTLING = text("SELECT pg_advisory_xact_lock(:k)")
APPEND = insert(product_changes)  # built once (see orders.py)
CHANGED = "shop_changed"  # conn.info flag: this transaction appended (Database._write wakes)


@dataclass(frozen=True)
class Event:
    """A change to append: the product, what happened, and its state afterwards."""

    product_id: int
    kind: str
    quantity: int | None = None
    price_cents: int | None = None


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def append(conn: Connection, events: list[Event]) -> None:
    """Append `events` in the caller's transaction; call it as the transaction's last write."""
    if not events:
        return
    if conn.dialect.name == "postgresql":
        conn.execute(APPENDING, {"k": OUTBOX_LOCK})  # before the seq is drawn (see above)
    at = now()
    conn.execute(
        APPEND,
        [
            {
                "product_id": e.product_id,
                "kind": e.kind,
                "quantity": e.quantity,
                "price_cents": e.price_cents,
                "at": at,
            }
            for e in events
        ],
    )
    conn.info[CHANGED] = True


def as_change(row: object) -> Change:
    price = getattr(row, "price_cents", None)
    return Change(
        seq=row.seq,  # type: ignore[attr-defined]
        productId=row.product_id,  # type: ignore[attr-defined]
        kind=row.kind,  # type: ignore[attr-defined]
        quantity=row.quantity,  # type: ignore[attr-defined]
        price=None if price is None else money(price),
        at=iso(row.at),  # type: ignore[attr-defined]
    )


def settle(conn: Connection) -> None:
    """Before reading the feed (PostgreSQL): wait until no appender that drew a seq is still
    running, and keep new ones from drawing until this transaction ends (see above). Never
    call it in a transaction that appends or holds row locks."""
    if conn.dialect.name == "postgresql":
        conn.execute(SETTLING, {"k": OUTBOX_LOCK})


def pruned_through(conn: Connection) -> int:
    return conn.scalar(select(change_feed.c.pruned_through).where(change_feed.c.id == 1)) or 0


def newest(conn: Connection) -> int:
    """The largest seq committed so far, without waiting for running appenders: a hint that
    something is new (a lower seq may still commit), never a bookmark."""
    return conn.scalar(select(func.max(product_changes.c.seq))) or 0


def latest(conn: Connection, *, settled: bool = False) -> int:
    """The newest seq there is (or the pruning mark, if every event was pruned): a bookmark
    a new consumer may follow on from."""
    if not settled:
        settle(conn)
    newest = conn.scalar(select(func.max(product_changes.c.seq))) or 0
    return max(newest, pruned_through(conn))


def read(conn: Connection, after: int, limit: int, *, settled: bool = False) -> list[Change]:
    """Up to `limit` events after seq `after`, oldest first; a single resync event instead if
    some of the events after `after` were pruned."""
    if not settled:
        settle(conn)
    rows = conn.execute(
        select(product_changes)
        .where(product_changes.c.seq > after)
        .order_by(product_changes.c.seq)
        .limit(limit)
    ).all()
    # The mark after the rows: a pruning that ran before the read shows here (PostgreSQL
    # reads each statement at its own snapshot), so a gap is never passed off as complete.
    if after < pruned_through(conn):
        return [resync(latest(conn, settled=True))]
    return [as_change(r) for r in rows]


def resync(seq: int) -> Change:
    """Tell a consumer it is older than the retention window: re-read the catalogue, then
    follow on after `seq`."""
    return Change(seq=seq, productId=None, kind="resync", at=iso(now()))


def prune(conn: Connection, retention_seconds: float) -> int:
    """Delete events older than the retention window (never the newest one, so the seq
    stays readable); returns how many. Run in a write transaction."""
    cutoff = now() - timedelta(seconds=retention_seconds)
    newest = conn.scalar(select(func.max(product_changes.c.seq))) or 0
    through = conn.scalar(
        select(func.max(product_changes.c.seq)).where(
            product_changes.c.at < cutoff, product_changes.c.seq < newest
        )
    )
    if through is None:
        return 0
    gone = conn.execute(delete(product_changes).where(product_changes.c.seq <= through)).rowcount
    marked = conn.execute(
        update(change_feed)
        .where(change_feed.c.id == 1)
        .values(pruned_through=func.max(change_feed.c.pruned_through, through))
        if conn.dialect.name == "sqlite"
        else update(change_feed)
        .where(change_feed.c.id == 1)
        .values(pruned_through=func.greatest(change_feed.c.pruned_through, through))
    ).rowcount
    if not marked:
        conn.execute(insert(change_feed).values(id=1, pruned_through=through))
    return gone
