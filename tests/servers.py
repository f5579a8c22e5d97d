"""Start one server on a free loopback port: a real service as a process, or an ASGI app in
a thread of the test process.

The building blocks: `Service` (a running child process and its log), `start` and the
`start_api`/`start_mcp`/`start_mini` shorthands, and `ThreadServer` (uvicorn in a thread, for
the scripted LLM and in-process apps that must stream over real HTTP). A test that needs a
running stack (several services that must all be stopped) uses `tests.stack.Stack`.

Fast starts: a fresh interpreter spends ~2 s of CPU importing a service before it runs (the
suite starts ~100), so `start` forks each service from a per-worker forkserver that imported
its libraries once (`multiprocessing`'s forkserver; what it imports: service_preload.py). The
child is a real process all the same: its own pid and process group, port, log, environment
and memory; kill -9 and restarts work as on a fresh one, and the script runs as `python
<script>` runs it. TESTS_FRESH_PROCESSES=1 starts every service as a fresh `python <script>`
instead. (Start-up traps and the launcher run fresh interpreters either way: tests/e2e.)
"""

from __future__ import annotations

import io
import multiprocessing
import os
import random
import runpy
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent


def _ephemeral_low() -> int:
    """Where the range the OS gives outgoing connections their ports starts (Linux)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_LOW = _ephemeral_low()
_PICK = random.SystemRandom()  # not `random`: Hypothesis seeds that one alike in every worker
_handed: set[int] = set()


_SLICES = 8  # the pool's shares: the xdist controller's and up to 7 workers'


def port_pool(worker: str | None = None) -> range:
    """Where this process picks ports: below the OS's ephemeral range, a share of its own per
    xdist worker (`PYTEST_XDIST_WORKER`, "gw0", ...), so two workers never pick the same port
    between one's pick and its service's bind (a bench run's main.py once found its port
    taken: "port in use"). What a worker starts and waits for (the bench) shares its share."""
    if worker is None:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    n = int(worker[2:]) + 1 if worker[:2] == "gw" and worker[2:].isdigit() else 0
    low = max(1024, _EPHEMERAL_LOW - 12_000)
    size = (_EPHEMERAL_LOW - low) // _SLICES
    start = low + (n % _SLICES) * size
    return range(start, start + size)


def free_port() -> int:
    """A port nobody listens on right now, from this process's share of the pool below the
    OS's ephemeral range (port_pool): a port from bind(0) comes from the same pool as every
    outgoing connection's, and with the run's thousands of client connections one took a
    port between its pick and the service's bind (the service stopped: "port in use").
    Never the same port twice in a process."""
    pool = port_pool()
    for _ in range(100 if len(pool) >= 100 else 0):
        port = _PICK.choice(pool)
        if port in _handed:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # someone listens (or is bound) there
        _handed.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listeners(port: int) -> set[int]:
    """The pids of every process holding the socket that listens on 127.0.0.1:port (read
    from /proc: a child that inherited it holds the port too)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with suppress(OSError):
                if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                    pids.add(int(proc.name))
    return pids


@contextmanager
def dead_port() -> Iterator[int]:
    """A port that refuses connections for as long as the block runs: bound, never listening,
    so no other test's server can take it meanwhile (a free_port() for "nobody listens there"
    was once taken by another worker's server, and a test expecting "connection refused" got
    that server's 404)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@dataclass
class Service:
    """A running child process with the address it answers on."""

    proc: subprocess.Popen[bytes] | Forked
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Stop the process (and its children); returns its exit code."""
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        return self.proc.returncode

    def restart(self, sig: int = signal.SIGTERM) -> Service:
        """Stop it (with `sig`) and start the same command on the same port; the new one."""
        self.stop(sig)
        return start(self.args, port=self.port, env=self.env)


def wait_http(
    url: str, proc: subprocess.Popen[bytes] | Forked | None = None, timeout: float = 30
) -> None:
    """Poll url until it answers anything below 500, or fail with the reason."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    with httpx.Client(timeout=2) as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
            try:
                if http.get(url).status_code < 500:
                    return
            except httpx.HTTPError as e:
                last = e
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


# Where services' output goes: the test run's own temp folder (tests/conftest.py sets it;
# pytest keeps the last 3 runs' folders), else the system's (the bench): a suite run starts
# ~250 services, and their logs were left in /tmp.
LOG_DIR: Path | None = None


def start(
    args: Sequence[str],
    *,
    port: int,
    health_path: str | None = "/healthz",
    env: dict[str, str] | None = None,
    timeout: float = 30,
    fresh: bool = False,
) -> Service:
    """Run `python <args>` from the repo root in its own process group and wait until healthy
    (forked from the pre-imported forkserver unless `fresh` or TESTS_FRESH_PROCESSES=1; the
    bench wants fresh ones: a forked service holds every library the forkserver imported)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log = Path(tempfile.mkstemp(prefix="svc-", suffix=".log", dir=LOG_DIR)[1])
    proc: subprocess.Popen[bytes] | Forked
    if fresh or os.environ.get("TESTS_FRESH_PROCESSES") == "1":
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, *args],
                cwd=ROOT,
                env=full_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
    else:
        proc = Forked(list(args), full_env, log)
    svc = Service(proc, port, log, full_env, list(args))
    if health_path is not None:
        try:
            wait_http(svc.url + health_path, proc, timeout)
        except Exception as e:
            svc.stop()
            raise RuntimeError(f"{args} failed to start: {e}\n--- log ---\n{svc.log()}") from e
    return svc


