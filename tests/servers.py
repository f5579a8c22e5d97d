"""Start the project's real services on free loopback ports for tests, and always stop them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Service:
    """A running child process with the address it answers on."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

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


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    """Poll url until it answers anything below 500, or fail with the reason."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def start(
    args: Sequence[str],
    *,
    port: int,
    health_path: str | None = "/healthz",
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> Service:
    """Run `python <args>` from the repo root in its own process group and wait until healthy."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    log = Path(tempfile.mkstemp(prefix="svc-", suffix=".log")[1])
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
    svc = Service(proc, port, log, full_env)
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


def start_api(db_path: Path, port: int | None = None, extra: Sequence[str] = ()) -> Service:
    """api.py on its own SQLite file."""
    port = port or free_port()
    return start(
        ["api.py", "--host", "127.0.0.1", "--port", str(port), *extra],
        port=port,
        env={"DATABASE_URL": f"sqlite:///{db_path}"},
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
