"""Run an ASGI app under uvicorn the same way in every service, with start-up errors in words.

Why bind first: uvicorn runs the app's lifespan before it binds, so a busy port was reported
as an errno after web.py had already connected to every MCP server. Binding the socket
ourselves first means a busy port is one sentence ("port 8002 is in use: set WEB_PORT or stop
the other process") and nothing starts behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import importlib
import logging
import math
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class PortInUse(SystemExit):
    """The port is taken; the message says which setting moves it."""


def port_arg(value: str) -> int:
    """argparse type for a TCP port: 1..65535, refused with a sentence otherwise."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535, got {port}")
    return port


def bind(host: str, port: int, setting: str) -> socket.socket:
    """A listening-ready socket on host:port, or exit with a sentence naming `setting`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise PortInUse(_bind_error(host, port, setting, e)) from None
    sock.set_inheritable(True)
    return sock


def _bind_error(host: str, port: int, setting: str, e: OSError) -> str:
    if e.errno in (98, 48):  # EADDRINUSE on Linux, macOS
        return f"port {port} is in use: set {setting} or stop the other process"
    if e.errno in (99, 49, -2, -3):  # EADDRNOTAVAIL, or a name that does not resolve
        return f"cannot listen on {host}:{port}: this machine has no such address"
    if e.errno == 13:
        return f"cannot listen on port {port}: permission denied (ports below 1024 need root)"
    return f"cannot listen on {host}:{port}: {e.strerror or e}"


def int_arg(low: int, high: int) -> Callable[[str], int]:
    """argparse type for an integer in low..high, refused with a sentence otherwise (the
    flags take what their settings take: `--workers 0` started, `API_WORKERS=0` did not)."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {value!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {number}")
        return number

    return parse


