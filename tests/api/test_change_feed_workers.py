"""Issue 13, the change feed across processes: api.py with 2 workers on SQLite and on
PostgreSQL, purchases and restocks from many connections at once (so both workers write), and
two SSE streams (each may be on either worker) that must each see every change exactly once,
in seq order, the same events as the JSON feed, with each product's stock in commit order."""

from __future__ import annotations

import itertools
import json
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.databases import ModuleDatabase
from tests.servers import Service, wait_workers
from tests.stack import Stack

TOKEN = "workers-token"
SSE = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def api(database: ModuleDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Stack(tmp_path_factory.mktemp("feed-workers")) as s:
        yield s.api(
            database_url=database.fresh(),
            extra=["--workers", "2"],
            env={"ADMIN_TOKEN": TOKEN, "CHANGE_HEARTBEAT": "1"},
        )


def _follow(url: str, count: int, into: list[dict], ready: threading.Event) -> None:
    """Read `count` events from a new SSE stream into `into`."""
    with (
        httpx.Client(timeout=60) as client,
        client.stream("GET", f"{url}/api/changes", headers=SSE) as r,
    ):
        ready.set()
        for line in r.iter_lines():
            if line.startswith("data: "):
                into.append(json.loads(line[6:]))
                if len(into) == count:
                    return


def _change(url: str, n: int) -> bool:
    """One change from a new connection (any worker): a purchase, or a restock every 5th."""
    product = n % 4 + 1
    with httpx.Client(base_url=url, timeout=60) as c:
        if n % 5 == 0:
            r = c.patch(f"/api/inventory/{product}", json={"delta": 3},
                        headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        else:
            r = c.post("/api/purchase", json={"customerName": f"W{n}",
                       "items": [{"productId": product, "quantity": 1}]})  # fmt: skip
    assert r.status_code == 200, r.text
    return True


def test_two_workers_every_change_once_in_order(api: Service) -> None:
    changes = 60
    streams: list[list[dict]] = [[], []]
    readers = []
    for events in streams:
        ready = threading.Event()
        t = threading.Thread(target=_follow, args=(api.url, changes, events, ready), daemon=True)
        t.start()
        assert ready.wait(30)
        readers.append(t)
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(lambda n: _change(api.url, n), range(changes)))
    for t in readers:
        t.join(60)
    assert [e["seq"] for e in streams[0]] == list(range(1, changes + 1))
    assert streams[1] == streams[0]
    assert httpx.get(f"{api.url}/api/changes", params={"limit": 1000}).json() == streams[0]
    stock = {i["productId"]: i["quantity"] for i in httpx.get(f"{api.url}/api/inventory").json()}
    for product in range(1, 5):
        mine = [e for e in streams[0] if e["productId"] == product]
        for before, after in itertools.pairwise(mine):
            step = -1 if after["kind"] == "purchased" else 3
            assert after["quantity"] == before["quantity"] + step, (before, after)
        assert mine[-1]["quantity"] == stock[product]


def test_workers_are_forked_from_the_preloaded_process(api: Service) -> None:
    """Each worker is a fork of api.py's process (its command line), not a fresh interpreter
    spawned to import everything again (`-c from multiprocessing.spawn import ...`)."""
    workers = wait_workers(api, 2)
    assert len(workers) == 2, api.log()
    # its banner names SQLITE_SYNCHRONOUS only on SQLite (it meant nothing on PostgreSQL)
    [url] = [line for line in api.log().splitlines() if "DATABASE_URL =" in line]
    assert ("SQLITE_SYNCHRONOUS" in api.log()) == ("sqlite" in url), api.log()[:600]
    parent = Path(f"/proc/{api.proc.pid}/cmdline").read_bytes()
    for pid in workers:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert b"multiprocessing.spawn" not in cmdline and cmdline == parent
        assert Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(
            api.proc.pid
        )


def test_a_stream_ends_cleanly_on_shutdown_and_resumes_after(tmp_path: Path) -> None:
    """SIGTERM with a stream open: api.py shuts down (uvicorn would wait for the endless response
    forever), the stream ends, and the restarted api.py resumes it from Last-Event-ID."""
    with Stack(tmp_path) as s:
        api = s.api(env={"ADMIN_TOKEN": TOKEN})
        httpx.post(f"{api.url}/api/purchase", json={"customerName": "Z",
                   "items": [{"productId": 1, "quantity": 1}]})  # fmt: skip
        with (
            httpx.Client(timeout=30) as client,
            client.stream("GET", f"{api.url}/api/changes", headers=SSE) as r,
        ):
            lines = r.iter_lines()
            assert next(line for line in lines if line.startswith("id:")) == "id: 1"
            code = api.stop(timeout=20)  # SIGKILL after 20 s if it hangs
            assert code == -signal.SIGTERM, api.log()[-2000:]
            assert "Application shutdown complete" in api.log()
            assert list(lines)[-1:] in ([], [""])  # the stream ended
        api = s.restart("api")
        httpx.post(f"{api.url}/api/purchase", json={"customerName": "Y",
                   "items": [{"productId": 2, "quantity": 1}]})  # fmt: skip
        with httpx.stream("GET", f"{api.url}/api/changes", timeout=30,
                          headers={**SSE, "Last-Event-ID": "1"}) as r:  # fmt: skip
            line = next(line for line in r.iter_lines() if line.startswith("data:"))
            assert json.loads(line[6:])["seq"] == 2
