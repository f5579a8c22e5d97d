"""Every use of a private part of the `mcp` SDK, in one place, checked when a service starts.

Why: mcp 2.3 has no public hook for what we need: registering `logging/setLevel`, a
per-connection scratch dict, giving each Streamable HTTP session its own event-store view,
telling whether a client session's stream already ended, choosing a session's id (a replica's
tag in it, so a balancer routes it back), and bringing back a session that another replica
opened (restored from Redis: same id, handshake already done). If an SDK release renames one of
them, `check()` stops the service at start-up with one sentence naming it, instead of a
feature failing silently later. `pyproject.toml` pins `mcp` to the range the tests cover.
"""

from __future__ import annotations

import dis
import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from importlib.metadata import version
from types import CodeType
from typing import Any

import anyio

SUPPORTED = ">=2.3,<2.4"
log = logging.getLogger("mcp.sessions")


def _codes(code: CodeType) -> Iterator[CodeType]:
    """A code object and every one nested in it (closures, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _codes(const)


def _assigns(cls: type, attr: str) -> bool:
    """Whether one of the class's own functions still stores `<obj>.<attr>` (annotated or
    not). Read from the bytecode, not the source: parsing each class's module cost every
    start of main.py and web.py 0.25-0.5 s of CPU; this is a few milliseconds."""
    for member in vars(cls).values():
        func = getattr(member, "__func__", member)  # staticmethod / classmethod
        funcs = [func, *(getattr(func, a, None) for a in ("fget", "fset"))]  # property
        for f in funcs:
            code = getattr(f, "__code__", None)
            if code is None:
                continue
            for c in _codes(code):
                if attr in c.co_names and any(
                    i.opname == "STORE_ATTR" and i.argval == attr for i in dis.get_instructions(c)
                ):
                    return True
    return False


def _probes() -> dict[str, Callable[[], bool]]:
    from mcp.client.session import ClientSession
    from mcp.server.connection import Connection
    from mcp.server.lowlevel.server import Server
    from mcp.server.mcpserver import MCPServer
    from mcp.server.runner import serve_connection
    from mcp.server.session import ServerSession
    from mcp.server.streamable_http import StreamableHTTPServerTransport
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher

    return {
        "MCPServer._lowlevel_server": lambda: _assigns(MCPServer, "_lowlevel_server"),
        "Server.add_request_handler": lambda: callable(Server.add_request_handler),
        "ServerSession._connection": lambda: _assigns(ServerSession, "_connection"),
        "StreamableHTTPSessionManager._admit_session": lambda: callable(
            StreamableHTTPSessionManager._admit_session
        ),
        "StreamableHTTPSessionManager._discard_session": lambda: callable(
            StreamableHTTPSessionManager._discard_session
        ),
        "StreamableHTTPSessionManager._server_instances": lambda: _assigns(
            StreamableHTTPSessionManager, "_server_instances"
        ),
        "StreamableHTTPServerTransport._event_store": lambda: _assigns(
            StreamableHTTPServerTransport, "_event_store"
        ),
        "StreamableHTTPSessionManager._session_owners": lambda: _assigns(
            StreamableHTTPSessionManager, "_session_owners"
        ),
        "StreamableHTTPSessionManager._session_creation_lock": lambda: _assigns(
            StreamableHTTPSessionManager, "_session_creation_lock"
        ),
        "StreamableHTTPSessionManager._task_group": lambda: _assigns(
            StreamableHTTPSessionManager, "_task_group"
        ),
        "StreamableHTTPSessionManager._lifespan_state": lambda: _assigns(
            StreamableHTTPSessionManager, "_lifespan_state"
        ),
        "StreamableHTTPServerTransport.mcp_session_id": lambda: _assigns(
            StreamableHTTPServerTransport, "mcp_session_id"
        ),
        "StreamableHTTPServerTransport.idle_scope": lambda: _assigns(
            StreamableHTTPServerTransport, "idle_scope"
        ),
        # quick_replies.py: the SDK's SSE reply to a POST, its writer and what it cleans up.
        "streamable_http.EventSourceResponse": lambda: hasattr(
            importlib.import_module("mcp.server.streamable_http"), "EventSourceResponse"
        ),
        "StreamableHTTPServerTransport._run_sse_writer": lambda: (
            list(inspect.signature(StreamableHTTPServerTransport._run_sse_writer).parameters)
            == ["self", "request_id", "sse_stream_writer", "request_stream_reader", "priming_event"]
        ),
        "StreamableHTTPServerTransport._sse_stream_writers": lambda: _assigns(
            StreamableHTTPServerTransport, "_sse_stream_writers"
        ),
        "StreamableHTTPServerTransport._clean_up_memory_streams": lambda: callable(
            StreamableHTTPServerTransport._clean_up_memory_streams
        ),
        "StreamableHTTPServerTransport._create_json_response": lambda: callable(
            StreamableHTTPServerTransport._create_json_response
        ),
        "runner.serve_connection(connection=)": lambda: (
            "connection" in inspect.signature(serve_connection).parameters
        ),
        "Connection.for_loop": lambda: callable(Connection.for_loop),
        "Connection.session_id": lambda: _assigns(Connection, "session_id"),
        "JSONRPCDispatcher(inline_methods=)": lambda: (
            "inline_methods" in inspect.signature(JSONRPCDispatcher.__init__).parameters
        ),
        "ClientSession._dispatcher": lambda: _assigns(ClientSession, "_dispatcher"),
        "JSONRPCDispatcher._closed": lambda: _assigns(JSONRPCDispatcher, "_closed"),
    }


def missing() -> list[str]:
    """Names of the private SDK parts we rely on that the installed SDK lacks."""
    gone = []
    for name, probe in _probes().items():
        try:
            ok = probe()
        except (AttributeError, ImportError, OSError, TypeError):
            ok = False
        if not ok:
            gone.append(name)
    return gone


def check() -> None:
    """Stop with a sentence if the installed SDK changed under us."""
    gone = missing()
    if gone:
        raise SystemExit(
            f"the installed mcp {version('mcp')} no longer has {', '.join(gone)}, which "
            f"product-mcp relies on: install mcp{SUPPORTED} (uv sync does)"
        )


# --- server side ---------------------------------------------------------------------------


def add_request_handler(
    server: Any, method: str, params_type: type, handler: Callable[..., Awaitable[Any]]
) -> None:
    """Register a request method MCPServer has no decorator for (e.g. logging/setLevel)."""
    server._lowlevel_server.add_request_handler(method, params_type, handler)


def add_server_middleware(server: Any, middleware: Any, outermost: bool = False) -> None:
    """Wrap every inbound message of every connection (the low-level `Server.middleware`);
    `outermost`: before the SDK's own (which unseal a 2026-07-28 `requestState`)."""
    chain = server._lowlevel_server.middleware
    chain.insert(0 if outermost else len(chain), middleware)


