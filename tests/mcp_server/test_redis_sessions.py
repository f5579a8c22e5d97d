"""main.py with REDIS_URL (issue #12): sessions survive a restart, Redis going away and
coming back, and the Redis event store's bounds. One main.py here; two behind nginx are in
tests/e2e/test_replicas.py.

Each test has its own Redis key prefix; the outage test runs its own redis-server (on a free
port) so it can stop and start it. Skipped without Redis on a laptop, required in CI.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import anyio
import httpx
import pytest
import redis
from mcp_types import jsonrpc_message_adapter

from product_mcp.mcp_server.redis_events import RedisEventStore
from product_mcp.mcp_server.redis_link import RedisLink
from tests.databases import REDIS, redis_up
from tests.mcp_helpers import ACCEPT, open_session, rpc
from tests.servers import Service, free_port, start_api, start_mcp
from tests.web_helpers import need

HEADERS = {"Accept": ACCEPT, "Mcp-Protocol-Version": "2025-11-25"}


def call(http: httpx.Client, url: str, session: str, rid: int) -> httpx.Response:
    body = rpc("tools/call", {"name": "get_product", "arguments": {"productId": 1}}, id=rid)
    return http.post(f"{url}/mcp", json=body, headers={**HEADERS, "Mcp-Session-Id": session})


def answered(r: httpx.Response) -> bool:
    return r.status_code == 200 and '"result"' in r.text and "Galaxy" in r.text


def test_sessions_survive_a_restart_of_main_py(tmp_path: Path, prefix: str) -> None:
    """Every replica restarted (here the only one): the session goes on, no initialize."""
    api = start_api(tmp_path / "shop.db")
    env = {"REDIS_URL": REDIS, "REDIS_PREFIX": prefix, "MCP_REPLICA_TAG": "a1"}
    mcp = start_mcp(api.url, env=env)
    try:
        with httpx.Client(timeout=10) as http:
            session = open_session(http, f"{mcp.url}/mcp")
            assert session.startswith("a1-")
            assert answered(call(http, mcp.url, session, 2))
            record = redis.Redis.from_url(REDIS).hgetall(f"{prefix}session:{session}")
            assert record[b"version"] == b"2025-11-25" and record[b"initialized"] == b"1"
            mcp.stop()
            mcp = start_mcp(api.url, port=mcp.port, env=env)
            assert answered(call(http, mcp.url, session, 3))
            assert "restored from" in mcp.log()
            r = http.delete(f"{mcp.url}/mcp", headers={**HEADERS, "Mcp-Session-Id": session})
            assert r.status_code == 200
            assert not redis.Redis.from_url(REDIS).exists(f"{prefix}session:{session}")
            assert call(http, mcp.url, session, 4).status_code == 404
    finally:
        mcp.stop()
        api.stop()


def _wait_for(text: str, svc: Service, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while text not in svc.log():
        assert time.monotonic() < deadline, f"{text!r} not in the log: {svc.log()[-1500:]}"
        time.sleep(0.05)


def test_one_session_is_served_by_one_replica_at_a_time(tmp_path: Path, prefix: str) -> None:
    """A session used through another replica moves there: the replica that held it closes its
    copy, so a DELETE through either ends it everywhere (found from outside: two copies, both
    writing its notifications, and a deleted session still served by the other)."""
    api = start_api(tmp_path / "shop.db")
    env = {"REDIS_URL": REDIS, "REDIS_PREFIX": prefix}
    a1 = start_mcp(api.url, env={**env, "MCP_REPLICA_TAG": "a1"})
    a2 = start_mcp(api.url, env={**env, "MCP_REPLICA_TAG": "a2"})
    moved = "is served by another replica now: closed here"
    try:
        with httpx.Client(timeout=10) as http:
            session = open_session(http, f"{a1.url}/mcp")
            assert answered(call(http, a2.url, session, 2))  # a2 restores it ...
            _wait_for(moved, a1)  # ... and a1 closes its copy
            assert answered(call(http, a1.url, session, 3))  # back on a1: restored again
            _wait_for(moved, a2)
            assert a1.log().count("restored from Redis") == 1
            # Deleted through a2, which does not hold it now: a1's copy ends too.
            headers = {**HEADERS, "Mcp-Session-Id": session}
            assert http.delete(f"{a2.url}/mcp", headers=headers).status_code == 200
            deadline = time.monotonic() + 10
            while (status := call(http, a1.url, session, 4).status_code) != 404:
                assert time.monotonic() < deadline, f"a1 still serves a deleted session: {status}"
                time.sleep(0.05)
            assert call(http, a2.url, session, 5).status_code == 404
    finally:
        a1.stop()
        a2.stop()
        api.stop()


class RedisServer:
    """A redis-server of our own (no persistence) that a test may stop and start again."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.tmp)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not redis_up(self.url):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def test_redis_down_main_py_keeps_serving_and_recovers(tmp_path: Path) -> None:
    """Redis stops: sessions held here, new sessions and 2026-07-28 requests still work, the
    log says so once; Redis back: new sessions are recorded again, and the log says so."""
    need(shutil.which("redis-server") is not None, "redis-server not installed")
    server = RedisServer(tmp_path)
    server.start()
    api: Service | None = None
    mcp: Service | None = None
    try:
        api = start_api(tmp_path / "shop.db")
        mcp = start_mcp(api.url, env={"REDIS_URL": server.url, "MCP_REPLICA_TAG": "b1"})
        with httpx.Client(timeout=10) as http:
            held = open_session(http, f"{mcp.url}/mcp")
            server.stop()
            for rid in range(2, 6):
                assert answered(call(http, mcp.url, held, rid))
            fresh = open_session(http, f"{mcp.url}/mcp")
            assert answered(call(http, mcp.url, fresh, 2))
            modern = rpc("tools/call", {"name": "get_product", "arguments": {"productId": 1}})
            modern["params"]["_meta"] = {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"},
                "io.modelcontextprotocol/clientCapabilities": {},
            }
            h = {"Accept": ACCEPT, "Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call"}
            h["Mcp-Name"] = "get_product"
            r = http.post(f"{mcp.url}/mcp", json=modern, headers=h)
            assert r.status_code == 200 and "Galaxy" in r.text, r.text
            assert mcp.log().count("does not answer") == 1
            server.start()
            time.sleep(1.2)  # past the retry pause
            again = open_session(http, f"{mcp.url}/mcp")
            assert answered(call(http, mcp.url, again, 2))
            assert redis.Redis.from_url(server.url).exists(f"product-mcp:session:{again}")
            assert "answers again" in mcp.log()
            assert answered(call(http, mcp.url, held, 9))
    finally:
        if mcp is not None:
            mcp.stop()
        if api is not None:
            api.stop()
        server.stop()


