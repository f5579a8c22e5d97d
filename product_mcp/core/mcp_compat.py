"""Every use of a private part of the `mcp` SDK, in one place, checked when a service starts.

Why: mcp 2.3 has no public hook for four things we need (registering `logging/setLevel`, a
per-connection scratch dict, giving each Streamable HTTP session its own event-store view, and
telling whether a client session's stream already ended). If an SDK release renames one of
them, `check()` stops the service at start-up with one sentence naming it, instead of a
feature failing silently later. `pyproject.toml` pins `mcp` to the range the tests cover.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

SUPPORTED = ">=2.3,<2.4"


def _assigns(cls: type, attr: str) -> bool:
    """Whether the class's source still assigns `self.<attr>` somewhere (annotated or not)."""
    return re.search(rf"self\.{attr}\s*(:[^=\n]*)?=[^=]", inspect.getsource(cls)) is not None


def _probes() -> dict[str, Callable[[], bool]]:
    from mcp.client.session import ClientSession
    from mcp.server.lowlevel.server import Server
    from mcp.server.mcpserver import MCPServer
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


def add_server_middleware(server: Any, middleware: Any) -> None:
    """Wrap every inbound message of every connection (the low-level `Server.middleware`)."""
    server._lowlevel_server.middleware.append(middleware)


def initialized(session: Any) -> Any:
    """The connection's `initialized` event (set by `notifications/initialized`), or None."""
    return getattr(getattr(session, "_connection", None), "initialized", None)


def connection_state(session: Any) -> dict[str, Any]:
    """Per-connection scratch dict: a ServerSession is per request, its Connection is not.

    Without it (an SDK without `_connection`), callers get a fresh dict and simply forget.
    """
    state = getattr(getattr(session, "_connection", None), "state", None)
    return state if isinstance(state, dict) else {}


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


def set_event_store(transport: Any, store: Any) -> None:
    """Give one session's transport its own event store."""
    transport._event_store = store


# --- client side ---------------------------------------------------------------------------


def client_stream_closed(client: Any) -> bool:
    """Whether a client session's stream has already ended (read defensively)."""
    dispatcher = getattr(client.session, "_dispatcher", None)
    return bool(getattr(dispatcher, "_closed", False))
