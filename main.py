"""Product MCP Server: the shop's tools over Streamable HTTP (/mcp), SSE (/sse) and stdio.

One process serves both HTTP transports by default so every client config that already exists
(`.../sse` from the tutorial, `.../mcp` from newer clients) keeps working without a restart.
The tools themselves live in tools.py; this file is transport, security and the command line.
"""

from __future__ import annotations

import argparse
import hmac
import io
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import uvicorn
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import settings
from event_store import InMemoryEventStore, scope_per_session
from tools import api, mcp

Transport = Literal["both", "streamable-http", "sse", "stdio"]
TRANSPORTS: tuple[Transport, ...] = ("both", "streamable-http", "sse", "stdio")

FEATURES = [
    ("Get product list", "get_products"),
    ("Get inventory list", "get_inventory"),
    ("Get order list", "get_orders"),
    ("Create purchase order", "create_purchase"),
    ("Get one product with live stock", "get_product"),
    ("Search products", "search_products"),
    ("Recommend products", "recommend_products"),
    ("Analyze sales", "analyze_sales"),
]
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
# Replay window for clients that lost their stream, and how soon they should reconnect (ms).
MAX_EVENTS = 10_000
RETRY_MS = 1_000
# How long a resumed stream waits for a still-running request's next event (event_store.py).
FOLLOW_S = 60


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 8083
    transport: Transport = "both"
    stateless: bool = False
    json_response: bool = False
    allowed_hosts: list[str] = field(default_factory=list)
    auth_token: str | None = None
    access_log: bool = False


