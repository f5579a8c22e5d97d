"""The change feed on PostgreSQL, where writers run in parallel: a reader never passes a seq
whose writer is still running (so a consumer's bookmark never skips an event that commits out
of seq order), and appenders do not wait for one another (product_mcp/shop/changes.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from product_mcp.shop import Shop, changes, make_engine
from product_mcp.shop.changes import Event
from tests.databases import fresh_postgres


@pytest.fixture
def engine() -> Iterator[Engine]:
    with fresh_postgres("changes_order") as url:
        engine = make_engine(url)
        Shop(engine).init()
        try:
            yield engine
        finally:
            engine.dispose()


def _in_thread(fn: Any) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        out["value"] = fn()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _append(engine: Engine, event: Event) -> bool:
    """Append and commit in a transaction of its own, giving up after 3 s of waiting."""
    with engine.connect() as conn, conn.begin():
        conn.exec_driver_sql("SET LOCAL lock_timeout = '3s'")
        changes.append(conn, [event])
    return True


def _read(engine: Engine) -> tuple[list[int], int]:
    with engine.connect() as conn:
        seqs = [c.seq for c in changes.read(conn, 0, 100)]
        return seqs, changes.latest(conn)


def test_higher_seq_committed_first_is_not_read_before_the_lower_one(engine: Engine) -> None:
    with engine.connect() as first:
        first.begin()
        changes.append(first, [Event(1, "restocked", 5)])  # draws seq 1, still running
        assert _append(engine, Event(2, "restocked", 6))  # seq 2, committed first
        reader, got = _in_thread(lambda: _read(engine))
        reader.join(0.5)
        if "value" in got:  # a reader may answer early, but never with seq 2 (nor head 2)
            assert got["value"] == ([], 0)
        first.commit()
    reader.join(10)
    assert got["value"] in (([], 0), ([1, 2], 2))
    assert _read(engine) == ([1, 2], 2)


def test_appenders_do_not_wait_for_each_other(engine: Engine) -> None:
    with engine.connect() as first:
        first.begin()
        changes.append(first, [Event(1, "restocked", 5)])

        appender, got = _in_thread(lambda: _append(engine, Event(2, "restocked", 6)))
        appender.join(10)
        assert got.get("value") is True  # committed while the first is still open
        first.rollback()  # a rolled-back seq leaves a gap, which readers pass
    assert _read(engine) == ([2], 2)
