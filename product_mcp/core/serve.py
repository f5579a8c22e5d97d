"""Run an ASGI app under uvicorn the same way in every service, with start-up errors in words.

Why bind first: uvicorn runs the app's lifespan before it binds, so a busy port was reported
as an errno after web.py had already connected to every MCP server. Binding the socket
ourselves first means a busy port is one sentence ("port 8002 is in use: set WEB_PORT or stop
the other process") and nothing starts behind it.
"""

from __future__ import annotations

import argparse
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
from typing import Any

import uvicorn


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
    return sock  # not inheritable: a stdio server web.py starts must not hold its port


def _bind_error(host: str, port: int, setting: str, e: OSError) -> str:
    if e.errno in (98, 48):  # EADDRINUSE on Linux, macOS
        move = f"pass another {setting}" if setting.startswith("--") else f"set {setting}"
        return f"port {port} is in use: {move} or stop the other process"
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


def inherited(fd: int, host: str, port: int) -> socket.socket:
    """The socket a launcher bound for us (`--fd`: it holds the port from its pick to our
    start, so nothing else takes it meanwhile), checked to be a TCP socket on host:port."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as e:
        raise SystemExit(f"--fd {fd}: not an open socket ({e.strerror or e})") from None
    try:
        where = tuple(sock.getsockname()[:2]) if sock.type == socket.SOCK_STREAM else None
    except OSError:
        where = None
    if where != (host, port):
        sock.close()
        raise SystemExit(f"--fd {fd}: not a TCP socket bound to {host}:{port}")
    sock.set_inheritable(False)  # ours alone now, as bind()'s
    return sock


def port_given(given: int | None, default: int, flag: str, setting: str) -> tuple[int, str]:
    """The port to bind and what moves it: the flag when the command line gave it (it wins
    over the setting, so "set API_PORT" was advice that could not help)."""
    return (default, setting) if given is None else (given, flag)


def bind_problem(host: str, port: int, setting: str) -> str | None:
    """Why host:port could not be bound right now, in a sentence naming `setting`; None if it
    could (the launcher checks all three first)."""
    try:
        bind(host, port, setting).close()
    except PortInUse as e:
        return str(e)
    return None


def serve(
    app: Any,
    host: str,
    port: int,
    setting: str,
    banner: str = "",
    fd: int | None = None,
    **options: Any,
) -> None:
    """Bind (or take the launcher's socket, `fd`), print `banner` (only once the port is ours:
    it named the address it would serve before "port N is in use"), then run uvicorn on that
    socket (lifespan and all) until stopped."""
    sock = bind(host, port, setting) if fd is None else inherited(fd, host, port)
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