def security_settings(cfg: Config) -> TransportSecuritySettings:
    """DNS-rebinding protection that stays on for any bind address (the SDK drops it off loopback).

    Allowed: the localhost forms of the bound port, the bound address itself, and any extra
    names, each with or without the port (a reverse proxy may present `shop.example.com`).
    """
    names = [*LOOPBACK]
    if cfg.host not in ("0.0.0.0", "::", "", *LOOPBACK, "::1"):
        names.append(f"[{cfg.host}]" if ":" in cfg.host else cfg.host)
    # Bare names too: that is the Host a client sends for port 80 (or behind a proxy).
    hosts: list[str] = [f"{n}:{cfg.port}" for n in names] + names
    origins: list[str] = [f"http://{n}:{cfg.port}" for n in names] + [f"http://{n}" for n in names]
    for name in cfg.allowed_hosts:
        hosts += [name, f"{name}:{cfg.port}"]
        origins += [f"{s}://{name}" for s in ("http", "https")]
        origins += [f"{s}://{name}:{cfg.port}" for s in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


class BearerAuth:
    """401 for HTTP requests without `Authorization: Bearer <token>`; health and preflight pass."""

    OPEN_PATHS = frozenset({"/healthz"})

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] not in self.OPEN_PATHS
            and scope["method"] != "OPTIONS"
        ):
            scheme, _, given = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
            # The scheme is case-insensitive (RFC 9110); the token is compared in constant time.
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                response = JSONResponse(
                    {"error": "unauthorized", "detail": "Missing or invalid bearer token"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="product-mcp"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class TrimHeaderValues:
    """Strip optional whitespace around header values (RFC 9110 5.5); the SDK compares raw
    values, so `Mcp-Name:  get_products ` would otherwise be refused as a mismatch."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "headers": [(k, v.strip(b" \t")) for k, v in scope["headers"]]}
        await self.app(scope, receive, send)


class RejectBatches:
    """Answer a JSON-RPC batch on /mcp with the protocol's -32600 Invalid Request.

    MCP dropped batching (2025-06-18); the SDK reports an array as -32602 "Invalid params"
    with a pydantic dump of four validation errors. Only the first body chunk is peeked at.
    """

    BODY: ClassVar[dict[str, Any]] = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {
            "code": -32600,
            "message": "Invalid Request: JSON-RPC batches are not supported, "
            "send one message per POST",
        },
    }

    def __init__(self, app: ASGIApp, path: str = "/mcp") -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        first = await receive()
        if first["type"] == "http.request" and first.get("body", b"").lstrip()[:1] == b"[":
            await JSONResponse(self.BODY, status_code=400)(scope, receive, send)
            return
        pending: list[Message] = [first]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


async def healthz(_: Request) -> Response:
    """Open without a token (for probes and the launcher), so it tells nothing but liveness."""
    return JSONResponse({"status": "ok"})


def build_app(cfg: Config) -> Starlette:
    """The HTTP app: /mcp and/or /sse + /messages/, /healthz, CORS and optional bearer auth."""
    security = security_settings(cfg)
    routes: list[BaseRoute] = [Route("/healthz", healthz, methods=["GET"])]
    streamable = cfg.transport in ("both", "streamable-http")
    if streamable:
        store = None if cfg.stateless else InMemoryEventStore(MAX_EVENTS, FOLLOW_S)
        http_app = mcp.streamable_http_app(
            streamable_http_path="/mcp",
            json_response=cfg.json_response,
            stateless_http=cfg.stateless,
            event_store=store,
            retry_interval=RETRY_MS,
            transport_security=security,
            host=cfg.host,
        )
        routes += http_app.routes
        if store is not None:
            scope_per_session(mcp.session_manager, store)
    if cfg.transport in ("both", "sse"):
        routes += mcp.sse_app(transport_security=security, host=cfg.host).routes

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # A mounted app's lifespan never runs, so the session manager is entered here.
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(api.open())
            if streamable:
                await stack.enter_async_context(mcp.session_manager.run())
            yield

    middleware = [
        Middleware(
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
    ]
    if cfg.auth_token:
        middleware.append(Middleware(BearerAuth, token=cfg.auth_token))
    middleware.append(Middleware(TrimHeaderValues))
    if streamable:
        middleware.append(Middleware(RejectBatches))
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def banner(cfg: Config) -> str:
    lines = ["🌤️ Starting Product MCP Server...", "📍 Supported features:"]
    lines += [f"  - {label} ({name})" for label, name in FEATURES]
    lines.append("")
    base = f"http://{'localhost' if cfg.host in ('0.0.0.0', '::') else cfg.host}:{cfg.port}"
    if cfg.transport in ("both", "streamable-http"):
        lines.append(f"Streamable HTTP: {base}/mcp")
    if cfg.transport in ("both", "sse"):
        lines.append(f"SSE:             {base}/sse")
    if cfg.transport == "stdio":
        lines.append("Transport: stdio")
    lines.append(f"Product API:     {settings.mask('PRODUCT_API_URL', api.base_url)}")
    lines.append("Settings:")
    lines.append(settings.summary(["PRODUCT_API_TIMEOUT", "MCP_ALLOWED_HOSTS", "MCP_AUTH_TOKEN"]))
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> Config:
    g = settings.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default=g("MCP_HOST"))
    p.add_argument("--port", type=int, default=settings.get_int("MCP_PORT", 1))
    p.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=g("MCP_TRANSPORT"),
        help="both (default): /mcp and /sse in one process",
    )
    p.add_argument("--stateless", action="store_true", help="no sessions (Streamable HTTP)")
    p.add_argument("--json-response", action="store_true", help="JSON instead of SSE replies")
    p.add_argument("--access-log", action="store_true", help="log one line per HTTP request")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[h.strip() for h in g("MCP_ALLOWED_HOSTS").split(",") if h.strip()],
        help="extra Host name clients may use (repeatable; env MCP_ALLOWED_HOSTS, comma list)",
    )
    a = p.parse_args(argv)
    if a.transport not in TRANSPORTS:  # argparse checks choices for flags, not for defaults
        p.error(f"MCP_TRANSPORT must be one of {', '.join(TRANSPORTS)}, got {a.transport!r}")
    return Config(
        host=a.host,
        port=a.port,
        transport=a.transport,
        stateless=a.stateless,
        json_response=a.json_response,
        allowed_hosts=a.allowed_host,
        auth_token=g("MCP_AUTH_TOKEN") or None,
        access_log=a.access_log,
    )


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one INFO line per API call
    if cfg.transport == "stdio":
        # stdout carries the protocol: the banner goes to stderr.
        sys.stderr.write(banner(cfg))
        mcp.run("stdio")
        return
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")  # the banner's emoji on a non-UTF-8 console
    sys.stdout.write(banner(cfg) + "\n")
    sys.stdout.flush()
    uvicorn.run(
        build_app(cfg), host=cfg.host, port=cfg.port, log_level="info", access_log=cfg.access_log
    )


if __name__ == "__main__":
    main()
