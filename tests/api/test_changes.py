"""Issue 13, the change feed in process on SQLite and on PostgreSQL: every change to a product
or its stock appends one event in its own transaction (refusals append none), GET /api/changes
pages them oldest first, streams them as SSE resumable with Last-Event-ID, and tells a
consumer older than the retention window to resync."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from tests.api.helpers import buy
from tests.databases import ModuleDatabase
from tests.inproc import api_app
from tests.servers import ThreadServer

TOKEN = "feed-token"
STAFF = {"Authorization": f"Bearer {TOKEN}"}
SSE = {"Accept": "text/event-stream"}


@pytest.fixture
def api(database: ModuleDatabase) -> Iterator[TestClient]:
    with api_app(database.fresh(), admin_token=TOKEN, settings={"CHANGE_HEARTBEAT": 0.2}) as client:
        yield client


def _changes(api: TestClient, after: int = 0, **params: object) -> list[dict]:
    r = api.get("/api/changes", params={"after": after, **params})
    assert r.status_code == 200, r.text
    return r.json()


def _brief(events: list[dict]) -> list[tuple]:
    return [(e["productId"], e["kind"], e["quantity"], e["price"]) for e in events]


def test_every_change_appends_its_event_and_refusals_none(api: TestClient) -> None:
    assert _changes(api) == []  # the seed is the starting state, not a change
    buy(api, {"customerName": "A", "items": [{"productId": 2, "quantity": 2},
                                             {"productId": 1, "quantity": 1}]})  # fmt: skip
    api.patch("/api/inventory/3", json={"delta": 5}, headers=STAFF)
    api.patch("/api/inventory/3", json={"quantity": 9}, headers=STAFF)
    api.patch("/api/products/4", json={"price": 1499}, headers=STAFF)
    api.post("/api/products", json={"name": "Lamp", "price": 20, "stock": 4}, headers=STAFF)
    api.delete("/api/products/5", headers=STAFF)
    api.post("/api/products/import", content="sku,name,price,stock\nK-1,Kettle,30,2\n",
             headers={**STAFF, "Content-Type": "text/csv"})  # fmt: skip
    api.post("/api/products/import", content="sku,name,price,stock\nK-1,Kettle,30,7\n",
             headers={**STAFF, "Content-Type": "text/csv"})  # fmt: skip
    api.post("/api/products/import", content="sku,name,price\nK-1,Kettle,31\n",
             headers={**STAFF, "Content-Type": "text/csv"})  # fmt: skip
    # Refused: nothing appended.
    assert buy(api, {"customerName": "B", "items": [{"productId": 2, "quantity": 999}]}).is_error
    assert api.patch("/api/inventory/1", json={"delta": -1000}, headers=STAFF).is_error
    assert api.delete("/api/products/5", headers=STAFF).is_error
    events = _changes(api)
    assert [e["seq"] for e in events] == list(range(1, 11))
    assert _brief(events) == [
        (1, "purchased", 99, None),
        (2, "purchased", 48, None),
        (3, "restocked", 205, None),
        (3, "restocked", 9, None),
        (4, "updated", 150, 1499.0),
        (5, "created", 4, 20.0),
        (5, "archived", 4, 20.0),
        (6, "created", 2, 30.0),
        (6, "restocked", 7, 30.0),
        (6, "updated", 7, 31.0),
    ]
    assert all(e["at"].endswith("+00:00") for e in events)
    assert [e["seq"] for e in _changes(api, after=8)] == [9, 10]
    assert [e["seq"] for e in _changes(api, after=2, limit=3)] == [3, 4, 5]
    assert _changes(api, after=10) == []
    assert _changes(api, after=34_359_738_367) == []  # beyond 32 bits (schemathesis: a 500)


def test_bad_queries_are_422(api: TestClient) -> None:
    for params, headers in [
        ({"after": -1}, {}),
        ({"limit": 0}, {}),
        ({"limit": 1001}, {}),
        ({}, {"Last-Event-ID": "abc"}),
        ({}, {"Last-Event-ID": "9" * 30}),
    ]:
        r = api.get("/api/changes", params=params, headers=headers)
        assert r.status_code == 422, (params, headers, r.text)


@contextmanager
def served(url: str, **settings: object) -> Iterator[httpx.Client]:
    """api.py's app served by uvicorn in a thread (TestClient does not stream endlessly)."""
    from api import create_app

    app = create_app(url, admin_token=TOKEN, settings={"CHANGE_HEARTBEAT": 0.2, **settings})
    server = ThreadServer(app).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            client.shop = app.state.shop  # type: ignore[attr-defined]
            yield client
    finally:
        server.stop()


def _data(lines: Iterator[str]) -> dict:
    """The next SSE event's data, skipping comments and other fields."""
    return json.loads(next(line for line in lines if line.startswith("data: "))[6:])