async def run_on_streams(server: Any, read_stream: Any, write_stream: Any) -> None:
    """Run an MCPServer's session on streams we built (stdio with our reader: mcp_server/stdio.py);
    `run_stdio_async` builds its own."""
    low = server._lowlevel_server
    await low.run(read_stream, write_stream, low.create_initialization_options())


def initialized(session: Any) -> Any:
    """The connection's `initialized` event (set by `notifications/initialized`), or None."""
    return getattr(getattr(session, "_connection", None), "initialized", None)


def connection_state(session: Any) -> dict[str, Any]:
    """Per-connection scratch dict: a ServerSession is per request, its Connection is not.

    Without it (an SDK without `_connection`), callers get a fresh dict and simply forget.
    """
    state = getattr(getattr(session, "_connection", None), "state", None)
    return state if isinstance(state, dict) else {}


def connection(session: Any) -> Any:
    """The connection behind a (per-request) ServerSession: the object that lives as long as
    the client's session, and can notify it outside a request (live.py's subscriptions)."""
    return session._connection


def session_id_of(connection: Any) -> str | None:
    """The Streamable HTTP session id a connection serves (None: SSE, stdio, stateless)."""
    session_id = getattr(connection, "session_id", None)
    return session_id if isinstance(session_id, str) else None


def wrap_session_lifecycle(
    manager: Any,
    on_admit: Callable[[Any], None],
    on_discard: Callable[[str], None],
) -> None:
    """Call `on_admit(transport)` for each new Streamable HTTP session and `on_discard(id)`
    when one ends, by wrapping the session manager's private admission and discard."""
    admit, discard = manager._admit_session, manager._discard_session

    def admitted(*args: Any, **kwargs: Any) -> Any:
        transport = admit(*args, **kwargs)
        if transport is not None:
            on_admit(transport)
        return transport

    async def discarded(session_id: str, transport: Any) -> None:
        await discard(session_id, transport)
        on_discard(session_id)

    manager._admit_session = admitted
    manager._discard_session = discarded


