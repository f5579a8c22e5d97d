"""Issue 13 with REDIS_URL: a legacy session's `resources/subscribe` URIs are part of its
record in Redis, so the replica that restores the session after its own replica died keeps
notifying it, once, without the client subscribing again; and the record stays bounded
(MCP_MAX_SUBSCRIPTIONS), loses what is unsubscribed and goes with the session.

Two main.py on one key prefix, no balancer: the raw client names the replica it talks to.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import redis

from tests.databases import REDIS
from tests.mcp_helpers import ACCEPT, INIT, open_session, rpc, sse_events
from tests.mcp_server.test_redis_sessions import HEADERS
from tests.servers import Service, start_api, start_mcp

WAIT = 20  # seconds: a generous bound for a notification, never a speed assertion
QUIET = 1.5  # seconds to wait for a duplicate that must not come
UPDATED = "notifications/resources/updated"


class GetStream:
    """A session's standalone GET stream, read in a thread: the URIs it is told changed."""

    def __init__(self, url: str, session: str) -> None:
        self.updated: list[str] = []
        self.status = 0
        self._opened = threading.Event()
        self._http = httpx.Client(timeout=httpx.Timeout(10, read=None))
        headers = {**HEADERS, "Accept": "text/event-stream", "Mcp-Session-Id": session}
        args = (f"{url}/mcp", headers)
        threading.Thread(target=self._read, args=args, daemon=True).start()
        assert self._opened.wait(10), "the GET stream did not open"
        assert self.status == 200, self.status

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._http.stream("GET", url, headers=headers) as r:
                self.status = r.status_code
                self._opened.set()  # headers out: the SDK has registered the stream
                for event in sse_events(r):
                    data = event.get("data")
                    if isinstance(data, dict) and data.get("method") == UPDATED:
                        self.updated.append(data["params"]["uri"])
        except (httpx.HTTPError, RuntimeError):
            pass  # its replica died, or the test closed the client
        finally:
            self._opened.set()

    def until(self, uri: str, count: int = 1) -> None:
        deadline = time.monotonic() + WAIT
        while self.updated.count(uri) < count:
            assert time.monotonic() < deadline, f"no update for {uri}: heard {self.updated}"
            time.sleep(0.02)

    def close(self) -> None:
        self._http.close()


def _redis_ports_of(pid: int) -> set[str]:
    """`127.0.0.1:<port>` of each of process `pid`'s TCP connections to port 6379 (its
    Redis connections as `CLIENT LIST` names them), read from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if inode in inodes and remote.endswith(f":{6379:04X}"):
            ports.add(f"127.0.0.1:{int(local.split(':')[1], 16)}")
    return ports


@contextlib.contextmanager
def replicas(tmp_path: Path, prefix: str, *tags: str) -> Iterator[tuple[Service, list[Service]]]:
    """An api.py and a main.py per tag, all on one Redis key prefix; stopped afterwards."""
    api = start_api(tmp_path / "shop.db")
    env = {"REDIS_URL": REDIS, "REDIS_PREFIX": prefix}
    started: list[Service] = []
    try:
        for tag in tags:
            started.append(start_mcp(api.url, env={**env, "MCP_REPLICA_TAG": tag}))
        yield api, started
    finally:
        for r in started:
            r.stop()
        api.stop()


def _cut_bus(admin: redis.Redis, replica: Service) -> None:
    """Kill `replica`'s bus subscription connection in Redis (Redis itself stays up)."""
    mine = _redis_ports_of(replica.proc.pid)
    relay = [c for c in admin.client_list(_type="pubsub") if c["addr"] in mine]
    assert len(relay) == 1, (mine, admin.client_list(_type="pubsub"))
    admin.client_kill_filter(_id=relay[0]["id"])


def told(prefix: str, session: str) -> list[dict[bytes, bytes]]:
    """The resource-updated notifications in `session`'s replay log in Redis."""
    log = redis.Redis.from_url(REDIS).xrange(f"{prefix}events:{session}")
    return [e for _, e in log if UPDATED.encode() in e.get(b"m", b"")]


