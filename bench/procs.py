"""The processes the bench measures: their databases, starting them, and reading /proc.

Every measuring module needs the same services up and the same CPU and RSS readers, so
they live here once; the runner calls `make_databases` and `start_services` before any row.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.catalog import fill
from bench.sizes import Sizes
from product_mcp.shop import Shop, make_engine
from tests.servers import Service, free_port, start, wait_http

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
SERVICES = ("api", "normal", "big", "mcp", "json", "stateless", "mcpbig", "mem", "web", "llm")

# args, port, extra environment, health path (None: do not wait)
Spec = tuple[list[str], int, dict[str, str], str | None]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its living descendants (api.py's workers, nginx's):
    a parent's own counters hold its children's only once they have exited."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        with suppress(OSError):
            total += cpu_seconds(current)
        todo += [child for child, parent in parents.items() if parent == current]
    return total


def rss_kib(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KIB


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "load_before": os.getloadavg()[0],
    }


@dataclass(frozen=True)
class Databases:
    """The SQLite files the API processes serve, and the bench product's starting stock."""

    seed: Path
    normal: Path
    big: Path
    stock: int


def make_db(path: Path, products: int, extra: list[tuple[str, int, str, int]]) -> None:
    """A SQLite shop file (synchronous=NORMAL: building it is not what is measured)."""
    make_shop(f"sqlite:///{path}", products, extra, sqlite_synchronous="NORMAL")


def make_shop(
    url: str, products: int, extra: list[tuple[str, int, str, int]], **engine: Any
) -> None:
    """A shop database at `url`: `products` generated ones, else the seed, plus `extra`."""
    shop_engine = make_engine(url, **engine)
    shop = Shop(shop_engine)
    if products:
        fill(shop, products)
    else:
        shop.init()
    if extra:
        shop.add_products(extra)
    shop_engine.dispose()


def make_databases(work: Path, s: Sizes) -> Databases:
    """Two small shops with the purchase benchmark's product, and the big catalogue."""
    t = time.perf_counter()
    seed_db, big_db = work / "seed.db", work / "big.db"
    stock = s.purchase_attempts * 3 // 4
    widget = [("Bench Widget", 100, "the purchase benchmark's product", stock)]
    make_db(seed_db, 0, widget)
    normal_db = work / "normal.db"
    make_db(normal_db, 0, widget)
    make_db(big_db, s.products, [])
    print(f"databases ready in {time.perf_counter() - t:.1f}s ({s.products} products)")
    return Databases(seed_db, normal_db, big_db, stock)


# Fresh interpreters, as a user runs them: one forked from the tests' forkserver would hold
# every service's libraries (main.py's idle RSS read 136 instead of ~100 MiB). The smoke run
# measures nothing, so it forks (each fresh start costs a second of CPU in the test suite).
FRESH = True


def start_many(specs: dict[str, Spec]) -> dict:
    """Start several services at once (their start-up overlaps), then wait for each."""
    out: dict[str, Service] = {}
    for name, (args, port, env, _health) in specs.items():
        out[name] = start(args, port=port, env=env, health_path=None, fresh=FRESH)
    try:
        for name, (_, _, _, health) in specs.items():
            if health is not None:
                try:
                    wait_http(out[name].url + health, out[name].proc, timeout=60)
                except Exception as e:
                    log = out[name].log()[-3000:]
                    raise RuntimeError(f"{name} did not start: {e}\n{log}") from e
    except Exception:
        for svc in out.values():
            svc.stop()
        raise
    return out


def api_spec(port: int, db: Path, sync: str = "FULL") -> Spec:
    args = ["api.py", "--host", "127.0.0.1", "--port", str(port)]
    env = {"DATABASE_URL": f"sqlite:///{db}", "SQLITE_SYNCHRONOUS": sync}
    return args, port, env, "/healthz"


def mcp_spec(port: int, upstream: str, *flags: str) -> Spec:
    args = ["main.py", "--host", "127.0.0.1", "--port", str(port), *flags]
    return args, port, {"PRODUCT_API_URL": f"{upstream}/api"}, "/healthz"


def web_spec(port: int, llm_port: int, mcp_cfg: Path) -> Spec:
    env = {
        "MCP_CONFIG_PATH": str(mcp_cfg),
        "OPENAI_API_KEY": "bench",
        "OPENAI_API_BASE": f"http://127.0.0.1:{llm_port}/v1",
        "LLM_MODEL": "fake-model",
        "TOOL_APPROVAL": "auto",
        "CORS_ORIGINS": "",
        "LLM_MAX_RETRIES": "0",
    }
    return ["web.py", "--host", "127.0.0.1", "--port", str(port)], port, env, "/healthz"


def start_services(
    procs: dict[str, Service], work: Path, dbs: Databases, ports: dict[str, int]
) -> None:
    """Into `procs` (so the caller stops whatever did start): the APIs and the fake LLM, then
    the MCP servers on them, then web.py on the first MCP server."""
    api_url = f"http://127.0.0.1:{ports['api']}"
    big_url = f"http://127.0.0.1:{ports['big']}"
    mcp_cfg = work / "mcp.json"
    mcp_cfg.write_text(
        json.dumps({"mcpServers": {"product-mcp": {"url": f"http://127.0.0.1:{ports['mcp']}/mcp"}}})
    )
    llm_args = ["-m", "bench.llm", "--port", str(ports["llm"])]
    apis = {
        "api": api_spec(ports["api"], dbs.seed),
        "normal": api_spec(ports["normal"], dbs.normal, "NORMAL"),
        "big": api_spec(ports["big"], dbs.big),
        "llm": (llm_args, ports["llm"], {}, "/v1/chat/completions"),
    }
    procs |= start_many(apis)
    mcps = {
        "mcp": mcp_spec(ports["mcp"], api_url),
        "json": mcp_spec(ports["json"], api_url, "--json-response"),
        "stateless": mcp_spec(ports["stateless"], api_url, "--stateless"),
        "mcpbig": mcp_spec(ports["mcpbig"], big_url),
        "mem": mcp_spec(ports["mem"], api_url),
    }
    procs |= start_many(mcps)
    procs |= start_many({"web": web_spec(ports["web"], ports["llm"], mcp_cfg)})


def free_ports() -> dict[str, int]:
    """A free loopback port for each service."""
    return {name: free_port() for name in SERVICES}


async def wait_web_connected(url: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=5) as c:
        while time.monotonic() < deadline:
            body = (await c.get(f"{url}/healthz")).json()
            if body["servers"]["connected"] >= 1:
                return
            await asyncio.sleep(0.1)
    raise TimeoutError("web.py never connected to main.py")
