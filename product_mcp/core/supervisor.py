"""Supervise the launcher's child processes: start in order, health-check, stream their logs
with a coloured prefix, restart a dead MCP replica, and stop them all in reverse order.

Why apart from launch.py: launch.py is the readable plan (which services, which ports, which
config); this is the machinery that keeps them running, and it is the same for one process or
N replicas behind nginx.

Why each child dies with the launcher: the children run in their own sessions (so Ctrl-C
reaches the launcher alone, which stops them in order), and a launcher killed outright
(`kill -9`, the OOM killer) left them running and holding the ports. On Linux each asks the
kernel for SIGTERM when the launcher goes (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx

from product_mcp.core.config import ROOT
from product_mcp.core.serve import PortInUse, bind, die_with

SERVER_NAME = "product-mcp"  # the entry of mcp.json the launcher points at its own main.py
COLOURS = {"api": "\033[36m", "mcp": "\033[35m", "web": "\033[32m", "lb": "\033[33m"}
RESET = "\033[0m"
TAIL = 20
RESTARTS = 5  # a replica that dies this many times within RESTART_WINDOW is left dead
RESTART_WINDOW = 30.0  # seconds; a crash loop stops, a rare death is always healed


@dataclass
class Child:
    """One process the launcher runs. A replica behind the balancer is `hand_over`: its port is
    picked by the launcher, which holds the listening socket (`sock`) from that moment, passes
    it at the first start (`main.py --fd N`) and closes its own copy, so a dead replica's port
    refuses connections; each restart binds the same port again and passes that."""

    name: str
    args: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    reach: str = "127.0.0.1"
    host: str = "127.0.0.1"  # the address it binds (checked free before anything starts)
    command: list[str] | None = None  # a program other than `python <args>` (nginx)
    hand_over: bool = False  # bind host:port here and pass the socket (`--fd N`) at each start
    sock: socket.socket | None = None  # bound when the port was picked, for the first start
    restarts: deque[float] = field(default_factory=lambda: deque(maxlen=RESTARTS))
    proc: asyncio.subprocess.Process | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL))
    reader: asyncio.Task[None] | None = None


def _colour(name: str) -> tuple[str, str]:
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return "", ""
    return COLOURS.get(name.rstrip("0123456789"), ""), RESET


def may_restart(child: Child) -> bool:
    """Only replicas behind the balancer are healed, and not in a crash loop."""
    if "MCP_REPLICA_TAG" not in child.env:
        return False
    recent = child.restarts
    return len(recent) < RESTARTS or time.monotonic() - recent[0] > RESTART_WINDOW


class Launcher:
    def __init__(self, children: list[Child], timeout: float, ready: Any) -> None:
        self.children = children
        self.timeout = timeout
        self.ready = ready
        self.stopping = asyncio.Event()
        self.warning = ""

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
        command = child.command or [sys.executable, *child.args]
        sock, child.sock = child.sock, None
        if child.hand_over and sock is None:  # a restart: the port the balancer knows, again
            try:
                sock = bind(child.host, child.port, "MCP_PORT")
            except PortInUse:
                why = f"could not be started again: port {child.port} is taken"
                raise ChildDied(child, why) from None
        fds = () if sock is None else (sock.fileno(),)
        if sock is not None:
            command = [*command, "--fd", str(sock.fileno())]
        try:
            child.proc = await asyncio.create_subprocess_exec(
                *command,
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the launcher only; it stops them in order
                preexec_fn=die_with(os.getpid()),
                pass_fds=fds,
            )
        finally:
            if sock is not None:
                sock.close()  # the child's now: a dead replica's port must refuse connections
        child.reader = asyncio.create_task(self._pump(child))
        url = f"http://{child.reach}:{child.port}/healthz"
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
            for stage in self._stages():
                start = asyncio.ensure_future(asyncio.gather(*map(self._start, stage)))
                stop = asyncio.create_task(self.stopping.wait())
                await asyncio.wait({start, stop}, return_when=asyncio.FIRST_COMPLETED)
                if self.stopping.is_set():
                    start.cancel()
                    return 0
                stop.cancel()
                start.result()
            await self._check_web_connected()
            return await self._supervise()
        except ChildDied as died:
            self._report(died)
            return 1
        finally:
            await self._stop_all()

    def _stages(self) -> list[list[Child]]:
        """Children in start order; the replicas behind the balancer start together."""
        stages: list[list[Child]] = []
        for child in self.children:
            replica = "MCP_REPLICA_TAG" in child.env
            if replica and stages and "MCP_REPLICA_TAG" in stages[-1][0].env:
                stages[-1].append(child)
            else:
                stages.append([child])
        return stages

    async def _check_web_connected(self) -> None:
        """Say "ready" only once web.py has a session to our main.py, or say plainly why not."""
        web = next((c for c in self.children if c.name == "web"), None)
        if web is None:
            return
        url = f"http://{web.reach}:{web.port}/api/servers"
        status: dict[str, Any] = {}
        deadline = time.monotonic() + min(self.timeout, 20)
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    servers = (await client.get(url)).json()["servers"]
                    status = next((s for s in servers if s["name"] == SERVER_NAME), {})
                    if status.get("status") == "connected":
                        return
                await asyncio.sleep(0.2)
        why = status.get("error") or status.get("status") or "no answer"
        self.warning += (
            f"\nlauncher: warning: the chat page is NOT connected to the MCP server at "
            f"{status.get('url', '?')}: {why}\n"
        )

    async def _supervise(self) -> int:
        """Wait for Ctrl-C (exit 0) or the first child to die (exit 1); a replica behind
        the balancer that dies is started again instead (unless it died RESTARTS times within
        RESTART_WINDOW seconds: a crash loop)."""
        waits = {asyncio.create_task(c.proc.wait()): c for c in self.children if c.proc}
        stop = asyncio.create_task(self.stopping.wait())
        ready = self.ready() if callable(self.ready) else self.ready
        sys.stdout.write(ready + self.warning + "\n")
        sys.stdout.flush()
        while True:
            done, _ = await asyncio.wait({stop, *waits}, return_when=asyncio.FIRST_COMPLETED)
            died = [waits.pop(t) for t in done if t in waits]
            if stop in done or not all(may_restart(c) for c in died):
                break
            for child in died:
                await self._restart(child)
                waits[asyncio.create_task(child.proc.wait())] = child  # type: ignore[union-attr]
        for task in waits:
            task.cancel()
        if stop in done:
            return 0
        stop.cancel()
        raise ChildDied(died[0])

    async def _restart(self, child: Child) -> None:
        code = child.proc.returncode if child.proc else None
        child.restarts.append(time.monotonic())
        sys.stderr.write(
            f"launcher: {child.name} (main.py {child.env['MCP_REPLICA_TAG']}) exited with code "
            f"{code}; the other replicas take its sessions; starting it again\n"
        )
        if child.reader:
            await asyncio.wait({child.reader}, timeout=2)
        await self._start(child)

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