def post(http: httpx.Client, url: str, session: str, message: dict[str, object]) -> str:
    headers = {**HEADERS, "Mcp-Session-Id": session}
    r = http.post(f"{url}/mcp", json=message, headers=headers)
    assert r.status_code == 200, r.text
    return r.text


def buy(http: httpx.Client, api: Service, product: int) -> None:
    body = {"customerName": "Subs", "items": [{"productId": product, "quantity": 1}]}
    r = http.post(f"{api.url}/api/purchase", json=body)
    assert r.status_code == 200, r.text


def test_subscriptions_survive_the_death_of_their_replica(tmp_path: Path, prefix: str) -> None:
    """Subscribed on r1 (products 2 and 3, then 3 unsubscribed), r1 killed -9, the session's
    GET stream reopened on r2 (which restores it): a purchase of 2 is heard there exactly once,
    a purchase of 3 not at all, and the client never subscribed again."""
    api = start_api(tmp_path / "shop.db")
    env = {"REDIS_URL": REDIS, "REDIS_PREFIX": prefix}
    r1 = start_mcp(api.url, env={**env, "MCP_REPLICA_TAG": "s1"})
    r2 = start_mcp(api.url, env={**env, "MCP_REPLICA_TAG": "s2"})
    streams: list[GetStream] = []
    try:
        with httpx.Client(timeout=10) as http:
            session = open_session(http, f"{r1.url}/mcp")
            for rid, uri in enumerate(("shop://products/2", "shop://products/3"), start=2):
                post(http, r1.url, session, rpc("resources/subscribe", {"uri": uri}, id=rid))
            unsub = rpc("resources/unsubscribe", {"uri": "shop://products/3"}, id=4)
            post(http, r1.url, session, unsub)
            streams.append(on_r1 := GetStream(r1.url, session))
            buy(http, api, 2)
            on_r1.until("shop://products/2")  # subscribed where it was opened
            r1.stop(signal.SIGKILL)
            streams.append(on_r2 := GetStream(r2.url, session))
            assert "restored from Redis" in r2.log()
            buy(http, api, 3)  # unsubscribed before the kill: stays unheard
            buy(http, api, 2)
            on_r2.until("shop://products/2")
            time.sleep(QUIET)
            assert on_r2.updated == ["shop://products/2"], on_r2.updated
            # The session goes on there: a request without initialize is answered.
            assert '"result"' in post(http, r2.url, session, rpc("ping", id=5))
    finally:
        for stream in streams:
            stream.close()
        r2.stop()
        r1.stop()
        api.stop()


def test_subscriptions_in_the_record_are_bounded_and_go_with_the_session(
    tmp_path: Path, prefix: str
) -> None:
    """At most MCP_MAX_SUBSCRIPTIONS URIs (beyond: an error naming `uri`, nothing recorded);
    unsubscribe removes one; the URIs live in the session's own record (same TTL); DELETE
    takes them away."""
    api = start_api(tmp_path / "shop.db")
    env = {"REDIS_URL": REDIS, "REDIS_PREFIX": prefix, "MCP_MAX_SUBSCRIPTIONS": "2"}
    mcp = start_mcp(api.url, env={**env, "MCP_REPLICA_TAG": "t1"})
    r = redis.Redis.from_url(REDIS, decode_responses=True)
    try:
        with httpx.Client(timeout=10) as http:
            session = open_session(http, f"{mcp.url}/mcp")
            key = f"{prefix}session:{session}"

            def subscribe(uri: str, rid: int) -> str:
                return post(http, mcp.url, session, rpc("resources/subscribe", {"uri": uri}, rid))

            for rid, uri in enumerate(("shop://inventory", "shop://products/1"), start=2):
                assert '"result"' in subscribe(uri, rid)
            assert '"result"' in subscribe("shop://inventory", 4)  # again: no new URI
            refused = subscribe("shop://products/2", 5)
            assert '"error"' in refused and "uri: at most 2 subscriptions" in refused
            assert "uri: at most 2048 characters" in subscribe("shop://" + "x" * 2050, 6)
            record = r.hgetall(key)
            subs = sorted(k for k in record if k.startswith("sub:"))
            assert subs == ["sub:shop://inventory", "sub:shop://products/1"]
            assert record["subs"] == "2" and 0 < r.ttl(key) <= 1800
            unsub = rpc("resources/unsubscribe", {"uri": "shop://inventory"}, id=7)
            post(http, mcp.url, session, unsub)
            record = r.hgetall(key)
            assert "sub:shop://inventory" not in record and record["subs"] == "1"
            assert '"result"' in subscribe("shop://products/2", 8)  # room again
            headers = {"Accept": ACCEPT, "Mcp-Session-Id": session}
            assert http.delete(f"{mcp.url}/mcp", headers=headers).status_code == 200
            assert not r.exists(key)
    finally:
        mcp.stop()
        api.stop()


