"""The run's state and the three ways the bench times a path: one at a time, several taking
turns, and many workers at once for a fixed time.

Every measuring module adds its rows through `Bench`, so the ratio to the direct call and the
server CPU per call are worked out the same way for all of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.procs import cpu_seconds, tree_cpu_seconds
from bench.sizes import Sizes
from bench.stats import Row, format_row, pct
from product_mcp.core.logs import setup_logging
from tests.servers import Service

Call = Callable[[], Awaitable[Any]]
# key, label, call, servers whose CPU is counted, note
Spec = tuple[str, str, Call, list[str], str]


def quiet_logging() -> None:
    """The bench process logs warnings only, in the services' plain format.

    Importing the server wing (product_mcp.mcp_server builds its MCPServer on import) installs
    the SDK's rich handler on the root logger at INFO, so every request the bench's httpx and
    MCP clients sent was logged, rendered by rich: ~0.7 ms of the bench's CPU per request in
    the full run's purchase rows (a sixth of the client's CPU, py-spy), time the measured
    servers could not use on this 2-core machine. Called by every entry point (bench.run and
    `python -m bench.<section>`) before any row."""
    setup_logging(logging.WARNING)


class Bench:
    def __init__(self, sizes: Sizes, smoke: bool) -> None:
        self.sizes = sizes
        self.smoke = smoke
        self.rows: list[Row] = []
        self.checks: dict[str, Any] = {}
        self.memory: dict[str, Any] = {}
        self.cold: dict[str, Any] = {}
        self.procs: dict[str, Service] = {}
        self.direct_p50: float | None = None

    def add(self, row: Row) -> Row:
        concurrent = ("purchases", "mcp_sessions", "live")  # no ratio to one direct call
        sequential = row.key != "direct_1" and not row.key.startswith(concurrent)
        if self.direct_p50 and row.p50_ms is not None and sequential and row.key != "direct_8":
            row.x_direct = round(row.p50_ms / self.direct_p50, 2)
        self.rows.append(row)
        print(f"  {format_row(row)}", flush=True)
        return row

    def row(self, key: str) -> Row:
        return next(r for r in self.rows if r.key == key)

    @contextmanager
    def cpu(self, row_cpu: dict[str, float], names: list[str], calls: int) -> Iterator[None]:
        """Record each named server's CPU milliseconds per call over the block (with its
        child processes': API workers, nginx workers)."""
        before = {n: tree_cpu_seconds(self.procs[n].proc.pid) for n in names}
        yield
        for n in names:
            used = tree_cpu_seconds(self.procs[n].proc.pid) - before[n]
            row_cpu[n] = round(used * 1000 / max(calls, 1), 2)

    async def latency(
        self,
        key: str,
        label: str,
        call: Call,
        servers: list[str],
        *,
        n: int | None = None,
        warmup: int | None = None,
        note: str = "",
    ) -> Row:
        """Sequential calls: warm up, then time each; p50/p95 and server CPU per call."""
        n = n or self.sizes.calls
        for _ in range(self.sizes.warmup if warmup is None else warmup):
            await call()
        row = Row(key, label, n=n, note=note)
        samples: list[float] = []
        with self.cpu(row.cpu_ms, servers, n):
            t_all = time.perf_counter()
            for _ in range(n):
                t = time.perf_counter()
                await call()
                samples.append(time.perf_counter() - t)
            elapsed = time.perf_counter() - t_all
        row.p50_ms, row.p95_ms = round(pct(samples, 50), 2), round(pct(samples, 95), 2)
        row.per_s = round(n / elapsed, 1)
        return self.add(row)

    async def interleaved(self, specs: list[Spec], rounds: int = 8) -> list[Row]:
        """Like `latency` for several paths at once, taking turns in rounds, so a change of
        background load on the machine hits every path alike and their ratios stay fair."""
        n = self.sizes.calls
        per_round = max(1, n // rounds)
        for _, _, call, _, _ in specs:
            for _ in range(self.sizes.warmup):
                await call()
        samples: dict[str, list[float]] = {key: [] for key, *_ in specs}
        cpu: dict[str, dict[str, float]] = {key: {} for key, *_ in specs}
        busy: dict[str, float] = dict.fromkeys(samples, 0.0)
        for _ in range(rounds):
            for key, _, call, servers, _ in specs:
                before = {s: cpu_seconds(self.procs[s].proc.pid) for s in servers}
                t_all = time.perf_counter()
                for _ in range(per_round):
                    t = time.perf_counter()
                    await call()
                    samples[key].append(time.perf_counter() - t)
                busy[key] += time.perf_counter() - t_all
                for s in servers:
                    used = cpu_seconds(self.procs[s].proc.pid) - before[s]
                    cpu[key][s] = cpu[key].get(s, 0.0) + used
        rows = []
        for key, label, _, servers, note in specs:
            done = len(samples[key])
            row = Row(key, label, n=done, note=note)
            row.cpu_ms = {s: round(cpu[key][s] * 1000 / done, 2) for s in servers}
            row.p50_ms = round(pct(samples[key], 50), 2)
            row.p95_ms = round(pct(samples[key], 95), 2)
            row.per_s = round(done / busy[key], 1)
            if key == "direct_1":
                self.direct_p50 = row.p50_ms
            rows.append(self.add(row))
        return rows

    async def throughput(
        self, key: str, label: str, workers: list[Call], servers: list[str], note: str = ""
    ) -> Row:
        """Each worker calls in a loop for a fixed time; calls/s over all of them."""
        seconds = self.sizes.throughput_seconds
        for w in workers:  # warm every connection
            await w()
        count = 0
        samples: list[float] = []
        stop = time.perf_counter() + seconds
        row = Row(key, label, note=note)
        client_cpu = time.process_time()

        async def loop(w: Call) -> None:
            nonlocal count
            while time.perf_counter() < stop:
                t = time.perf_counter()
                await w()
                samples.append(time.perf_counter() - t)
                count += 1

        with self.cpu(row.cpu_ms, servers, 1):
            t0 = time.perf_counter()
            await asyncio.gather(*(loop(w) for w in workers))
            elapsed = time.perf_counter() - t0
        for name in servers:  # CPU per call, and how busy each process was
            row.cpu_ms[name] = round(row.cpu_ms[name] / max(count, 1), 2)
        row.cpu_ms["bench-client"] = round(
            (time.process_time() - client_cpu) * 1000 / max(count, 1), 2
        )
        row.n = count
        row.per_s = round(count / elapsed, 1)
        row.p50_ms, row.p95_ms = round(pct(samples, 50), 2), round(pct(samples, 95), 2)
        return self.add(row)


def run_alone(section: Callable[[Bench], Awaitable[None]], description: str) -> None:
    """`python -m bench.<section> [--smoke]`: one section's rows without the rest of the run."""
    import argparse

    from bench.sizes import FULL, SMOKE
    from bench.stats import HEADER

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--smoke", action="store_true", help="tiny N: checks the rows run")
    a = p.parse_args()
    quiet_logging()
    b = Bench(SMOKE if a.smoke else FULL, a.smoke)
    print(HEADER)
    try:
        asyncio.run(section(b))
    finally:
        for svc in b.procs.values():
            svc.stop()
    for k, v in b.checks.items():
        print(f"  check {k}: {v}")