async def close_session(manager: Any, session_id: str) -> None:
    """End one Streamable HTTP session now, as a DELETE from its client would."""
    transport = manager._server_instances.get(session_id)
    if transport is not None:
        await manager._discard_session(session_id, transport)


_forced_id: ContextVar[str | None] = ContextVar("forced_session_id", default=None)


def mint_session_ids(manager: Any, mint: Callable[[], str | None]) -> None:
    """Give each new Streamable HTTP session the id `mint()` returns (None: the SDK's own).

    Install before `wrap_session_lifecycle`, so its callbacks see the final id. The id is
    changed right after admission, before the session's transport has served anything."""
    admit = manager._admit_session

    def admitted(*args: Any, **kwargs: Any) -> Any:
        transport = admit(*args, **kwargs)
        new = _forced_id.get() or mint()
        if transport is None or not new or new == transport.mcp_session_id:
            return transport
        old = transport.mcp_session_id
        transport.mcp_session_id = new
        manager._server_instances[new] = manager._server_instances.pop(old)
        if old in manager._session_owners:
            manager._session_owners[new] = manager._session_owners.pop(old)
        return transport

    manager._admit_session = admitted
    manager._product_mcp_mints = True


def session_transport(manager: Any, session_id: str) -> Any:
    """The transport serving the Streamable HTTP session `session_id` here, or None."""
    return manager._server_instances.get(session_id)


def held_sessions(manager: Any) -> list[str]:
    """The ids of the Streamable HTTP sessions this process serves right now."""
    return list(manager._server_instances)


def holds_session(manager: Any, session_id: str) -> bool:
    """Whether this process serves the Streamable HTTP session `session_id` right now."""
    return session_id in manager._server_instances


async def restore_session(
    manager: Any, session_id: str, prepare: Callable[[Any], None], requestor: Any = None
) -> bool:
    """Serve `session_id` here, as if its handshake had happened in this process.

    The session is admitted like a new one (limits, and every `wrap_session_lifecycle`
    callback) under the given id; `prepare(connection)` sets what the handshake had set
    (protocol version, client params, `initialized`, state) before any request is read.
    False when the manager is full or not running. Needs `mint_session_ids` installed."""
    if not getattr(manager, "_product_mcp_mints", False) or manager._task_group is None:
        return False
    from mcp.server.connection import Connection
    from mcp.server.runner import serve_connection
    from mcp.shared.jsonrpc_dispatcher import JSONRPCDispatcher

    token = _forced_id.set(session_id)
    try:
        async with manager._session_creation_lock:
            if session_id in manager._server_instances:
                return True
            transport = manager._admit_session(requestor)
    finally:
        _forced_id.reset(token)
    if transport is None:
        return False

    async def run(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with transport.connect() as (read_stream, write_stream):
            task_status.started()
            try:
                idle = transport.idle_scope or anyio.CancelScope()
                with idle:
                    # As the SDK's own session loop (`serve_loop`), with the state restored.
                    dispatcher: Any = JSONRPCDispatcher(
                        read_stream, write_stream, inline_methods=frozenset({"initialize"})
                    )
                    connection = Connection.for_loop(dispatcher, session_id=session_id)
                    prepare(connection)
                    await serve_connection(
                        manager.app,
                        dispatcher,
                        connection=connection,
                        lifespan_state=manager._lifespan_state,
                    )
            except Exception:
                log.exception("restored session %s crashed", session_id[:12])
            finally:
                await manager._discard_session(session_id, transport)

    try:
        await manager._task_group.start(run)
    except BaseException:
        await manager._discard_session(session_id, transport)
        raise
    return True


def set_event_store(transport: Any, store: Any) -> None:
    """Give one session's transport its own event store."""
    transport._event_store = store


# --- client side ---------------------------------------------------------------------------


def client_stream_closed(client: Any) -> bool:
    """Whether a client session's stream has already ended (read defensively)."""
    dispatcher = getattr(client.session, "_dispatcher", None)
    return bool(getattr(dispatcher, "_closed", False))