@contextmanager
def running(args: Sequence[str], **kw: object) -> Iterator[Service]:
    svc = start(args, **kw)  # type: ignore[arg-type]
    try:
        yield svc
    finally:
        svc.stop()


def wait_workers(svc: Service, expected: int, timeout: float = 60) -> set[str]:
    """The pids of the uvicorn workers that logged their start, once `expected` have (or at
    the timeout): /healthz answers as soon as the first one serves."""
    deadline = time.monotonic() + timeout
    while True:
        pids = {
            line.split("[")[1].split("]")[0]
            for line in svc.log().splitlines()
            if "Started server process" in line
        }
        if len(pids) >= expected or time.monotonic() > deadline:
            return pids
        time.sleep(0.2)


def start_api(
    db: Path | str,
    port: int | None = None,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Service:
    """api.py on its own SQLite file, or on a database URL (e.g. PostgreSQL's)."""
    port = port or free_port()
    url = db if isinstance(db, str) else f"sqlite:///{db}"
    return start(
        ["api.py", "--host", "127.0.0.1", "--port", str(port), *extra],
        port=port,
        env={"DATABASE_URL": url, **(env or {})},
        timeout=60,  # several workers importing at once on a busy machine
    )


def start_mcp(
    api_url: str,
    port: int | None = None,
    extra: Sequence[str] = (),
    env: dict[str, str] | None = None,
) -> Service:
    """main.py (both HTTP transports by default) against an api.py base URL."""
    port = port or free_port()
    return start(
        ["main.py", "--host", "127.0.0.1", "--port", str(port), *extra],
        port=port,
        env={"PRODUCT_API_URL": f"{api_url}/api", **(env or {})},
    )


def start_mini(*flags: str, port: int | None = None) -> Service:
    """tests/mini_mcp.py, the small MCP server with odd tools the web tests need."""
    port = port or free_port()
    return start(["tests/mini_mcp.py", "--port", str(port), *flags], port=port)


class ThreadServer:
    """An ASGI app served by uvicorn in a daemon thread of this process (lifespan included)."""

    def __init__(self, app: object, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(  # type: ignore[arg-type]
            app, host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> ThreadServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"in-process server on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def __enter__(self) -> ThreadServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- fast starts: services forked from one pre-imported interpreter ------------------------

# What the forkserver imports once (a module that fails to import is just imported late).
PRELOAD = ["tests.servers", "tests.service_preload"]
_forkserver: Any = None
_forked: list[Forked] = []


def _context() -> Any:
    global _forkserver
    if _forkserver is None:
        _forkserver = multiprocessing.get_context("forkserver")
        _forkserver.set_forkserver_preload(PRELOAD)
    return _forkserver


def _run_service(args: list[str], env: dict[str, str], log: str) -> None:
    """In the forked child: become what `python <args>` started from ROOT would be."""
    os.setsid()  # its own process group, as start_new_session=True gives a fresh one
    out = os.open(log, os.O_WRONLY | os.O_APPEND)
    null = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((null, 0), (out, 1), (out, 2)):
        os.dup2(fd, target)
    os.close(out)
    os.close(null)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115
    sys.stdout, sys.stderr = (  # unbuffered, as PYTHONUNBUFFERED=1 makes them
        io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), "utf-8", errors, None, True, True)
        for fd, errors in ((1, "strict"), (2, "backslashreplace"))
    )
    os.environ.clear()
    os.environ.update(env)
    os.chdir(ROOT)
    if args[0] == "-m":
        sys.path[0] = str(ROOT)
        sys.argv = [args[1], *args[2:]]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        script = ROOT / args[0]
        sys.path[0] = str(script.parent)
        sys.argv = list(args)
        runpy.run_path(str(script), run_name="__main__")


class Forked:
    """A service forked from the forkserver, seen the way tests see a subprocess.Popen."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self._process = _context().Process(
            target=_run_service, args=(args, env, str(log)), name=" ".join(args)
        )
        self._process.start()
        self.pid: int = self._process.pid
        _forked.append(self)

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self._process.exitcode


def stop_forgotten() -> None:
    """Kill forked services a test left running (at the end of a test process: the
    multiprocessing module would otherwise wait for them to exit on their own)."""
    for proc in _forked:
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