def test_a_busy_copy_goes_quiet_at_once_and_a_deleted_one_ends(tmp_path: Path, prefix: str) -> None:
    """A session moves to r2 while r1's copy is still running a call (a purchase waiting for
    its user's confirmation): r1 stops telling it of changes at once (found from outside: both
    copies wrote each change to the replay log, for as long as the call ran), and a DELETE
    through r2 ends r1's copy at once, running call and all (it kept serving the session)."""
    streams: list[GetStream] = []
    with (
        replicas(tmp_path, prefix, "b1", "b2") as (api, (r1, r2)),
        httpx.Client(timeout=WAIT) as http,
    ):
        try:
            init = rpc(
                "initialize", {**INIT["params"], "capabilities": {"elicitation": {"form": {}}}}
            )
            r = http.post(f"{r1.url}/mcp", json=init, headers={"Accept": ACCEPT})
            session = r.headers["mcp-session-id"]
            headers = {**HEADERS, "Mcp-Session-Id": session}
            done = http.post(
                f"{r1.url}/mcp", json=rpc("notifications/initialized", id=None), headers=headers
            )
            assert done.status_code == 202
            uri = "shop://products/2"
            post(http, r1.url, session, rpc("resources/subscribe", {"uri": uri}, id=2))
            buy_one = {"customerName": "Held", "items": [{"productId": 1, "quantity": 1}]}
            call = rpc("tools/call", {"name": "create_purchase", "arguments": buy_one}, id=3)
            asked = threading.Event()

            def held() -> None:  # reads up to the server's question and never answers it
                with http.stream("POST", f"{r1.url}/mcp", json=call, headers=headers) as r:
                    for event in sse_events(r):
                        if isinstance(event.get("data"), dict) and "elicitation" in str(
                            event["data"]
                        ):
                            asked.set()

            busy = threading.Thread(target=held, daemon=True)
            busy.start()
            assert asked.wait(WAIT), "create_purchase did not ask"
            post(http, r2.url, session, rpc("ping", id=4))  # r2 restores it: it moved
            streams.append(on_r2 := GetStream(r2.url, session))
            buy(http, api, 2)
            on_r2.until(uri)
            time.sleep(QUIET)
            assert len(told(prefix, session)) == 1  # r2's, not r1's as well
            assert http.delete(f"{r2.url}/mcp", headers=headers).status_code == 200
            deadline = time.monotonic() + WAIT
            ping = rpc("ping", id=5)
            while http.post(f"{r1.url}/mcp", json=ping, headers=headers).status_code != 404:
                assert time.monotonic() < deadline, "r1 still serves the deleted session"
                time.sleep(0.05)
            busy.join(WAIT)  # its call ended with the copy
            assert not busy.is_alive()
        finally:
            for stream in streams:
                stream.close()


