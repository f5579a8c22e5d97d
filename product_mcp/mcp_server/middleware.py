"""ASGI middleware of the MCP server: bearer auth, header whitespace, JSON-RPC batches.

Pure ASGI classes (Starlette's style), each fixing one thing the SDK leaves to the host app.
"""

from __future__ import annotations

import hmac
from typing import Any, ClassVar

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
