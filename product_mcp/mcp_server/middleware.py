"""ASGI middleware of the MCP server: bearer auth, header whitespace, clients that stop reading.

Pure ASGI classes (Starlette's style), each fixing one thing the SDK leaves to the host app.
"""

from __future__ import annotations

import hmac
import logging

import anyio
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("mcp.http")


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


class SlowReaderCutoff:
    """Drop a connection whose client stops reading: no single write may wait over `timeout`.

    An SSE client that never reads fills its socket buffer; every message for it then waits in
    memory (a test took main.py from 97 to 1,237 MiB with 600 such messages). Cutting the
    connection ends the session and frees what it held.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def bounded(message: Message) -> None:
            try:
                with anyio.fail_after(self.timeout):
                    await send(message)
            except TimeoutError:
                raise ClientTooSlow from None

        try:
            await self.app(scope, receive, bounded)
        except Exception as e:
            if not _caused_by_slow_client(e):
                raise
            log.info("dropped %s %s: the client stopped reading", scope["method"], scope["path"])


class ClientTooSlow(Exception):
    """A write to the client waited longer than allowed."""


def _caused_by_slow_client(exc: BaseException) -> bool:
    if isinstance(exc, ClientTooSlow):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_caused_by_slow_client(e) for e in exc.exceptions)
    return exc.__cause__ is not None and _caused_by_slow_client(exc.__cause__)