def seconds_arg(value: str) -> float:
    """argparse type for a positive number of seconds."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, got {value}")
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {value}")
    return seconds


def bind_problem(host: str, port: int, setting: str) -> str | None:
    """Why host:port could not be bound right now, in a sentence naming `setting`; None if it
    could (the launcher checks all three first)."""
    try:
        bind(host, port, setting).close()
    except PortInUse as e:
        return str(e)
    return None


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol plus deadlines for a request's headers and for its body, and
    caps on the connections and the slow bodies one client address may hold open.

    uvicorn waits forever for headers, so 20,100 connections that never finished theirs took
    every file descriptor of main.py and new clients were reset until they left. Here a
    connection that has not sent a whole request head within `header_timeout` seconds (from
    connecting, or from the first byte of a later request) is closed. The same held for bodies
    (found from outside): 1,000 requests from one client whose bodies never came held every
    connection a service accepts, and everyone else got 503 for as long as they liked. A body
    must now arrive within `body_timeout` seconds of its headers; one still unfinished after
    SLOW_BODY seconds counts as slow, and a client address may hold at most SLOW_BODIES_PER_CLIENT
    slow ones (in this process: per worker) before the connection of any more is closed. (Only
    slow ones count: hundreds of requests at once from one address have their heads and bodies
    arrive apart, but within moments; an upload over a slow link counts, and its deadline is
    BODY_TIMEOUT.) A connection out of time is answered 408 with the reason (RFC 9110 15.5.9), and
    closed (silently if it never sent a byte, or if a reply to an earlier request on it is still
    in progress: a 408 there would be read as that reply). And an address may hold
    at most `per_client` open connections (MAX_CONNECTIONS_PER_CLIENT; this machine's own are
    exempt): one opening connections faster than the deadlines close them filled
    MAX_CONNECTIONS and locked everyone else out (found in review); more are closed at once.
    """

    header_timeout = 10.0
    body_timeout = 30.0
    per_client = 256  # open connections one address may hold (LOCAL_ADDRESSES: any number)
    # Called once the server starts shutting down: uvicorn waits for open responses, so an
    # app with endless streams (api.py's change feed) ends them here.
    on_shutdown: ClassVar[list[Callable[[], None]]] = []
    # This process's open connections, and slow bodies being received, by client address.
    open_by_address: ClassVar[dict[str, int]] = {}
    slow_bodies: ClassVar[dict[str, int]] = {}
    _timer: asyncio.TimerHandle | None = None
    _slow_from: str | None = None  # the address this connection's slow body counts for
    _counted: str | None = None  # the address this connection counts for in `open_by_address`

    def shutdown(self) -> None:
        for callback in HeaderTimeoutProtocol.on_shutdown:
            callback()
        super().shutdown()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._running: list[Any] = []  # replies in progress with a request queued behind them
        super().connection_made(transport)
        address = self.client[0] if self.client else None
        if address is not None and address not in LOCAL_ADDRESSES:
            held = self.open_by_address.get(address, 0)
            if held >= self.per_client:
                # One address opening connections faster than the deadlines close them
                # could fill MAX_CONNECTIONS and lock everyone else out (found in review).
                transport.close()
                return
            self.open_by_address[address] = held + 1
            self._counted = address
        self._arm(self.header_timeout, self._too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout, self._head_too_slow)

    def on_headers_complete(self) -> None:
        self._disarm()
        # A pipelined request waits behind the one before it (uvicorn stops reading until
        # that one is answered): its body cannot come yet, so its clock does not run.
        queued = self.cycle is not None and not self.cycle.response_complete
        if self._has_body() and not queued:
            if self.body_timeout <= SLOW_BODY:
                self._arm(self.body_timeout, self._body_too_slow)
            else:
                self._arm(SLOW_BODY, self._body_is_slow)
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not before:  # not for an upgrade
            self.cycle.transport = OneSendHead(self.transport, self.loop)  # type: ignore[assignment]
            if before is not None and not before.response_complete:
                # A reply still going, with this one queued (those since answered dropped).
                self._running = [c for c in self._running if not c.response_complete]
                self._running.append(before)

    def connection_lost(self, exc: Exception | None) -> None:
        # uvicorn tells only the connection's last request that its client left: a reply still
        # streaming in front of a pipelined request wrote on forever (found from outside).
        for cycle in self._running:
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        self._running = []
        self._body_done()
        address, self._counted = self._counted, None
        if address is not None:
            _less(self.open_by_address, address)
        super().connection_lost(exc)

    def on_message_complete(self) -> None:
        self._body_done()
        super().on_message_complete()

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return value.strip() not in (b"0", b"")
            if name == b"transfer-encoding":
                return True
        return False

    def _body_is_slow(self) -> None:
        address = self.client[0] if self.client else "?"
        slow = self.slow_bodies.get(address, 0)
        if slow >= SLOW_BODIES_PER_CLIENT:
            # The app sees the client leave; nothing was read whole.
            why = f"this address is already sending {slow} request bodies slowly"
            return self._too_slow(why if self._may_answer(True) else "")
        self.slow_bodies[address] = slow + 1
        self._slow_from = address
        self._arm(self.body_timeout - SLOW_BODY, self._body_too_slow)

    def _body_done(self) -> None:
        self._disarm()
        address, self._slow_from = self._slow_from, None
        if address is not None:
            _less(self.slow_bodies, address)

    def _arm(self, seconds: float, then: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, then)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_too_slow(self) -> None:
        why = f"the request's headers did not all arrive within {self.header_timeout:g} s"
        self._too_slow(why if self._may_answer(False) else "")

    def _body_too_slow(self) -> None:
        why = f"the request's body did not all arrive within {self.body_timeout:g} s"
        self._too_slow(why if self._may_answer(True) else "")

    def _may_answer(self, body: bool) -> bool:
        """Whether a 408 would be this connection's next reply: for a body, its own request's
        reply has not begun; for headers, no reply is in progress (one to a request before,
        still being worked on or streamed, would be cut off, not answered out of turn)."""
        if body:
            return self.cycle is not None and not self.cycle.response_started
        return self.cycle is None or self.cycle.response_complete

    def _too_slow(self, why: str = "") -> None:
        """Close the connection; with a 408 saying `why` if one is given, so a client that
        reads before it writes again learns what happened (one still sending may see only the
        connection reset, as before; nginx closes without a word)."""
        if self.transport.is_closing():
            return
        if why:
            text = f"408 Request Timeout: {why}.\n".encode()
            head = "HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
            head += f"connection: close\r\ncontent-length: {len(text)}\r\n\r\n"
            self.transport.write(head.encode("latin-1") + text)
        self.transport.close()


class OneSendHead:
    """A response's transport that holds its first write (the status line and headers) until
    the next write of the same loop turn, so head and body leave in one send.

    Why: uvicorn writes the head and then the body with a send each, so every answer cost two
    system calls and two TCP segments, and the client woke up twice to read it. Held only to the
    end of the loop turn, so a streaming response's head is not delayed. A `100 Continue` goes
    out at once and is not taken for the head. Writes once the connection is closing are
    dropped: uvicorn marks only a connection's last request as disconnected, so a stream with a
    request pipelined behind it kept writing to the closed connection, and uvloop raised
    (a traceback in the log at every heartbeat; found from outside)."""

    __slots__ = ("_head", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None
        self._held = False  # whether the first write has been seen

    def write(self, data: bytes) -> None:
        if self._transport.is_closing():
            return
        if not self._held:
            if data.startswith(b"HTTP/1.1 100 "):
                return self._transport.write(data)
            self._held = True
            self._head = data
            self._loop.call_soon(self._flush)
            return
        head, self._head = self._head, None
        if head is None:
            self._transport.write(data)
        elif len(data) <= ONE_SEND_MAX:
            self._transport.write(head + data)
        else:
            self._transport.write(head)
            self._transport.write(data)

    def _flush(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


ONE_SEND_MAX = 64 * 1024  # a longer body is not copied behind its head
SLOW_BODY = 2.0  # seconds after its headers when a body still unfinished counts as slow
SLOW_BODIES_PER_CLIENT = 32
# This machine: its own tools, the tests, the bench and a reverse proxy in front all connect
# from here, often by the hundred; they are not held to MAX_CONNECTIONS_PER_CLIENT.
LOCAL_ADDRESSES = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})