@pytest.mark.anyio
async def test_redis_event_store_is_bounded_per_session(prefix: str) -> None:
    """Events beyond a session's byte budget drop its oldest; the keys expire; a dropped or
    foreign id is unknown; a replay sends the stream's later events up to the answer."""
    link = RedisLink(REDIS, prefix)
    link.open()
    try:
        store = RedisEventStore(link, ttl=60, max_session_bytes=8 * 1024, follow_timeout=0)
        mine, other = store.view("s1"), store.view("s2")
        ids = []
        for i in range(40):
            note = rpc("notifications/progress", {"progressToken": 1, "progress": i}, id=None)
            note["params"]["message"] = "x" * 500
            answer = {"jsonrpc": "2.0", "id": 7, "result": {}}
            message = jsonrpc_message_adapter.validate_python(answer if i == 39 else note)
            ids.append(await mine.store_event("7", message))
        r = redis.Redis.from_url(REDIS)
        total = int(r.get(f"{prefix}eventbytes:s1"))
        assert total <= 8 * 1024 and r.xlen(f"{prefix}events:s1") < 40
        assert 0 < r.ttl(f"{prefix}events:s1") <= 60
        sent: list[object] = []

        async def collect(event: object) -> None:
            sent.append(event)

        assert await mine.replay_events_after(ids[0], collect) is None  # dropped
        assert await other.replay_events_after(ids[-3], collect) is None  # not its session
        assert await mine.replay_events_after(ids[-3], collect) == "7"
        assert [e.event_id for e in sent] == ids[-2:]  # type: ignore[attr-defined]
    finally:
        await link.close()


