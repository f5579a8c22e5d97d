"""nginx in front of two main.py replicas, with one replica's life in the test's hands: a POST
for an SSE stream reaches the replica that holds it, even right after that replica came back,
and a POST for a stream that no longer exists gets an error saying so (issue #12).

The 404 seen once in the replicas rush (tests/e2e/test_replicas.py): nginx marked a replica
failed in its per-replica upstream for `fail_timeout` (5 s) after one refused connection,
while the replica was down; the replica came back within that time, a client opened a new SSE
stream on it (through another upstream, which did not share the mark), and nginx sent that
stream's POSTs to the backup replica, which answered the SDK's bare "Could not find session".
Reproduced here deterministically: the replicas start from the pre-imported fork server in
well under the 5 s.

The template itself, rendered for 3 replicas, passes `nginx -t`.

Skipped on a laptop without nginx or Redis; required when CI=true.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from product_mcp.mcp_server.replicas import render
from tests.databases import REDIS, redis_up
from tests.e2e.replica_harness import NGINX
from tests.mcp_helpers import ACCEPT, INIT, rpc
from tests.servers import Service, free_port, start_api, start_mcp, wait_http
from tests.web_helpers import need


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_api(tmp_path_factory.mktemp("routing") / "shop.db")
    yield svc
    svc.stop()


def _nginx(tmp: Path, listen: int, replicas: list[tuple[str, str]]) -> subprocess.Popen[bytes]:
    conf = tmp / "nginx.conf"
    conf.write_text(render(f"127.0.0.1:{listen}", replicas, str(tmp)))
    command = [str(NGINX), "-e", "stderr", "-p", str(tmp), "-c", str(conf), "-g", "daemon off;"]
    proc = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{listen}/healthz", proc, timeout=10)
    return proc


def _endpoint(lines: Iterator[str]) -> str:
    """The message path an SSE stream announces (its `endpoint` event). The caller keeps
    `lines`: a line iterator that is dropped closes the stream."""
    for line in lines:
        if line.startswith("data: "):
            return line[len("data: ") :]
    raise AssertionError("no endpoint event")


class Pair:
    """nginx before r1 (down: its port is free) and r2 (running), sharing one Redis prefix;
    the test starts r1 and stops r2 when it wants. Everything is stopped at the end."""

    def __init__(self, api: Service, tmp_path: Path) -> None:
        need(NGINX is not None, "nginx not installed (apt-get install nginx)")
        need(redis_up(), f"Redis not reachable at {REDIS}")
        self.api = api
        self.lb, self.p1 = free_port(), free_port()
        self.env = {"REDIS_URL": REDIS, "REDIS_PREFIX": f"test-{uuid.uuid4().hex[:10]}:"}
        self.env["MCP_ALLOWED_HOSTS"] = f"127.0.0.1:{self.lb}"
        self.r1: Service | None = None
        self.r2: Service | None = start_mcp(api.url, env={**self.env, "MCP_REPLICA_TAG": "r2"})
        ups = [("r1", f"127.0.0.1:{self.p1}"), ("r2", f"127.0.0.1:{self.r2.port}")]
        self.proc = _nginx(tmp_path, self.lb, ups)

    def start_r1(self) -> Service:
        self.r1 = start_mcp(self.api.url, port=self.p1, env={**self.env, "MCP_REPLICA_TAG": "r1"})
        return self.r1

    def stop_r2(self) -> None:
        if self.r2 is not None:
            self.r2.stop()
            self.r2 = None

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)
        for svc in (self.r1, self.r2):
            if svc is not None:
                svc.stop()


def test_sse_posts_reach_a_replica_that_just_came_back(api: Service, tmp_path: Path) -> None:
    with Pair(api, tmp_path) as pair, httpx.Client(timeout=10) as http:
        lb = pair.lb
        # r1 is down: POSTs for its (dead) streams fall to r2, which says the stream ended.
        for i in range(6):  # enough to reach every nginx worker
            gone = uuid.uuid4().hex
            r = http.post(f"http://127.0.0.1:{lb}/r/r1/messages/?session_id={gone}",
                          json=rpc("ping", id=i))  # fmt: skip
            assert r.status_code == 404, r.text
            error = r.json()["error"]
            assert r.json()["id"] == i and error["code"] == -32600
            assert f"no event stream for session_id {gone}" in error["message"]
            assert "open GET /sse again" in error["message"]
        # r1 back (within nginx's fail_timeout): a new stream on it gets its POSTs.
        r1 = pair.start_r1()
        with http.stream("GET", f"{r1.url}/sse") as stream:
            lines = stream.iter_lines()
            path = _endpoint(lines)
            assert path.startswith("/r/r1/messages/?session_id="), path
            for i in range(6):
                r = http.post(f"http://127.0.0.1:{lb}{path}", json=rpc("ping", id=i))
                assert r.status_code == 202, r.text


def test_post_for_an_ended_stream_says_so(api: Service) -> None:
    """One main.py, no balancer: a stream that closed, then a POST for it (the same answer a
    restarted replica gives): 404 naming the session and telling the client to reconnect."""
    mcp = start_mcp(api.url)
    try:
        with httpx.Client(timeout=10) as http:
            with http.stream("GET", f"{mcp.url}/sse") as stream:
                lines = stream.iter_lines()
                path = _endpoint(lines)
                assert http.post(f"{mcp.url}{path}", json=rpc("ping", id=1)).status_code == 202
            for i in range(50):  # the stream's end reaches the server a moment later
                r = http.post(f"{mcp.url}{path}", json=rpc("ping", id=2 + i))
                if r.status_code != 202:
                    break
                time.sleep(0.05)
            assert r.status_code == 404 and "it has ended" in r.json()["error"]["message"], r.text
            bad = http.post(f"{mcp.url}/messages/?session_id=zzz", json=rpc("ping", id=3))
            assert bad.status_code == 400  # not a session id at all: the SDK's own answer
    finally:
        mcp.stop()


def test_next_replica_down_right_after_the_last_came_back(api: Service, tmp_path: Path) -> None:
    """A rolling restart: r1 down, then back, then r2 down at once. Requests without a
    session (initialize, the stateless protocol) must reach r1 all along. With nginx's
    `max_fails=1 fail_timeout=5s`, r1 stayed marked failed for 5 s after it came back, r2
    refused, and nginx answered 502 "no live upstreams" (seen in the rolling restart of
    tests/e2e/test_replicas.py, where web.py's reconnect met it twice and the turn failed)."""
    with Pair(api, tmp_path) as pair, httpx.Client(timeout=10, headers={"Accept": ACCEPT}) as http:
        url = f"http://127.0.0.1:{pair.lb}/mcp"
        for _ in range(8):  # r1 refuses; each nginx worker sends these on to r2
            r = http.post(url, json=INIT)
            assert r.status_code == 200, r.text
        pair.start_r1()
        pair.stop_r2()
        for _ in range(8):
            r = http.post(url, json=INIT)
            assert r.status_code == 200, r.text
            assert r.headers["mcp-session-id"].startswith("r1-")


@pytest.mark.anyio
async def test_rendered_nginx_config_is_valid(tmp_path: Path) -> None:
    """deploy/nginx.conf.template, rendered for 3 replicas, passes `nginx -t`."""
    need(NGINX is not None, "nginx not installed (apt-get install nginx)")
    await anyio.to_thread.run_sync(_check_config, tmp_path)


def _check_config(tmp_path: Path) -> None:
    ups = [(f"r{i}", f"127.0.0.1:{free_port()}") for i in (1, 2, 3)]
    conf = tmp_path / "nginx.conf"
    conf.write_text(render(f"127.0.0.1:{free_port()}", ups, str(tmp_path)))
    text = conf.read_text()
    assert "@@" not in text and '"~^r3-"  mcp_r3;' in text and "proxy_buffering off;" in text
    args = [str(NGINX), "-t", "-e", "stderr", "-p", str(tmp_path), "-c", str(conf)]
    checked = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr
