"""The MCP server's HTTP app: Streamable HTTP on /mcp and SSE on /sse in one Starlette app.

Why one process for both: every client config that already exists (`.../sse` from the
tutorial, `.../mcp` from newer clients) keeps working without a restart. DNS-rebinding
protection stays on for any bind address (the SDK turns it off off loopback).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from product_mcp.core import mcp_compat
from product_mcp.core.config import Transport
from product_mcp.core.middleware import ANY_ADDRESS, LOOPBACK_HOSTS
from product_mcp.core.serve import asyncio_named
from product_mcp.core.slow_readers import SlowReaderCutoff
from product_mcp.mcp_server.api_client import api
from product_mcp.mcp_server.event_store import InMemoryEventStore, scope_per_session
from product_mcp.mcp_server.guard import PEEKED, JsonRpcGuard
from product_mcp.mcp_server.middleware import (
    STREAM_PATHS,
    BearerAuth,
    FinishResponses,
    TrimHeaderValues,
)
from product_mcp.mcp_server.protocol import HANDSHAKE_GRACE_S, HandshakeRule
from product_mcp.mcp_server.quick_replies import install_quick_replies
from product_mcp.mcp_server.replicas import ReplicaPaths, session_minter
from product_mcp.mcp_server.resources import live
from product_mcp.mcp_server.server import bus, mcp
from product_mcp.mcp_server.sessions import SessionRegistry

if TYPE_CHECKING:  # these import redis: only a server with REDIS_URL loads them
    from product_mcp.mcp_server.redis_events import RedisEventStore
    from product_mcp.mcp_server.redis_link import RedisLink
    from product_mcp.mcp_server.session_records import SharedSessions

# Replay window for clients that lost their stream, and how soon they should reconnect (ms).
MAX_EVENTS = 10_000
RETRY_MS = 1_000
# How long a resumed stream waits for a still-running request's next event (event_store.py).
FOLLOW_S = 60


@dataclass
class Config:
    """How this process serves: the settings in force plus main.py's command-line flags."""

    host: str = "127.0.0.1"
    port: int = 8083
    port_setting: str = "MCP_PORT"  # what moves the port: the flag, if given (core/serve)
    fd: int | None = None  # a socket bound to host:port by launch.py (core/serve.inherited)
    transport: Transport = "both"
    stateless: bool = False
    json_response: bool = False
    allowed_hosts: list[str] = field(default_factory=list)
    auth_token: str | None = None
    access_log: bool = False
    max_sessions: int = 10_000
    max_sessions_per_client: int = 100
    max_subscriptions: int = 1000  # resources/subscribe URIs per legacy session (live.py)
    init_timeout: float = 30.0
    handshake_grace: float = HANDSHAKE_GRACE_S  # a request's wait for a late `initialized`
    session_idle_timeout: float = 1800.0
    send_timeout: float = 30.0
    quick_reply: float = 0.2  # seconds an answer may take and still go out as JSON
    replica_tag: str = ""  # behind the balancer: in session ids and the SSE message path
    redis_url: str = ""  # set: sessions and replay events shared in Redis (shared_sessions.py)
    redis_prefix: str = "product-mcp:"
    redis_event_ttl: float = 900.0
    redis_session_event_bytes: int = 8 * 1024 * 1024
    require_handshake: bool | None = None  # None: unless redis_url (handshake_required)


