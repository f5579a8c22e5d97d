"""The in-process layer: api.py's app, main.py's MCP server and web.py's app inside the test
process, with no ports and no child processes. Contract and validation tests use these;
tests where a process is the point use tests/stack.py.

- `api_app(db)`: api.py's FastAPI app under Starlette's TestClient (which runs its lifespan,
  so the database is created and seeded) on its own SQLite file, or on a database URL
  (`database.fresh()`, tests/databases.py, for SQLite and PostgreSQL).
- `product_api_to(app)`: point main.py's product API client at an in-process API app through
  `httpx.ASGITransport` (restored afterwards: the client is process-wide).
- `shop_in_process(db)`: both of the above at once.
- `in_memory(kind)`: an `mcp.Client` to main.py's MCP server through the SDK's in-memory
  transports: "legacy" is the initialize handshake over memory streams, "modern" the
  2026-07-28 per-request path.
- `web_app(tmp, servers, ...)`: web.py's app served by a thread of this process (streams
  need real HTTP); `in_memory={"shop": server}` gives the named servers sessions to
  in-process servers instead (the stub MCP manager).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any

import httpx
from mcp import Client
from mcp.server.mcpserver import MCPServer
from starlette.testclient import TestClient

from product_mcp.chat.connection import ServerConnection
from product_mcp.chat.elicitation import Elicitations
from product_mcp.chat.mcp_config import ServerConfig
from product_mcp.chat.services import ChatServices
from product_mcp.core.config import Settings
from product_mcp.mcp_server import api as product_api
from product_mcp.mcp_server import mcp as shop_server
from tests.databases import fresh_database
from tests.mcp_helpers import Kind
from tests.servers import ThreadServer
from tests.web_helpers import WEB_SETTINGS, write_config


@contextmanager
def api_app(db: Path | str, **kw: Any) -> Iterator[TestClient]:
    """api.py's app on its own SQLite file (or on a database URL, tests/databases.py),
    served to a TestClient in this process; `kw` go to `create_app` (e.g. admin_token)."""
    from api import create_app

    url = db if isinstance(db, str) else f"sqlite:///{db}"
    with TestClient(create_app(url, **kw)) as client:
        yield client


@contextmanager
def api_on_fresh_database(kind: str, tmp: Path, label: str) -> Iterator[TestClient]:
    """api_app on a database of `kind` of its own (tests/databases.py `fresh_database`: a new
    SQLite file, or a PostgreSQL database dropped afterwards)."""
    with fresh_database(kind, tmp, label) as url, api_app(url) as client:
        yield client


@contextmanager
def product_api_to(app: Any, timeout: float = 10.0) -> Iterator[None]:
    """main.py's tools reach `app` (an in-process api.py app) through httpx.ASGITransport."""
    saved = (product_api.base_url, product_api.timeout, product_api.transport)
    product_api.configure("http://api.test/api", timeout, transport=httpx.ASGITransport(app=app))
    try:
        yield
    finally:
        product_api.configure(*saved)


@contextmanager
def shop_in_process(db: Path) -> Iterator[TestClient]:
    """api.py's app on `db` (the TestClient) with main.py's server wired to it: what
    `in_memory` clients then reach is all in this process."""
    with api_app(db) as api, product_api_to(api.app):
        yield api


def in_memory(kind: Kind, server: MCPServer[Any] = shop_server, **kw: Any) -> Client:
    """An mcp.Client to `server` (main.py's by default) in this process, for `kind`."""
    assert kind != "sse", "SSE is a transport: use a real main.py (tests/stack.py)"
    return Client(server, mode="legacy" if kind == "legacy" else "auto", **kw)


class InMemoryConnection(ServerConnection):
    """web.py's ServerConnection with its session opened in memory to a server object, so
    the manager's own logic (tool list, calls, timeouts) runs unchanged."""

    def __init__(
        self, config: ServerConfig, server: MCPServer[Any], elicitations: Elicitations
    ) -> None:
        super().__init__(config, elicitations=elicitations)
        self.server = server

    @asynccontextmanager
    async def _open_client(self, errlog: IO[str] | None) -> AsyncIterator[Client]:
        client = Client(self.server, mode="legacy", cache=None, **self.client_callbacks())
        async with client:
            yield client


class InProcessWeb(httpx.Client):
    """A client on web.py's app served in this process, with a Service's `url` and `log()`."""

    def __init__(self, url: str, log: list[str], chat: ChatServices | None = None) -> None:
        super().__init__(base_url=url, timeout=30)
        self.url = url
        self._log = log
        self.chat = chat  # the app's services (read-only from the test's thread)

    def log(self) -> str:
        """What web.py logged while it ran (as web.py formats it)."""
        return "\n".join(self._log)


class _Lines(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(self.format(record))


@contextmanager
def web_app(
    tmp: Path,
    servers: dict[str, Any] | None = None,
    *,
    in_memory: dict[str, MCPServer[Any]] | None = None,
    **settings: Any,
) -> Iterator[InProcessWeb]:
    """web.py's app served by a thread of this process (real HTTP, so a stream's events arrive
    while it runs), on an mcp.json of `servers` written to `tmp`; every setting pinned (see
    start_web), `settings` on top. The servers named in `in_memory` are reached in process
    (their mcp.json entry is made up if `servers` has none)."""
    from web import create_app

    entries = dict(servers or {})
    for name in in_memory or {}:
        entries.setdefault(name, {"url": f"http://{name}.in-memory.test/mcp"})
    config = write_config(tmp / "mcp.json", entries)
    pinned = Settings(  # type: ignore[call-arg]
        _env_file=None, **{**WEB_SETTINGS, "MCP_CONFIG_PATH": str(config), **settings}
    )
    chat = ChatServices.from_settings(pinned)
    for name, server in (in_memory or {}).items():
        conns = chat.manager.connections
        conns[name] = InMemoryConnection(conns[name].config, server, chat.elicitations)
    lines: list[str] = []
    handler = _Lines(lines)
    logging.getLogger().addHandler(handler)
    try:
        with (
            ThreadServer(create_app(pinned, chat=chat)) as served,
            InProcessWeb(served.url, lines, chat) as client,
        ):
            yield client
    finally:
        logging.getLogger().removeHandler(handler)
