"""Rows of issue #12, running past one machine: purchases on PostgreSQL with 1 and 4 API
workers, search and recommend on the big catalogue in PostgreSQL, tools/call through nginx
in front of 1 and of 2 main.py replicas, and the time a replica takes to restore a session
another replica opened (from Redis).

Why its own module and its own processes: these need PostgreSQL, Redis and nginx (the rows
are left out, with a line saying why, where one is missing), and they run after every other
row so their databases and replicas do not load the machine while the rest is measured.

    uv run python -m bench.scale [--smoke]    # this section alone, no JSON written

On a 2-core machine nginx, two replicas, api.py and PostgreSQL share the same two cores with
the bench's own client: the 2-replica row shows what the balancer costs and that sessions
spread, not how far more machines would scale (that needs a core or a host per replica).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager, suppress
from pathlib import Path

import httpx
import psycopg
import redis

from bench.clients import mcp_client, tool
from bench.measure import Bench, run_alone
from bench.procs import make_shop, start_many
from bench.purchases import purchases
from bench.search import Picker, search_api
from bench.stats import Row, pct
from product_mcp.mcp_server.replicas import render
from tests.mcp_helpers import ACCEPT, open_session, rpc
from tests.servers import Service, free_port, wait_http, wait_workers

POSTGRES = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
CLIENTS = 8  # MCP clients at once through nginx
# main.py's log line, as rich may wrap it (the source location at the first line's end).
_RESTORED = re.compile(
    r"session (\S+)\s+(?:\S+\.py:\d+\s+)?restored\s+from\s+Redis\s+in\s+([\d.]+)\s+ms"
)


def missing() -> str | None:
    """Why these rows cannot run here, or None."""
    if not Path(NGINX).exists():
        return "nginx not installed"
    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
    except redis.RedisError:
        return f"Redis not reachable at {REDIS}"
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        return "PostgreSQL not reachable at 127.0.0.1:5432"
    return None


@contextmanager
def pg_database(label: str) -> Iterator[str]:
    """A new PostgreSQL database (its SQLAlchemy URL), dropped afterwards."""
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


def api(port: int, url: str, workers: int = 1) -> tuple[list[str], int, dict[str, str], str]:
    args = ["api.py", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    return args, port, {"DATABASE_URL": url}, "/healthz"


async def scale(b: Bench) -> None:
    """Every row of this module, or a line saying why not."""
    why = missing()
    if why:
        print(f"  (scale rows skipped: {why})", flush=True)
        b.checks["scale_skipped"] = why
        return
    with ExitStack() as stack:
        s = b.sizes
        stock = s.purchase_attempts * 3 // 4
        widget = [("Bench Widget", 100, "the purchase benchmark's product", stock)]
        dbs = {name: stack.enter_context(pg_database(name)) for name in ("w1", "w4", "big")}
        t = time.perf_counter()
        make_shop(dbs["w1"], 0, widget)
        make_shop(dbs["w4"], 0, widget)
        make_shop(dbs["big"], s.products, [])
        print(f"  PostgreSQL databases ready in {time.perf_counter() - t:.1f}s", flush=True)
        ports = {name: free_port() for name in ("pg1", "pg4", "pgbig")}
        specs = {
            "pg1": api(ports["pg1"], dbs["w1"]),
            "pg4": api(ports["pg4"], dbs["w4"], 4),
            "pgbig": api(ports["pgbig"], dbs["big"]),
        }
        b.procs |= start_many(specs)
        wait_workers(b.procs["pg4"], 4)
        async with httpx.AsyncClient(timeout=60) as http:
            for workers in (1, 4):
                label = f"POST /api/purchase, 32 clients, PG, {workers} worker"
                label += "s" if workers > 1 else ""
                key = f"purchases_32_pg_w{workers}"
                db = dbs[f"w{workers}"]
                await purchases(b, f"pg{workers}", db, stock, key, label)
            big = b.procs["pgbig"].url
            await search_api(b, http, big, Picker(), "pgbig", "_pg", ", PG", pg_url=dbs["big"])
        await replicas(b, b.procs["pg1"].url, stack)


async def replicas(b: Bench, api_url: str, stack: ExitStack) -> None:
    """main.py r1 and r2 sharing sessions in Redis; nginx in front of r1 alone and of both."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    stack.callback(_drop_keys, prefix)
    lb1, lb2 = free_port(), free_port()
    env = {
        "PRODUCT_API_URL": f"{api_url}/api",
        "REDIS_URL": REDIS,
        "REDIS_PREFIX": prefix,
        "MCP_ALLOWED_HOSTS": f"127.0.0.1:{lb1},127.0.0.1:{lb2}",
    }
    ports = {"r1": free_port(), "r2": free_port()}
    specs = {
        tag: (["main.py", "--host", "127.0.0.1", "--port", str(port)], port,
              {**env, "MCP_REPLICA_TAG": tag}, "/healthz")
        for tag, port in ports.items()
    }  # fmt: skip
    b.procs |= start_many(specs)
    work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-nginx-")))
    ups = [(tag, f"127.0.0.1:{port}") for tag, port in ports.items()]
    b.procs["lb1"] = nginx(work / "one", lb1, ups[:1])
    b.procs["lb2"] = nginx(work / "two", lb2, ups)
    for n, lb in ((1, "lb1"), (2, "lb2")):
        await through_nginx(b, n, lb)
    await restore_time(b)


