"""Benchmarks: the cost of every layer of product-mcp, side by side, in one run.

    uv run python -m bench.run            # full run (< 5 min), writes bench/results/latest.json
    uv run python -m bench.run --smoke    # tiny N, same rows and checks (what the tests run)

Run from the repo root. Everything runs on loopback against real processes on free ports
(api.py, main.py in its default, --json-response and --stateless modes, web.py with a
zero-latency scripted LLM, launch.py for cold start). Absolute times on a small machine are
noisy, so every target is a ratio to the direct API call measured in the same run: p50 and p95
over many calls after a warm-up. Server CPU per call is read from /proc for each process
involved.

This module only parses the arguments, sets the services up and runs the measuring modules in
order: coldstart, layers, page, throughput, purchases, search, memory, then live (issue #13's
change-to-notification rows, on an api.py and a main.py of their own; part of "core"), then
scale (PostgreSQL, nginx and Redis rows of its own processes; left out where one of those is
missing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import procs
from bench.coldstart import cold_start
from bench.layers import layers
from bench.live import live
from bench.measure import Bench, quiet_logging
from bench.memory import memory
from bench.page import page
from bench.procs import (
    ROOT,
    free_ports,
    machine,
    make_databases,
    start_services,
    wait_web_connected,
)
from bench.purchases import purchases
from bench.scale import scale
from bench.search import search
from bench.sizes import FULL, SMOKE
from bench.stats import HEADER, print_report, result, write
from bench.targets import targets
from bench.throughput import throughput


async def run(b: Bench, work: Path, part: str = "all") -> None:
    """`part`: "core" (every row but the scale rows), "scale" (only those: PostgreSQL, nginx,
    Redis, with processes of their own) or "all"; the tests run the two halves side by side."""
    print(f"setting up in {work} ...", flush=True)
    if part in ("all", "core"):
        await core(b, work)
    for svc in b.procs.values():
        svc.stop()  # the live and scale rows start their own processes
    if part in ("all", "core"):
        await live(b)
    if part in ("all", "scale"):
        await scale(b)
    # Lines the table would not show: the consistency checks.
    for k, v in b.checks.items():
        print(f"  check {k}: {v}")


async def core(b: Bench, work: Path) -> None:
    # 8. cold start first, while nothing else runs
    cold_start(b, work)
    dbs = make_databases(work, b.sizes)
    ports = free_ports()
    t = time.perf_counter()
    start_services(b.procs, work, dbs, ports)
    await wait_web_connected(b.procs["web"].url)
    print(f"services up in {time.perf_counter() - t:.1f}s\n", flush=True)
    print(HEADER)
    api_url, big_url = b.procs["api"].url, b.procs["big"].url
    # One request at a time on this client; the purchase rows open their own clients.
    async with httpx.AsyncClient(timeout=60) as http:
        await layers(b, http, api_url)
        await page(b)
        await throughput(b, api_url)
        await purchases(b, "api", dbs.seed, dbs.stock)
        await purchases(b, "normal", dbs.normal, dbs.stock)
        await search(b, http, big_url)
        await memory(b)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="product-mcp benchmarks")
    p.add_argument("--smoke", action="store_true", help="tiny N: checks the bench runs")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON result path (default bench/results/latest.json; none for --smoke)",
    )
    p.add_argument(
        "--part",
        choices=["all", "core", "scale"],
        default="all",
        help="core: all rows but PostgreSQL/nginx/Redis; scale: only those (default all)",
    )
    return p.parse_args(argv)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so `finally` stops the services instead of orphaning them


def leaves(e: BaseException) -> list[BaseException]:
    """The exceptions inside `e`'s groups, however deep."""
    if isinstance(e, BaseExceptionGroup):
        return [leaf for sub in e.exceptions for leaf in leaves(sub)]
    return [e]


def print_causes(e: BaseException) -> None:
    """Name what failed in one line each, on stdout: Python prints a task group's traceback
    only 10 groups deep, and the SDK's clients nest deeper, so the cause itself can be cut."""
    for leaf in leaves(e):
        if not isinstance(leaf, KeyboardInterrupt | SystemExit):
            print(f"bench failed: {type(leaf).__module__}.{type(leaf).__qualname__}: {leaf}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    a = parse_args(argv)
    quiet_logging()
    sizes = SMOKE if a.smoke else FULL
    procs.FRESH = not a.smoke
    out = a.out or (None if a.smoke else ROOT / "bench" / "results" / "latest.json")
    b = Bench(sizes, a.smoke)
    info = machine()
    print(f"machine: {info}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="product-mcp-bench-") as tmp:
        try:
            asyncio.run(run(b, Path(tmp), a.part))
        except BaseException as e:
            print_causes(e)
            raise
        finally:
            for svc in b.procs.values():
                svc.stop()
    elapsed = time.perf_counter() - t0
    tg = targets(b)
    info["load_after"] = os.getloadavg()[0]
    print_report(b, tg, elapsed)
    doc = result(b, tg, info, elapsed)
    if out is not None:
        write(out, b, tg, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
