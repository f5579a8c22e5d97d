"""Row 8: seconds from `python launch.py` to all three services answering, run first while
nothing else is up, since a user starting the project waits for exactly this."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import httpx

from bench.measure import Bench
from bench.procs import ROOT
from bench.stats import Row
from tests.servers import free_port


def cold_start(b: Bench, work: Path) -> None:
    """8: seconds from `python launch.py` to all three services answering /healthz."""
    times: list[float] = []
    connected: list[float] = []
    for i in range(b.sizes.cold_starts):
        answered, web_connected = launch_once(work, i)
        times.append(answered)
        if web_connected is not None:
            connected.append(web_connected)
    b.cold = {
        "runs": [round(t, 2) for t in times],
        "all_answer_s": round(statistics.median(times), 2),
        "web_connected_s": round(statistics.median(connected), 2) if connected else None,
    }
    note = f"runs {b.cold['runs']}; web connected to MCP at {b.cold['web_connected_s']} s"
    row = Row("cold_start", "cold start: launch.py to all three /healthz", n=len(times), note=note)
    row.p50_ms = round(statistics.median(times) * 1000, 0)
    b.rows.append(row)
    print(f"cold start: {b.cold}", flush=True)


def launch_once(work: Path, i: int) -> tuple[float, float | None]:
    """Start launch.py on free ports and a new database; seconds until all three answer, and
    until web.py has connected to the MCP server (None if not within the minute)."""
    ports = [free_port() for _ in range(3)]
    db = work / f"cold-{i}.db"
    args = [
        sys.executable,
        "launch.py",
        "--api-port",
        str(ports[0]),
        "--mcp-port",
        str(ports[1]),
        "--web-port",
        str(ports[2]),
        "--database-url",
        f"sqlite:///{db}",
    ]
    env = {**os.environ, "NO_COLOR": "1", "OPENAI_API_KEY": "", "MCP_CONFIG_PATH": ""}
    env.pop("MCP_CONFIG_PATH")
    log = (work / f"cold-{i}.log").open("wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        return watch(proc, ports, log.name, t0)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def watch(
    proc: subprocess.Popen[bytes], ports: list[int], log_name: str, t0: float
) -> tuple[float, float | None]:
    """Poll each /healthz until all answer, then web.py's until it has a server connected."""
    pending = {p: f"http://127.0.0.1:{p}/healthz" for p in ports}
    deadline = time.monotonic() + 60
    with httpx.Client(timeout=1) as c:
        while pending and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"launch.py exited {proc.returncode}; see {log_name}")
            for p, u in list(pending.items()):
                with suppress(httpx.HTTPError):
                    if c.get(u).status_code == 200:
                        del pending[p]
            time.sleep(0.02)
        if pending:
            raise TimeoutError(f"launch.py: {sorted(pending)} did not answer in 60 s")
        answered = time.perf_counter() - t0
        while time.monotonic() < deadline:
            body = c.get(f"http://127.0.0.1:{ports[2]}/healthz").json()
            if body["servers"]["connected"] >= 1:
                return answered, time.perf_counter() - t0
            time.sleep(0.02)
    return answered, None
