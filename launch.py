"""Start the whole assistant: api.py, then main.py, then web.py, each once the one before answers.

`uv run python launch.py` prints every address when all are up; Ctrl-C stops all three. If one
dies, the launcher says which and why (its last log lines) and stops the rest with exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

import settings

ROOT = Path(__file__).resolve().parent
COLOURS = {"api": "\033[36m", "mcp": "\033[35m", "web": "\033[32m"}
RESET = "\033[0m"
TAIL = 20


@dataclass
class Child:
    name: str
    args: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL))
    reader: asyncio.Task[None] | None = None


def _colour(name: str) -> tuple[str, str]:
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return "", ""
    return COLOURS.get(name, ""), RESET


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    g = settings.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default=None, help="bind address for all three (default 127.0.0.1)")
    p.add_argument("--api-port", type=int, default=int(g("API_PORT")))
    p.add_argument("--mcp-port", type=int, default=int(g("MCP_PORT")))
    p.add_argument("--web-port", type=int, default=int(g("WEB_PORT")))
    p.add_argument("--database-url", default=g("DATABASE_URL"))
    p.add_argument("--no-web", action="store_true", help="run the API and MCP server only")
    p.add_argument("--timeout", type=float, default=60, help="seconds each service may take")
    return p.parse_args(argv)


def plan(a: argparse.Namespace) -> list[Child]:
    host = a.host or settings.get("API_HOST")
    mcp_host = a.host or settings.get("MCP_HOST")
    web_host = a.host or settings.get("WEB_HOST")
    local = "127.0.0.1"
    children = [
        Child(
            "api",
            ["api.py", "--host", host, "--port", str(a.api_port)],
            a.api_port,
            {"DATABASE_URL": a.database_url},
        ),
        Child(
            "mcp",
            ["main.py", "--host", mcp_host, "--port", str(a.mcp_port)],
            a.mcp_port,
            {"PRODUCT_API_URL": f"http://{local}:{a.api_port}/api"},
        ),
    ]
    if not a.no_web:
        env = {}
        if "MCP_CONFIG_PATH" not in os.environ and a.mcp_port != int(
            settings.SETTINGS["MCP_PORT"].default
        ):
            # The shipped mcp.json names the default port; point web.py at the one in use.
            cfg = {"mcpServers": {"product-mcp": {"url": f"http://{local}:{a.mcp_port}/mcp"}}}
            path = Path(tempfile.mkdtemp(prefix="product-mcp-")) / "mcp.json"
            path.write_text(json.dumps(cfg, indent=2))
            env["MCP_CONFIG_PATH"] = str(path)
        children.append(
            Child("web", ["web.py", "--host", web_host, "--port", str(a.web_port)], a.web_port, env)
        )
    return children


def ready_block(a: argparse.Namespace) -> str:
    h = "127.0.0.1"
    snippet = json.dumps(
        {"mcpServers": {"product-mcp": {"url": f"http://{h}:{a.mcp_port}/mcp"}}}, indent=2
    )
    lines = [
        "",
        "=" * 64,
        "product-mcp is ready",
        f"  API docs          http://{h}:{a.api_port}/docs",
        f"  MCP (Streamable)  http://{h}:{a.mcp_port}/mcp",
        f"  MCP (SSE)         http://{h}:{a.mcp_port}/sse",
    ]
    if not a.no_web:
        lines.append(f"  Chat page         http://{h}:{a.web_port}/")
    lines += ["", "Cursor / Claude Desktop mcp.json:", snippet, "=" * 64, ""]
    return "\n".join(lines)


class Launcher:
    def __init__(self, children: list[Child], timeout: float, ready: str) -> None:
        self.children = children
        self.timeout = timeout
        self.ready = ready
        self.stopping = asyncio.Event()

    async def _pump(self, child: Child) -> None:
        assert child.proc and child.proc.stdout
        on, off = _colour(child.name)
        prefix = f"{on}{child.name:>3} |{off} "
        async for raw in child.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            child.tail.append(line)
            sys.stdout.write(prefix + line + "\n")
            sys.stdout.flush()

    async def _start(self, child: Child) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **child.env}
        child.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *child.args,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the launcher only; it stops them in order
        )
        child.reader = asyncio.create_task(self._pump(child))
        url = f"http://127.0.0.1:{child.port}/healthz"
        deadline = time.monotonic() + self.timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if child.proc.returncode is not None:
                    raise ChildDied(child)
                try:
                    if (await client.get(url)).status_code < 500:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise ChildDied(child, f"did not answer {url} within {self.timeout:g}s")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)
        try:
            for child in self.children:
                start = asyncio.create_task(self._start(child))
                stop = asyncio.create_task(self.stopping.wait())
                await asyncio.wait({start, stop}, return_when=asyncio.FIRST_COMPLETED)
                if self.stopping.is_set():
                    start.cancel()
                    return 0
                stop.cancel()
                start.result()
            return await self._supervise()
        except ChildDied as died:
            self._report(died)
            return 1
        finally:
            await self._stop_all()

    async def _supervise(self) -> int:
        """Wait for Ctrl-C (exit 0) or the first child to die (exit 1)."""
        waits = {asyncio.create_task(c.proc.wait()): c for c in self.children if c.proc}
        stop = asyncio.create_task(self.stopping.wait())
        sys.stdout.write(self.ready + "\n")
        sys.stdout.flush()
        done, _ = await asyncio.wait({stop, *waits}, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        if stop in done:
            return 0
        stop.cancel()
        raise ChildDied(waits[next(t for t in done if t in waits)])

    def _report(self, died: ChildDied) -> None:
        child = died.child
        code = child.proc.returncode if child.proc else None
        why = died.why or f"exited with code {code}"
        lines = [f"launcher: {child.name} ({child.args[0]}) {why}; stopping the others."]
        if child.tail:
            lines.append(f"launcher: last lines of {child.name}:")
            lines += [f"    {line}" for line in child.tail]
        sys.stderr.write("\n".join(lines) + "\n")

    async def _stop_all(self) -> None:
        for child in reversed(self.children):
            proc = child.proc
            if proc is None:
                continue
            if proc.returncode is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    await asyncio.wait_for(proc.wait(), 10)
                except ProcessLookupError:
                    pass
                except TimeoutError:
                    os.killpg(proc.pid, signal.SIGKILL)
                    await proc.wait()
            if child.reader:
                await asyncio.wait({child.reader}, timeout=2)


class ChildDied(Exception):
    def __init__(self, child: Child, why: str | None = None) -> None:
        super().__init__(child.name)
        self.child, self.why = child, why


def main(argv: Sequence[str] | None = None) -> int:
    a = parse_args(argv)
    children = plan(a)
    busy = [c for c in children if port_in_use(c.args[c.args.index("--host") + 1], c.port)]
    for c in busy:
        var = {"api": "API_PORT", "mcp": "MCP_PORT", "web": "WEB_PORT"}[c.name]
        sys.stderr.write(
            f"launcher: port {c.port} is in use: set {var} or stop the other process\n"
        )
    if busy:
        return 2
    print("product-mcp settings:")
    print(
        settings.summary(
            ["DATABASE_URL", "OPENAI_API_BASE", "LLM_MODEL", "OPENAI_API_KEY"],
            {"DATABASE_URL": a.database_url},
        )
    )
    return asyncio.run(Launcher(children, a.timeout, ready_block(a)).run())


if __name__ == "__main__":
    sys.exit(main())
