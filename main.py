"""Product MCP Server: the shop's tools over Streamable HTTP (/mcp), SSE (/sse) and stdio.

One process serves both HTTP transports by default so every client config that already exists
(`.../sse` from the tutorial, `.../mcp` from newer clients) keeps working without a restart.
This file is the server's front: what it offers, its command line, and the transport it runs.
Tools, resources and the HTTP app live in `product_mcp/mcp_server/`.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
from collections.abc import Sequence

import anyio

from product_mcp.core import mcp_compat
from product_mcp.core.config import TRANSPORTS, Settings, load_settings, mask_url
from product_mcp.core.logs import setup_logging
from product_mcp.core.serve import asyncio_named, port_arg, port_given, serve
from product_mcp.mcp_server import api, mcp
from product_mcp.mcp_server.http_app import Config, build_app, security_settings
from product_mcp.mcp_server.protocol import use_handshake_grace
from product_mcp.mcp_server.resources import live
from product_mcp.mcp_server.stdio import run_stdio

__all__ = ["Config", "build_app", "main", "parse_args", "security_settings"]

SUMMARY = [
    "PRODUCT_API_TIMEOUT",
    "MCP_ALLOWED_HOSTS",
    "MCP_AUTH_TOKEN",
    "MCP_MAX_SESSIONS",
    "MCP_MAX_SESSIONS_PER_CLIENT",
    "MCP_SEND_TIMEOUT",
    "MCP_QUICK_REPLY",
    "MAX_CONNECTIONS",
    "MCP_REPLICA_TAG",
    "REDIS_URL",
]
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


def banner(cfg: Config, settings: Settings) -> str:
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
    lines.append(f"Product API:     {mask_url(api.base_url)}")
    lines.append("Settings:")
    lines.append(settings.summary(SUMMARY))
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None, settings: Settings | None = None) -> Config:
    """The command line over the settings in force (flags win)."""
    settings = settings or load_settings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default=settings.MCP_HOST)
    p.add_argument("--port", type=port_arg, default=None, help="default: MCP_PORT")
    p.add_argument(
        "--fd",
        type=int,
        default=None,
        help="serve on this inherited socket, already bound to --host:--port (launch.py)",
    )
    p.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default=settings.MCP_TRANSPORT,
        help="both (default): /mcp and /sse in one process",
    )
    p.add_argument("--stateless", action="store_true", help="no sessions (Streamable HTTP)")
    p.add_argument("--json-response", action="store_true", help="JSON instead of SSE replies")
    p.add_argument("--access-log", action="store_true", help="log one line per HTTP request")
    p.add_argument(
        "--allowed-host",
        action="append",
        default=Settings.split(settings.MCP_ALLOWED_HOSTS),
        help="extra Host name clients may use (repeatable; env MCP_ALLOWED_HOSTS, comma list)",
    )
    a = p.parse_args(argv)
    port, moved_by = port_given(a.port, settings.MCP_PORT, "--port", "MCP_PORT")
    return Config(
        host=a.host,
        port=port,
        port_setting=moved_by,
        fd=a.fd,
        transport=a.transport,
        stateless=a.stateless,
        json_response=a.json_response,
        allowed_hosts=a.allowed_host,
        auth_token=settings.MCP_AUTH_TOKEN.get_secret_value() or None,
        access_log=a.access_log,
        max_sessions=settings.MCP_MAX_SESSIONS,
        max_sessions_per_client=settings.MCP_MAX_SESSIONS_PER_CLIENT,
        max_subscriptions=settings.MCP_MAX_SUBSCRIPTIONS,
        init_timeout=settings.MCP_INIT_TIMEOUT,
        handshake_grace=settings.MCP_HANDSHAKE_GRACE,
        session_idle_timeout=settings.MCP_SESSION_IDLE_TIMEOUT,
        send_timeout=settings.MCP_SEND_TIMEOUT,
        quick_reply=settings.MCP_QUICK_REPLY,
        replica_tag=settings.MCP_REPLICA_TAG,
        redis_url=settings.REDIS_URL,
        redis_prefix=settings.REDIS_PREFIX,
        redis_event_ttl=settings.REDIS_EVENT_TTL,
        redis_session_event_bytes=settings.REDIS_SESSION_EVENT_BYTES,
    )


async def serve_stdio() -> None:
    """One session on stdin/stdout, with the change-feed follower the HTTP app's lifespan
    starts for its sessions (live.py): a stdio client's subscriptions hear stock changes too."""
    with asyncio_named():
        following = live.start(api.base_url)
        try:
            await run_stdio(mcp)
        finally:
            if following:
                await live.stop()


def main(argv: Sequence[str] | None = None) -> None:
    mcp_compat.check()
    settings = load_settings()
    cfg = parse_args(argv, settings)
    api.configure(settings.PRODUCT_API_URL, settings.PRODUCT_API_TIMEOUT)
    setup_logging()  # plain and bounded, not the SDK's rich handler (core/logs.py says why)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one INFO line per API call
    if cfg.transport == "stdio":
        # stdout carries the protocol: the banner goes to stderr.
        sys.stderr.write(banner(cfg, settings))
        live.subscribers.limit = cfg.max_subscriptions
        use_handshake_grace(cfg.handshake_grace)
        anyio.run(serve_stdio)
        return
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")  # the banner's emoji on a non-UTF-8 console
    serve(
        build_app(cfg),
        cfg.host,
        cfg.port,
        cfg.port_setting,
        banner=banner(cfg, settings),
        fd=cfg.fd,
        log_level="info",
        access_log=cfg.access_log,
        **settings.server_limits(),
    )


if __name__ == "__main__":
    main()
