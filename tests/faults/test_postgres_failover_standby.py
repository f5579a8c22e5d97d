"""A real PostgreSQL failover under api.py (issue #12): while clients buy, the primary is
stopped hard (`pg_ctl stop -m immediate`) and its synchronous streaming standby promoted
(`pg_ctl promote`). api.py names both servers in one multi-host URL (`...?host=h1:p1,h2:p2`),
to which it adds `target_session_attrs=read-write` (`postgres_url`), so its pool's next
connection lands on whichever server accepts writes. Asserted: the same api.py serves again,
a request caught in the switch gets 503 (never a 500) and its retry under the same
Idempotency-Key buys at most once, every order a client saw succeed is on the new primary,
and stock = initial - committed (never below zero).

The two servers are throw-away clusters of `pg_standby.py` (initdb once for the module); the
shared server on :5432 is not touched. The replication is synchronous, which is what makes
"acknowledged means on the standby" true: with asynchronous replication a promotion may lose
the last commits, and no test here claims otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from product_mcp.shop.schema import postgres_url
from tests.faults import pg_standby as pg
from tests.faults.pg_standby import Replicated, replicated
from tests.faults.test_crash import assert_nothing_lost, inventory
from tests.faults.test_postgres_failover import Buyers, assert_serves
from tests.servers import wait_workers
from tests.stack import Stack

GAP = 0.3  # seconds with no primary at all, between the stop and the promotion


@pytest.fixture(scope="module")
def pg_root() -> Iterator[tuple[Path, Path]]:
    """The module's temp folder (owned by the servers' user) and its initdb'd template."""
    pg.need_standby_tools()
    with pg.temp_root("pgfailover") as root:
        yield root, pg.init_template(root)


@pytest.fixture
def pair(pg_root: tuple[Path, Path]) -> Iterator[Replicated]:
    root, template = pg_root
    with replicated(template, root, databases=("shop",)) as servers:
        yield servers


def wait_until(ok: Callable[[], bool], what: str, logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + 30
    while not ok():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{logs()}"
        time.sleep(0.02)


def fail_over(pair: Replicated, buyers: Buyers, logs: Callable[[], str]) -> tuple[float, float]:
    """Under the buyers: stop the primary, no primary for GAP s, promote the standby. Returns
    the seconds from the stop to the promotion, and to 20 more purchases served."""
    wait_until(lambda: buyers.statuses[200] >= 20, "purchases on the first primary", logs)
    stop = time.monotonic()
    pair.primary.stop("immediate")
    time.sleep(GAP)
    pair.standby.promote()
    promoted = time.monotonic() - stop
    served = buyers.statuses[200] + 20
    wait_until(lambda: buyers.statuses[200] >= served, "purchases after promotion", logs)
    return promoted, time.monotonic() - stop


def test_api_follows_a_standby_promotion(pair: Replicated, tmp_path: Path) -> None:
    with Stack(tmp_path) as s:
        api = s.api(
            products=[("Failover widget", 100, "Plenty in stock", 1_000_000)],  # id 5
            database_url=pair.url("shop"),
            env={"API_WORKERS": "1"},
        )
        assert len(wait_workers(api, 1)) == 1, api.log()

        def logs() -> str:
            return f"{pair.logs()}\n--- api ---\n{api.log()}"

        initial = inventory(api.url)
        buyers = Buyers(api.url)
        try:
            promoted, back = fail_over(pair, buyers, logs)
        finally:
            buyers.stop()
        statuses = buyers.statuses
        assert api.proc.poll() is None, logs()  # the same api.py, never restarted
        assert set(statuses) <= {200, 503}, (statuses, logs())  # never a 500
        assert statuses[503] > 0 and buyers.retried_ok > 0, statuses  # caught, then served
        assert len(buyers.seen) == statuses[200], statuses
        assert None not in buyers.keys.values()  # every purchase answered 200 in the end
        assert not pair.primary.running()
        assert pair.standby.query("SELECT pg_is_in_recovery()") == [(False,)]
        assert_nothing_lost(api.url, buyers.seen, initial)
        assert_bought_once(pair, buyers)
        assert_serves(api.url, "/api/products/5")
    print(
        f"\nprimary stopped, standby promoted {promoted:.2f} s later (gap {GAP} s), buying "
        f"again {back:.2f} s after the stop; {len(buyers.seen)} orders, {dict(statuses)}, "
        f"{buyers.retried_ok} answered on a retry"
    )


def assert_bought_once(pair: Replicated, buyers: Buyers) -> None:
    """On the new primary: every order carries the Idempotency-Key of one client request
    (a key is the table's primary key, so a retried key cannot have two orders), and each key
    a client saw answered names the order it got."""
    keys = dict(pair.standby.query("SELECT key, order_id FROM idempotency_keys", "shop"))
    orders = {row[0] for row in pair.standby.query("SELECT id FROM orders", "shop")}
    assert set(keys.values()) == orders  # no order without its key
    assert set(keys) <= set(buyers.keys)  # every key is one a client sent
    answered = {k: v for k, v in buyers.keys.items() if v is not None}
    assert {k: keys.get(k) for k in answered} == answered


RW = {"target_session_attrs": "read-write"}


@pytest.mark.parametrize(
    ("url", "query"),
    [
        # several hosts: only the writable one (what lets api.py follow a promotion)
        ("postgresql://u@/shop?host=a:1,b:2", {"host": ("a:1", "b:2"), **RW}),
        ("postgresql://u@/shop?host=a:1&host=b:2", {"host": ("a:1", "b:2"), **RW}),
        ("postgresql://u@/shop?host=a,b&port=1,2", {"host": "a,b", "port": "1,2", **RW}),
        # the operator's own choice stays; one host is left alone
        ("postgresql://u@/shop?host=a:1,b:2&target_session_attrs=any",
         {"host": ("a:1", "b:2"), "target_session_attrs": "any"}),
        ("postgresql://u@/shop?host=a:1", {"host": "a:1"}),
        ("postgres://u@a:1/shop", {}),
    ],
)  # fmt: skip
def test_postgres_url_sends_several_hosts_to_the_writable_one(
    url: str, query: dict[str, object]
) -> None:
    got = postgres_url(make_url(url))
    assert got.drivername == "postgresql+psycopg"
    assert dict(got.query) == query