def security_settings(cfg: Config) -> TransportSecuritySettings:
    """DNS-rebinding protection that stays on for any bind address (the SDK drops it off loopback).

    Allowed: the localhost forms of the bound port, the bound address itself, and any extra
    names, each with or without the port (a reverse proxy may present `shop.example.com`).
    """
    names = [*LOOPBACK_HOSTS]
    if cfg.host not in (*ANY_ADDRESS, *LOOPBACK_HOSTS, "::1"):
        names.append(f"[{cfg.host}]" if ":" in cfg.host else cfg.host)
    # Bare names too: that is the Host a client sends for port 80 (or behind a proxy).
    hosts: list[str] = [f"{n}:{cfg.port}" for n in names] + names
    origins: list[str] = [f"http://{n}:{cfg.port}" for n in names] + [f"http://{n}" for n in names]
    for name in (n.lower() for n in cfg.allowed_hosts):  # compared with lower-cased headers
        hosts += [name, f"{name}:{cfg.port}"]
        origins += [f"{s}://{name}" for s in ("http", "https")]
        origins += [f"{s}://{name}:{cfg.port}" for s in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


async def healthz(_: Request) -> Response:
    """Open without a token (for probes and the launcher), so it tells nothing but liveness."""
    return JSONResponse({"status": "ok"})


def build_app(cfg: Config) -> Starlette:
    """The HTTP app: /mcp and/or /sse + /messages/, /healthz, CORS and optional bearer auth.

    Everything per app comes from `cfg` (this app's own session manager, handshake rule), so
    two apps built in one process do not change each other.
    """
    security = security_settings(cfg)
    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"])]
    streamable = cfg.transport in ("both", "streamable-http")
    sessions: SessionRegistry | None = None
    manager: StreamableHTTPSessionManager | None = None
    link: RedisLink | None = None
    events: RedisEventStore | None = None
    shared: SharedSessions | None = None
    live.subscribers.limit = cfg.max_subscriptions  # per process, as the follower
    if cfg.redis_url:
        from product_mcp.mcp_server.redis_events import RedisEventStore
        from product_mcp.mcp_server.redis_link import RedisLink

        link = RedisLink(cfg.redis_url, cfg.redis_prefix)
        if streamable and not cfg.stateless:
            ttl, size = cfg.redis_event_ttl, cfg.redis_session_event_bytes
            events = RedisEventStore(link, ttl, size, FOLLOW_S)
    if streamable:
        more, manager = _streamable_routes(cfg, security, events)
        routes += more
        if not cfg.stateless:
            sessions = SessionRegistry(
                cfg.max_sessions_per_client, cfg.max_sessions, cfg.init_timeout
            )
            sessions.attach(manager)
    if cfg.transport in ("both", "sse"):
        routes += mcp.sse_app(transport_security=security, host=cfg.host).routes
    if events is not None and link is not None and manager is not None:
        shared = _shared(cfg, link)

    middleware = _middleware(cfg, security, shared, events, sessions, manager)
    lifespan = _lifespan(link, manager, sessions, shared)
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.sessions = sessions
    return app


def _lifespan(
    link: RedisLink | None,
    manager: StreamableHTTPSessionManager | None,
    sessions: SessionRegistry | None,
    shared: SharedSessions | None,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """What the app opens at start and closes at exit: the API client, the Redis link, the
    session manager, the change-feed follower (and the subscriptions kept in shared session
    records), the session sweeper and the listen relay."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # A mounted app's lifespan never runs, so the session manager is entered here.
        async with AsyncExitStack() as stack:
            stack.enter_context(asyncio_named())  # anyio's loop lookups (core/serve.py)
            await stack.enter_async_context(api.open())
            if link is not None:
                link.open()
                stack.push_async_callback(link.close)
            if manager is not None:
                await stack.enter_async_context(manager.run())
            if live.start(api.base_url):  # one change-feed follower per process (live.py)
                stack.push_async_callback(live.stop)
            if shared is not None and live.keep(shared):  # subscriptions in session records
                stack.callback(live.unkeep)
            async with anyio.create_task_group() as tg:
                if sessions is not None:
                    tg.start_soon(sessions.sweep_forever)
                if link is not None and bus.attach(link):  # listen events to every replica
                    stack.callback(bus.detach)
                    tg.start_soon(bus.relay)
                yield
                tg.cancel_scope.cancel()

    return lifespan


def _middleware(
    cfg: Config,
    security: TransportSecuritySettings,
    shared: SharedSessions | None,
    events: RedisEventStore | None,
    sessions: SessionRegistry | None,
    manager: StreamableHTTPSessionManager | None,
) -> list[Middleware]:
    """The middleware stack, outermost first."""
    middleware = [_cors(security)]
    if cfg.auth_token:
        middleware.append(Middleware(BearerAuth, token=cfg.auth_token))
    middleware.append(Middleware(TrimHeaderValues))
    required = handshake_required(cfg)
    middleware.append(Middleware(HandshakeRule, required=required, grace=cfg.handshake_grace))
    if cfg.replica_tag:
        middleware.append(Middleware(ReplicaPaths, tag=cfg.replica_tag))
    if shared is not None and events is not None and manager is not None:
        middleware.append(_sharing(shared, events, sessions, manager))
    middleware.append(Middleware(JsonRpcGuard, sessions=sessions))
    middleware.append(Middleware(SlowReaderCutoff, timeout=cfg.send_timeout, streams=STREAM_PATHS))
    session_of = functools.partial(mcp_compat.session_transport, manager) if manager else None
    middleware.append(Middleware(FinishResponses, peeked_key=PEEKED, session_of=session_of))
    return middleware


def handshake_required(cfg: Config) -> bool:
    """Whether requests before `notifications/initialized` are refused (protocol.py): yes,
    unless sessions are shared between replicas (REDIS_URL), where a balancer may hand a
    session's notification to another replica than its next request; `cfg` may say."""
    if cfg.require_handshake is not None:
        return cfg.require_handshake
    return not cfg.redis_url


def _shared(cfg: Config, link: RedisLink) -> SharedSessions:
    from product_mcp.mcp_server.session_records import SharedSessions

    return SharedSessions(link, cfg.session_idle_timeout)


def _sharing(
    shared: SharedSessions,
    events: RedisEventStore,
    registry: SessionRegistry | None,
    manager: StreamableHTTPSessionManager,
) -> Middleware:
    """Sessions recorded in Redis and restored from it by any replica (shared_sessions.py),
    their subscriptions back with this process's follower (live.py)."""
    from product_mcp.mcp_server.shared_sessions import SessionSharing

    return Middleware(
        SessionSharing,
        sessions=shared,
        events=events,
        registry=registry,
        manager=lambda: manager,
        subscribers=live.subscribers,
        bus=bus,
    )


def _streamable_routes(
    cfg: Config, security: TransportSecuritySettings, shared: RedisEventStore | None
) -> tuple[list[BaseRoute], StreamableHTTPSessionManager]:
    """/mcp, with a replay store (Redis's when shared) scoped per session unless stateless,
    and the session manager this app's /mcp uses (its own: `mcp.session_manager` is only the
    latest one built)."""
    store: Any = None
    install_quick_replies(cfg.quick_reply)
    if not cfg.stateless:
        store = shared or InMemoryEventStore(MAX_EVENTS, FOLLOW_S)
    http_app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        json_response=cfg.json_response,
        stateless_http=cfg.stateless,
        event_store=store,
        retry_interval=RETRY_MS,
        transport_security=security,
        host=cfg.host,
        session_idle_timeout=cfg.session_idle_timeout,
        max_sessions=cfg.max_sessions,
    )
    manager = mcp.session_manager
    if not cfg.stateless:
        # First: the lifecycle callbacks installed after it see the final id.
        mcp_compat.mint_session_ids(manager, session_minter(cfg.replica_tag))
    if store is not None:
        scope_per_session(manager, store)
    return list(http_app.routes), manager


def _cors(security: TransportSecuritySettings) -> Middleware:
    """Browser clients (the Inspector) may call from the allowed origins, with MCP's headers."""
    return Middleware(
        CORSMiddleware,
        allow_origins=security.allowed_origins,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "Accept",
            "Mcp-Session-Id",
            "Mcp-Protocol-Version",
            "Last-Event-ID",
        ],
        expose_headers=["Mcp-Session-Id", "Mcp-Protocol-Version"],
    )