@pytest.mark.anyio
async def test_a_connection_redis_dropped_does_not_leave_a_session_unshared(prefix: str) -> None:
    """Found from outside: one `CLIENT KILL` of a replica's connection (Redis itself fine, as
    its `timeout` setting or a proxy would do) and the next session was never recorded: the
    record is written in a MULTI/EXEC pipeline, which redis-py does not retry unless told, so
    the replica called Redis down and the session died with its replica."""
    from product_mcp.mcp_server.session_records import SharedSessions

    link = RedisLink(REDIS, prefix)
    link.open()
    assert link.client is not None
    shared = SharedSessions(link, ttl=60)
    admin = redis.Redis.from_url(REDIS)
    try:
        await shared.save("before", {"initialized": "1"})
        killed = admin.client_kill_filter(_id=await link.client.client_id())
        assert killed == 1
        await shared.save("after", {"initialized": "1"})
        assert admin.exists(f"{prefix}session:after")
        assert not link.down
    finally:
        await link.close()
        admin.close()


@pytest.mark.anyio
async def test_more_commands_at_once_than_connections_wait_for_one(prefix: str) -> None:
    """Found from outside: 300 sessions moved to a replica at once took more than redis-py's
    100 pooled connections, and its "Too many connections" read as Redis down (404s, nothing
    recorded for a second). Commands beyond the pool now wait for a connection."""
    link = RedisLink(REDIS, prefix)
    link.open()
    key = f"{prefix}nothing-here"
    try:  # 150 commands that each hold a connection for 0.3 s
        answers = await asyncio.gather(
            *(link.run(lambda r: r.blpop([key], timeout=0.3), "refused") for _ in range(150))
        )
        assert "refused" not in answers and not link.down
    finally:
        await link.close()


@pytest.mark.anyio
async def test_a_pool_still_busy_after_its_wait_skips_a_command_not_redis(
    prefix: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Past POOL_WAIT with every connection busy, the command waiting is skipped; Redis is
    not taken for down (found in review: the next second of every command was skipped)."""
    from product_mcp.mcp_server import redis_link

    monkeypatch.setattr(redis_link, "POOL_SIZE", 2)
    monkeypatch.setattr(redis_link, "POOL_WAIT", 0.1)
    link = RedisLink(REDIS, prefix)
    link.open()
    key = f"{prefix}nothing-here"
    try:
        answers = await asyncio.gather(
            *(link.run(lambda r: r.blpop([key], timeout=0.5), "skipped") for _ in range(4))
        )
        assert answers.count("skipped") == 2 and not link.down
        assert "does not answer" not in caplog.text and "all 2 connections busy" in caplog.text
        assert await link.run(lambda r: r.ping(), False) is True
    finally:
        await link.close()


@pytest.mark.anyio
async def test_a_request_a_dead_replica_ran_is_answered_not_awaited_for_ever(prefix: str) -> None:
    """Found from outside: a client resuming (Last-Event-ID) on the replica its session moved
    to a request the dead replica had been running got the replay, then a live stream here that
    no process would ever answer (an hour, nginx's read timeout). A stream this process never
    wrote is followed while events come, then answered with an error for its request; one it
    wrote is left to its live stream as before."""
    link = RedisLink(REDIS, prefix)
    link.open()
    try:
        dead = RedisEventStore(link, ttl=60, max_session_bytes=64 * 1024, follow_timeout=60)
        moved_to = RedisEventStore(link, ttl=60, max_session_bytes=64 * 1024, follow_timeout=60)
        moved_to.elsewhere_quiet = 0.3
        there = dead.view("s1")
        primed = await there.store_event("5", None)
        note = rpc("notifications/progress", {"progressToken": 1, "progress": 1}, id=None)
        await there.store_event("5", jsonrpc_message_adapter.validate_python(note))
        sent: list[object] = []

        async def collect(event: object) -> None:
            sent.append(event)

        here = moved_to.view("s1")
        with anyio.fail_after(10):  # a bound, not a speed check (it waited an hour)
            assert await here.replay_events_after(primed, collect) is None
        progress, answer = (e.message for e in sent)  # type: ignore[attr-defined]
        assert progress.method == "notifications/progress"
        assert answer.id == 5 and answer.error.code == -32603
        assert "may or may not have completed" in answer.error.message
        assert "idempotencyKey" in answer.error.message

        # a request of this process's own, still running: its live stream takes over
        mine = await here.store_event("6", None)
        sent.clear()
        moved_to.follow_timeout = 0.3
        with anyio.fail_after(10):
            assert await here.replay_events_after(mine, collect) == "6"
        assert sent == []
    finally:
        await link.close()