def test_stream_follows_live_and_resumes_from_last_event_id(database: ModuleDatabase) -> None:
    with served(database.fresh()) as api:
        buy(api, {"customerName": "A", "items": [{"productId": 1, "quantity": 1}]})
        with api.stream("GET", "/api/changes", headers=SSE) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            # the period a follower may expect a line in (main.py drops a stream silent for 3)
            assert r.headers["x-change-heartbeat"] == "0.2"
            lines = r.iter_lines()
            assert _data(lines)["seq"] == 1
            with httpx.Client(base_url=str(api.base_url)) as other:  # another connection
                buy(other, {"customerName": "B", "items": [{"productId": 3, "quantity": 4}]})
            got = _data(lines)
            assert (got["seq"], got["productId"], got["kind"], got["quantity"]) == (
                2, 3, "purchased", 196
            )  # fmt: skip
            assert next(line for line in lines if line.startswith(":")) == ": heartbeat"
        buy(api, {"customerName": "C", "items": [{"productId": 4, "quantity": 1}]})
        with api.stream("GET", "/api/changes", headers={**SSE, "Last-Event-ID": "2"}) as r:
            lines = r.iter_lines()
            assert next(line for line in lines if line.startswith("id:")) == "id: 3"
            assert _data(lines)["productId"] == 4


def test_streams_per_client_are_bounded(database: ModuleDatabase) -> None:
    """Per address, except this machine's own (main.py's follower; behind nginx, every
    client): eight streams from main.py's address locked its follower out (found from
    outside). The client here is 127.0.0.2, another address of the loopback."""
    far = httpx.HTTPTransport(local_address="127.0.0.2")
    with (
        served(database.fresh(), CHANGE_STREAMS_PER_CLIENT=1) as near,
        httpx.Client(base_url=str(near.base_url), transport=far, timeout=30) as api,
    ):
        with (
            near.stream("GET", "/api/changes", headers=SSE) as mine,
            near.stream("GET", "/api/changes", headers=SSE) as again,
        ):
            assert mine.status_code == again.status_code == 200  # the machine's own: not held
        with api.stream("GET", "/api/changes", headers=SSE) as first:
            # Kept: a line iterator that is dropped closes its response, and the server then
            # rightly let the next stream in (this test hung on that, 1 run in ~10).
            lines = first.iter_lines()
            assert next(lines) == "retry: 1000"
            with api.stream("GET", "/api/changes", headers=SSE) as second:
                assert second.status_code == 429  # a stream let in would never end: not read
                assert "Too many change streams" in json.loads(second.read())["detail"]
            assert api.get("/api/changes").status_code == 200  # JSON pages are not streams
        for _ in range(100):  # the closed stream is released once the server sees it go
            with api.stream("GET", "/api/changes", headers=SSE) as again:
                if again.status_code == 200:
                    break
            time.sleep(0.05)
        assert again.status_code == 200


def test_consumer_older_than_the_retention_window_is_told_to_resync(api: TestClient) -> None:
    shop = api.app.state.shop
    for n in range(3):
        buy(api, {"customerName": f"R{n}", "items": [{"productId": 1, "quantity": 1}]})
    assert shop.prune_changes(0) == 2  # the newest event stays, so its seq stays readable
    resync = _changes(api)
    assert [(e["seq"], e["kind"], e["productId"]) for e in resync] == [(3, "resync", None)]
    assert _changes(api, after=1)[0]["kind"] == "resync"
    assert [(e["seq"], e["kind"]) for e in _changes(api, after=2)] == [(3, "purchased")]
    buy(api, {"customerName": "R9", "items": [{"productId": 1, "quantity": 1}]})
    assert [(e["seq"], e["kind"]) for e in _changes(api, after=3)] == [(4, "purchased")]
    assert shop.prune_changes(3600) == 0  # nothing is older than an hour


def test_stream_from_before_the_window_starts_with_resync(database: ModuleDatabase) -> None:
    with served(database.fresh()) as api:
        for n in range(2):
            buy(api, {"customerName": f"S{n}", "items": [{"productId": 2, "quantity": 1}]})
        api.shop.prune_changes(0)  # type: ignore[attr-defined]
        with api.stream("GET", "/api/changes", headers={**SSE, "Last-Event-ID": "0"}) as r:
            lines = r.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: resync"
            assert _data(lines)["kind"] == "resync"


def test_shutdown_is_not_held_by_a_stuck_database_call() -> None:
    """The feed's pruner (or watcher) stuck in a database call, e.g. behind another writer's
    lock for SQLite's 30 s busy timeout, once held the API's shutdown until the call ended
    (a hang seen in a test's teardown): closing the feed is bounded, the thread abandoned."""
    import asyncio
    import threading

    from product_mcp.shop.feed import CLOSE_SECONDS, ChangeFeed

    gate = threading.Event()
    entered = threading.Event()

    class StuckShop:
        dialect = "sqlite"
        engine = SimpleNamespace(url=make_url("sqlite://"))  # in memory: no data_version probe

        def __init__(self) -> None:
            self.on_change: list[object] = []

        def prune_changes(self, retention: float) -> int:
            entered.set()
            gate.wait(30)
            return 0

    async def run() -> float:
        feed = ChangeFeed(StuckShop(), retention=60, heartbeat=1)  # type: ignore[arg-type]
        feed._read_latest = lambda: 0  # type: ignore[method-assign]
        await feed.start()
        await asyncio.to_thread(entered.wait, 10)
        started = time.monotonic()
        await feed.close()
        return time.monotonic() - started

    try:
        assert asyncio.run(run()) < CLOSE_SECONDS + 1
    finally:
        gate.set()


def test_a_unicode_digit_last_event_id_is_a_422_not_a_500(api: TestClient) -> None:
    """ "²" passes str.isdigit() but int() refuses it: a 500 before."""
    r = api.get("/api/changes", headers={"Last-Event-ID": "\xb2".encode("latin-1")})
    assert r.status_code == 422 and "last-event-id" in r.text