def nginx(folder: Path, port: int, ups: list[tuple[str, str]]) -> Service:
    folder.mkdir()
    conf = folder / "nginx.conf"
    conf.write_text(render(f"127.0.0.1:{port}", ups, str(folder)))
    log = folder / "nginx.log"
    command = [NGINX, "-e", "stderr", "-p", str(folder), "-c", str(conf), "-g", "daemon off;"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    wait_http(f"http://127.0.0.1:{port}/healthz", proc, timeout=15)
    return Service(proc, port, log)


async def through_nginx(b: Bench, replicas: int, lb: str) -> None:
    """CLIENTS 2026-07-28 clients calling get_product through nginx for a fixed time."""
    servers = [lb, "r1", "r2"][: 1 + replicas]
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(mcp_client("modern", b.procs[lb].url))
            for _ in range(CLIENTS)
        ]
        workers = [
            lambda c=c, i=i: tool(c, "get_product", {"productId": 1 + i % 4})
            for i, c in enumerate(clients)
        ]
        label = f"tools/call via nginx, {replicas} replica{'s' if replicas > 1 else ''}"
        label += f", {CLIENTS} clients"
        note = "2 cores shared by all: cost of the balancer, not scaling" if replicas == 2 else ""
        await b.throughput(f"nginx_{replicas}_replica", label, workers, servers, note)


async def restore_time(b: Bench) -> None:
    """Sessions opened on r1, each then called on r2, which restores it from Redis: the
    restore itself as r2 logs it (p50/p95), and that first call against a later one."""
    n = b.sizes.restores
    first, held = await asyncio.to_thread(_call_elsewhere, b.procs["r1"].url, b.procs["r2"].url, n)
    await asyncio.sleep(0.2)  # the last log lines
    restored = [float(ms) / 1000 for _, ms in _RESTORED.findall(b.procs["r2"].log())]
    if len(restored) != n:
        raise RuntimeError(f"{n} sessions called on r2, {len(restored)} restores logged")
    row = Row("session_restore", "replica restores a session from Redis", n=n)
    row.p50_ms, row.p95_ms = round(pct(restored, 50), 2), round(pct(restored, 95), 2)
    row.note = (
        f"first call there p50 {pct(first, 50):.1f} ms (restore included), "
        f"next call {pct(held, 50):.1f} ms"
    )
    b.add(row)


def _call_elsewhere(r1: str, r2: str, n: int) -> tuple[list[float], list[float]]:
    """n sessions opened on r1, each called twice on r2: the two calls' times."""
    first: list[float] = []
    held: list[float] = []
    call = {"name": "get_product", "arguments": {"productId": 1}}
    with httpx.Client(timeout=30) as http:
        for _ in range(n):
            session = open_session(http, f"{r1}/mcp")
            headers = {"Accept": ACCEPT, "Mcp-Protocol-Version": "2025-11-25"}
            headers["Mcp-Session-Id"] = session
            for rid, samples in ((2, first), (3, held)):
                t = time.perf_counter()
                r = http.post(f"{r2}/mcp", json=rpc("tools/call", call, id=rid), headers=headers)
                samples.append(time.perf_counter() - t)
                if r.status_code != 200 or '"result"' not in r.text:
                    raise RuntimeError(f"call on r2 failed: {r.status_code} {r.text[:200]}")
            http.delete(f"{r1}/mcp", headers=headers)
    return first, held


def _drop_keys(prefix: str) -> None:
    with suppress(redis.RedisError):
        r = redis.Redis.from_url(REDIS)
        keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            r.delete(*keys)


def main() -> None:
    run_alone(scale, "the running-at-scale rows of the bench alone")


if __name__ == "__main__":
    main()