def test_a_move_missed_while_the_bus_reconnects_is_caught_up(tmp_path: Path, prefix: str) -> None:
    """r1's bus connection is cut (Redis fine) just as r2 takes its session: the message is
    published while r1 is away, and pub/sub keeps nothing. Once subscribed again r1 reads
    whose the sessions it holds are (found from outside: the stray copy stayed, and every
    change was written twice)."""
    admin = redis.Redis.from_url(REDIS)
    with (
        replicas(tmp_path, prefix, "c1", "c2") as (api, (r1, r2)),
        httpx.Client(timeout=WAIT) as http,
    ):
        try:
            session = open_session(http, f"{r1.url}/mcp")
            post(http, r1.url, session, rpc("resources/subscribe", {"uri": "shop://products/2"}, 2))
            _cut_bus(admin, r1)
            post(http, r2.url, session, rpc("ping", id=3))  # r2 takes it while r1 is away
            deadline = time.monotonic() + WAIT
            while "served by another replica now: closed here" not in r1.log():
                assert time.monotonic() < deadline, r1.log()[-2000:]
                time.sleep(0.05)
            buy(http, api, 2)
            time.sleep(QUIET)
            assert len(told(prefix, session)) == 1
        finally:
            admin.close()


def test_two_replicas_restoring_one_session_at_once_keep_it_alive(
    tmp_path: Path, prefix: str
) -> None:
    """Opened on r0, then asked of r1 and r2 at the same moment: each restores it and hears
    the other's "taken". The one the record names last keeps it; neither closes the copy its
    own request is on its way to (found in review: both did, in 8 of 10 tries, and a request
    got "Session not found")."""
    with (
        replicas(tmp_path, prefix, "d0", "d1", "d2") as (_, rs),
        httpx.Client(timeout=WAIT) as http,
    ):
        for attempt in range(4):
            session = open_session(http, f"{rs[0].url}/mcp")
            answers: list[str] = []

            def ask(
                r: Service, rid: int, session: str = session, answers: list[str] = answers
            ) -> None:
                headers = {**HEADERS, "Mcp-Session-Id": session}
                reply = http.post(f"{r.url}/mcp", json=rpc("ping", id=rid), headers=headers)
                answers.append(reply.text)

            both = [threading.Thread(target=ask, args=(r, i)) for i, r in enumerate(rs[1:])]
            for t in both:
                t.start()
            for t in both:
                t.join(WAIT)
            time.sleep(0.3)  # the drops this caused are done
            again = [post(http, r.url, session, rpc("ping", id=9)) for r in rs[1:]]
            assert all('"result"' in a for a in answers + again), (attempt, answers, again)


def test_a_deletion_missed_while_the_bus_reconnects_closes_the_copy(
    tmp_path: Path, prefix: str
) -> None:
    """r1 holds a session; its bus connection is cut just as the session is deleted through
    r2: the message is lost. Once subscribed again r1 finds the session deleted and closes its
    copy (it stayed open until the idle timeout, a deleted session served to whoever held its
    id). A session whose record is missing for another reason (Redis lost its data, or it
    was opened while Redis was down) is kept: only a deletion leaves a mark."""
    admin = redis.Redis.from_url(REDIS)
    with (
        replicas(tmp_path, prefix, "d1", "d2") as (_api, (r1, r2)),
        httpx.Client(timeout=WAIT) as http,
    ):
        try:
            session = open_session(http, f"{r1.url}/mcp")
            kept = open_session(http, f"{r1.url}/mcp")
            admin.delete(f"{prefix}session:{kept}")  # gone from Redis, not deleted by a client
            _cut_bus(admin, r1)
            r = http.delete(f"{r2.url}/mcp", headers={**HEADERS, "Mcp-Session-Id": session})
            assert r.status_code == 200, r.text
            deadline = time.monotonic() + WAIT
            while "deleted by another replica now: closed here" not in r1.log():
                assert time.monotonic() < deadline, r1.log()[-2000:]
                time.sleep(0.05)
            gone = http.post(
                f"{r1.url}/mcp",
                json=rpc("ping", id=2),
                headers={**HEADERS, "Mcp-Session-Id": session},
            )
            assert gone.status_code == 404, gone.text
            post(http, r1.url, kept, rpc("ping", id=3))  # still served
        finally:
            admin.close()
