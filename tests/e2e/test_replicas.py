"""Two main.py replicas behind nginx, sessions and events in Redis, the shop on PostgreSQL
with 2 api.py workers, web.py chatting through the balancer with a scripted LLM (issue #12),
all started by the one command `launch.py --mcp-replicas 2 --api-workers 2`.

What is shown: 200 tool calls each (a purchase every fifth) from the official SDK client in
both protocol eras over /mcp, the TypeScript SDK client over /mcp and an SSE client over /sse,
at once: 0 failures, 0 lost orders, 0 oversell, both replicas used; sessions subscribed on
both replicas hear each purchase made through the API exactly once (issue #13); kill -9 of
the replica holding a legacy session, then the same session's next call answered by the
other replica (restored from Redis, the client never re-initializes); a `Last-Event-ID`
replay from the replica that did not store the events; an idempotent purchase retried
through the other replica returns the same order; concurrent purchases through both replicas
and every transport, SSE included, while the killed replica is still coming back: 0 lost
orders, 0 oversell; a rolling restart of every replica (SIGTERM, wait until it serves again,
next) while web.py chats: no failed turn, no failed tool call. Each module run has its own
Redis key prefix and its own database (dropped after).

Skipped on a laptop without nginx, Redis, node or PostgreSQL (SQLite is used without
PostgreSQL outside CI); required when CI=true.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning

from tests.e2e.replica_harness import (
    NODE,
    TS_CLIENT,
    Cluster,
    cluster_of_two,
    order_of,
    sdk_client,
    stock,
)
from tests.fake_llm import Calls, FakeLLM, Reply
from tests.mcp_helpers import (
    STREAM_ACCEPT,
    open_session,
    rpc,
    session_headers,
    sse_events,
    text_of,
)

pytestmark = pytest.mark.anyio
CALLS = 200  # per client


async def each_client_through_the_balancer(cluster: Cluster) -> None:
    """SDK client, both eras, and the TypeScript SDK client over /mcp, SSE over /sse, at
    once: CALLS calls each (a purchase every fifth), 0 failures; every order answered is in
    the shop (0 lost) and the stock went down by exactly that much (0 oversell); the SSE
    streams and legacy sessions land on both replicas (POSTs reach their stream)."""
    started = time.monotonic()
    tag = uuid.uuid4().hex[:6]
    placed: dict[str, list[int]] = {}
    failures: list[str] = []

    async def run(kind: str) -> None:
        customer = placed.setdefault(f"{kind}-{tag}", [])
        async with sdk_client(kind, cluster.url) as client:
            for i in range(CALLS):
                try:
                    if i % 5 == 0:
                        items = [{"productId": 3, "quantity": 1}]
                        args = {"customerName": f"{kind}-{tag}", "items": items}
                        result = await client.call_tool("create_purchase", args)
                        customer.append(order_of(result)["id"])
                    else:
                        result = await client.call_tool("get_product", {"productId": 1 + i % 4})
                        order_of(result)
                except Exception as e:  # any failure counts
                    failures.append(f"{kind} call {i}: {e!r}")

    async def typescript() -> None:
        customer = f"ts-{tag}"
        args = [str(NODE), str(TS_CLIENT), f"{cluster.url}/mcp", str(CALLS), customer]
        done = await anyio.run_process(args, cwd=TS_CLIENT.parent, check=False)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        report = json.loads(done.stdout.decode().strip().splitlines()[-1])
        assert report["sessionId"][:3] in ("r1-", "r2-"), report
        failures.extend(f"typescript {f}" for f in report["failures"])
        placed[customer] = report["orders"]

    async with sdk_client("modern", cluster.url) as reader:
        before = await stock(reader, 3)
        async with anyio.create_task_group() as tg:
            for kind in ["modern", "legacy", "sse"]:
                tg.start_soon(run, kind)
            tg.start_soon(typescript)
        after = await stock(reader, 3)
    assert failures == []
    assert all(len(ids) == CALLS // 5 for ids in placed.values()) and len(placed) == 4, placed
    for customer, ids in placed.items():
        assert _orders(cluster.api, customer) == sorted(ids)  # 0 lost, 0 extra
    assert after == before - 4 * CALLS // 5 >= 0
    ids, paths = _spread(cluster.url)
    assert {i[:3] for i in ids} == {"r1-", "r2-"}, ids
    assert any("/r/r1/messages/" in p for p in paths) and any("/r/r2/messages/" in p for p in paths)
    print(f"\n4 clients x {CALLS} calls through nginx: {time.monotonic() - started:.1f}s")


def _spread(url: str) -> tuple[list[str], list[str]]:
    """Session ids of 4 new legacy sessions and the message paths of 4 new SSE streams."""
    with httpx.Client(timeout=10) as http:
        ids = [open_session(http, f"{url}/mcp") for _ in range(4)]
        paths: list[str] = []
        for _ in range(4):
            with http.stream("GET", f"{url}/sse") as r:
                lines = r.iter_lines()
                paths += [next(lines), next(lines)]
    return ids, paths


def _orders(api: str, customer: str) -> list[int]:
    orders = httpx.get(f"{api}/api/orders", params={"customer": customer}, timeout=10)
    return sorted(o["id"] for o in orders.json())


async def kill_the_replica_holding_a_session(cluster: Cluster) -> None:
    """kill -9 of the session's replica: its next call is answered by the other replica
    (restored from Redis), with the same Mcp-Session-Id and no second initialize."""
    seen: list[str] = []
    async with sdk_client("legacy", cluster.url, seen) as client:
        await client.call_tool("get_product", {"productId": 1})
        session = next(s for s in seen if s)
        owner = session[:2]
        other = "r2" if owner == "r1" else "r1"
        cluster.kill(owner)
        started = time.perf_counter()
        result = await client.call_tool("get_product", {"productId": 2})
        took = time.perf_counter() - started
        assert not result.is_error, text_of(result)
        with warnings.catch_warnings():  # deprecated from 2026-07-28 on, current before
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.set_logging_level("warning")
        for i in range(5):
            assert not (await client.call_tool("get_product", {"productId": 1 + i % 4})).is_error
    assert seen[0] == "" and all(s == session for s in seen[1:]), seen  # one initialize only
    cluster.wait_log(rf"mcp{other[1]} \|.*session {session[:12]} restored from")
    print(f"\nfirst call after kill -9 of {owner}: {took * 1000:.0f} ms (restore included)")
    # Not waiting for the launcher to start it again: the rush below runs meanwhile.


async def replay_from_the_other_replica(cluster: Cluster) -> None:
    """The events of a call answered by one replica replay from the other (Last-Event-ID)."""
    for tag in cluster.replicas:  # the one killed above is back
        await anyio.to_thread.run_sync(cluster.wait_back, tag)
    await anyio.to_thread.run_sync(_replay, cluster)  # every test async: one xdist work unit


def _replay(cluster: Cluster) -> None:
    with httpx.Client(timeout=10) as http:
        url = f"{cluster.url}/mcp"
        session = open_session(http, url)
        # A quick answer comes as JSON unless the client prefers the (resumable) stream.
        headers = {**session_headers(session), "Accept": STREAM_ACCEPT}
        body = rpc("tools/call", {"name": "get_product", "arguments": {"productId": 1}}, id=7)
        with http.stream("POST", url, json=body, headers=headers) as r:
            events = list(sse_events(r))
        first = events[0]["id"]  # the priming event: everything after it is the call's
        answer = [e for e in events if isinstance(e.get("data"), dict) and e["data"].get("id") == 7]
        assert answer, events
        other = "r2" if session.startswith("r1") else "r1"
        direct = f"http://127.0.0.1:{cluster.replicas[other]}/mcp"
        with http.stream("GET", direct, headers={**headers, "Last-Event-ID": first}) as r:
            assert r.status_code == 200, r.read()
            replayed = []
            for event in sse_events(r):
                replayed.append(event)
                if isinstance(event.get("data"), dict) and event["data"].get("id") == 7:
                    break
    assert replayed[-1]["data"] == answer[0]["data"]
    assert replayed[-1]["id"] == answer[0]["id"]


async def idempotent_purchase_retried_through_the_other_replica(cluster: Cluster) -> None:
    """Same key and items through r1's session and then r2's: one order, bought once."""
    sessions: dict[str, Client] = {}
    key = uuid.uuid4().hex
    args = {
        "customerName": "Retry Rita",
        "items": [{"productId": 4, "quantity": 2}],
        "idempotencyKey": key,
    }
    async with sdk_client("modern", cluster.url) as reader:
        before = await stock(reader, 4)
        orders = []
        # New sessions land on the replicas in turn, but nginx leaves a replica that was down
        # out of the rotation for 5 s (fail_timeout) after it is back: keep one of each.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            seen: list[str] = []
            async with sdk_client("legacy", cluster.url, seen) as client:
                await client.call_tool("get_product", {"productId": 4})
                tag = next(s for s in seen if s)[:2]
                if tag in sessions:
                    await anyio.sleep(0.2)
                    continue
                sessions[tag] = client
                orders.append(order_of(await client.call_tool("create_purchase", args)))
            if len(sessions) == 2:
                break
        assert set(sessions) == {"r1", "r2"}
        assert orders[0]["id"] == orders[1]["id"] and orders[0] == orders[1]
        assert await stock(reader, 4) == before - 2


async def concurrent_purchases_no_oversell_no_lost_order(cluster: Cluster) -> None:
    """60 purchases of a product with 50 in stock, at once, through both replicas, both eras
    of /mcp and SSE, while the replica killed above is coming back: exactly 50 orders, stock
    0, and every order answered is in the shop."""
    customer = f"Rush {uuid.uuid4().hex[:6]}"
    async with sdk_client("modern", cluster.url) as reader:
        start = await stock(reader, 2)
        wanted = start + 10
        ok: list[int] = []
        refused: list[str] = []

        async def buy(kind: str, count: int) -> None:
            async with sdk_client(kind, cluster.url) as client:
                for _ in range(count):
                    args = {"customerName": customer, "items": [{"productId": 2, "quantity": 1}]}
                    result = await client.call_tool("create_purchase", args)
                    if result.is_error:
                        refused.append(text_of(result))
                    else:
                        ok.append(order_of(result)["id"])

        async with anyio.create_task_group() as tg:
            per = wanted // 4
            for kind in ["modern", "legacy", "sse", "sse"]:
                tg.start_soon(buy, kind, per)
            tg.start_soon(buy, "legacy", wanted - 4 * per)
        assert len(ok) == start and len(refused) == 10, refused
        assert all("stock" in r.lower() for r in refused), refused
        assert await stock(reader, 2) == 0
    assert _orders(cluster.api, customer) == sorted(ok)  # 0 lost, 0 extra


async def rolling_restart_while_web_chats(cluster: Cluster) -> None:
    """Every replica in turn stopped (SIGTERM) and started again by the launcher, the next
    only once the last serves again, while web.py chats through nginx: every turn answered,
    every tool call in it a result (web.py's session moves with the restarts, restored from
    Redis; its in-flight calls finish on the stopping replica)."""
    turns: list[tuple[int, httpx.Response]] = []
    stop = threading.Event()

    def chat() -> None:
        with httpx.Client(base_url=cluster.web, timeout=60) as http:
            n = 0
            while not stop.is_set() or n < 3:
                product = 1 + n % 4
                question = f"turn {n}: how many of product {product} are left?"
                cluster.llm.script(
                    question, Calls(("get_product", {"productId": product})), Reply("ok")
                )
                body = {"message": question, "history": []}
                turns.append((product, http.post("/api/chat", json=body)))
                n += 1

    chatter = threading.Thread(target=chat, daemon=True)
    chatter.start()
    try:
        for tag in sorted(cluster.replicas):
            await anyio.to_thread.run_sync(cluster.kill, tag, signal.SIGTERM)
            await anyio.to_thread.run_sync(cluster.wait_back, tag)
    finally:
        stop.set()
        await anyio.to_thread.run_sync(chatter.join, 60)
    assert len(turns) >= 3
    for product, r in turns:
        assert r.status_code == 200, r.text
        body = r.json()
        [call] = body["toolCalls"]
        assert body["response"] == "ok" and "error" not in call, json.dumps(call)
        assert json.loads(call["result"])["id"] == product, call
    print(f"\nrolling restart of {len(cluster.replicas)} replicas: {len(turns)} chat turns")


async def each_change_notified_once_per_session(cluster: Cluster) -> None:
    """Issue 13: sessions subscribed through the balancer (legacy /mcp and /sse, on both
    replicas), purchases through api.py's 2 workers, one at a time: every session hears
    each one exactly once per URI (each replica follows the feed and tells only its own).
    Only updates for changes after the feed's head at the start count: a replica still
    working through the earlier checks' purchases rightly tells a new subscriber of those."""
    sessions, purchases = 6, 4
    counts = [dict.fromkeys(("shop://products/2", "shop://inventory"), 0) for _ in range(sessions)]
    changed = anyio.Event()
    async with httpx.AsyncClient(base_url=cluster.api) as http:
        r = await http.get("/api/changes", params={"limit": 1})
        head = int(r.headers["x-change-head"])

    def handler_for(mine: dict[str, int]) -> Any:
        async def handle(message: Any) -> None:
            nonlocal changed
            updated = getattr(message, "method", None) == "notifications/resources/updated"
            if updated and (message.params.meta or {}).get("shop/seq", head + 1) > head:
                mine[str(message.params.uri)] += 1
                changed.set()

        return handle

    async def until(done: Any) -> None:
        nonlocal changed
        with anyio.fail_after(20):
            while not done():
                changed = anyio.Event()
                if not done():
                    await changed.wait()

    async with contextlib.AsyncExitStack() as stack:
        for i, mine in enumerate(counts):
            kind = "sse" if i % 3 == 2 else "legacy"
            client = await stack.enter_async_context(
                sdk_client(kind, cluster.url, handler=handler_for(mine))
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", MCPDeprecationWarning)
                for uri in mine:
                    await client.subscribe_resource(uri)
        async with httpx.AsyncClient(base_url=cluster.api) as http:
            for k in range(1, purchases + 1):
                body = {"customerName": "live", "items": [{"productId": 2, "quantity": 1}]}
                assert (await http.post("/api/purchase", json=body)).status_code == 200
                await until(lambda k=k: all(min(c.values()) >= k for c in counts))
                assert all(set(c.values()) == {k} for c in counts), counts
    print(f"\nlive: {sessions} sessions x {purchases} purchases, each heard once: {counts[0]}")


async def test_two_replicas_behind_nginx(tmp_path: Path) -> None:
    """One cluster, the checks in order (one test: a 15 s start is paid once, whatever the
    xdist scheduling; each check says what failed)."""
    timings = {}
    llm = FakeLLM().start()
    try:
        with cluster_of_two(tmp_path, llm) as cluster:
            for check in (
                each_client_through_the_balancer,
                each_change_notified_once_per_session,
                kill_the_replica_holding_a_session,
                concurrent_purchases_no_oversell_no_lost_order,
                replay_from_the_other_replica,
                idempotent_purchase_retried_through_the_other_replica,
                rolling_restart_while_web_chats,
            ):
                started = time.monotonic()
                await check(cluster)
                timings[check.__name__] = round(time.monotonic() - started, 1)
    finally:
        llm.stop()
    print(f"\nreplica checks (s): {timings}")