def _less(counts: dict[str, int], address: str) -> None:
    left = counts.get(address, 1) - 1
    if left > 0:
        counts[address] = left
    else:
        counts.pop(address, None)


def serve(app: Any, host: str, port: int, setting: str, banner: str = "", **options: Any) -> None:
    """Bind, print `banner` (only once the port is ours: it named the address it would serve
    before "port N is in use"), then run uvicorn on that socket (lifespan and all) until
    stopped."""
    sock = bind(host, port, setting)
    if banner:
        print(banner, flush=True)
    config = uvicorn.Config(app, host=host, port=port, **options)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    if not server.started:
        sys.exit(3)  # the lifespan failed: uvicorn has already logged why (as uvicorn.run)


def serve_workers(
    app_path: str, host: str, port: int, setting: str, banner: str, workers: int, **options: Any
) -> None:
    """uvicorn's supervisor with `workers` processes of `app_path` ("module:attribute"), each
    forked from this process once it has imported the app, as gunicorn's `--preload` does.

    Why fork: uvicorn spawns its workers, and a spawned worker is a fresh interpreter that
    imports everything again (~1.5 s of CPU each; 4 at once on 2 cores missed uvicorn's
    health check and were restarted in a loop). A forked one starts in milliseconds and shares
    the imported code's memory. Nothing is open at that point (the database opens in each
    worker's lifespan). uvicorn has no setting for it: its private `_subprocess.spawn` is
    swapped for the fork context while the supervisor runs; if a release drops it, the workers
    are spawned as before, with one line in the log."""
    bind(host, port, setting).close()  # a busy port is a sentence, not errno
    print(banner, flush=True)
    importlib.import_module(app_path.partition(":")[0])
    with _forked_workers():
        uvicorn.run(app_path, host=host, port=port, workers=workers, **options)


class _ForkedWorker(multiprocessing.get_context("fork").Process):  # type: ignore[misc]
    """A worker forked from uvicorn's supervisor, which has caught every signal by then:
    the worker starts with Python's default handlers, as a spawned one would (uvicorn's server
    then installs its own for SIGINT and SIGTERM).

    A worker also goes when its supervisor dies (kill -9): found from outside, orphaned
    workers kept serving the port with nothing watching them, and kept the launcher's pipe
    open, so the launcher never learnt that api.py had died (Python 3.11's asyncio reports
    a process's end only once its pipes close)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._supervisor = os.getpid()

    def run(self) -> None:
        from uvicorn.supervisors.multiprocess import SIGNALS

        for sig in SIGNALS:
            default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, default)
        # After the reset: a SIGTERM from the supervisor's death must end this process, not
        # land in the supervisor's inherited handler, which only queues it.
        arrange = die_with(self._supervisor)
        if arrange is not None:
            arrange()
        super().run()


PR_SET_PDEATHSIG = 1


def _libc_prctl() -> Any:
    """libc's prctl, looked up now: in a forked child only the call itself may run."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def die_with(parent: int) -> Callable[[], None] | None:
    """What a child of `parent` runs first to be sent SIGTERM when `parent` dies (and to end at
    once if it died already); None where the kernel has no such call (not Linux)."""
    if _PRCTL is None:
        return None

    def arrange() -> None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return arrange


class _ForkContext:
    Process = _ForkedWorker


@contextmanager
def _forked_workers() -> Iterator[None]:
    from uvicorn import _subprocess

    code = getattr(getattr(_subprocess, "get_subprocess", None), "__code__", None)
    if not hasattr(_subprocess, "spawn") or code is None or "spawn" not in code.co_names:
        logging.getLogger("uvicorn.error").warning(
            "this uvicorn has no _subprocess.spawn: its workers are spawned, not forked"
        )
        yield
        return
    spawn = _subprocess.spawn
    _subprocess.spawn = _ForkContext  # type: ignore[assignment]
    try:
        yield
    finally:
        _subprocess.spawn = spawn


@contextmanager
def asyncio_named() -> Iterator[None]:
    """While the block runs (an app's lifespan: the server's life), the event loop's thread
    tells sniffio it runs asyncio, through sniffio's own setting for that (`thread_local`).

    anyio asks sniffio which event loop it runs on for every cancel scope, timeout and
    checkpoint, and httpx, httpcore, openai and the MCP SDK make those for every read and
    write: ~100 times per chat turn in web.py. Without the setting, sniffio finds out each time
    by importing asyncio again and asking for the current task (on Python 3.11, a `getpid`
    system call). The answer is the same for the whole life of the thread. web.py's and
    main.py's lifespans use it."""
    try:
        import sniffio
    except ImportError:  # anyio then asks asyncio itself
        yield
        return
    previous = sniffio.thread_local.name
    sniffio.thread_local.name = "asyncio"
    try:
        yield
    finally:
        sniffio.thread_local.name = previous
