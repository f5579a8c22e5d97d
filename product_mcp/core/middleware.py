"""Pure ASGI middleware the services share: body limit, security headers, same-origin writes,
requests in flight per client.

Why plain ASGI classes (Starlette's style) and not `@app.middleware("http")`: those run each
request through an extra task and memory streams; web.py's CPU per /api/call-tool went from
3.9 to 3.0 ms without them (bench). Also here: the loopback names every service treats as
"local only", so the rules for them are written once.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Bind addresses that only this machine can reach, and the Host names a browser sends for them.
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# Bind addresses that expose a service on every interface.
ANY_ADDRESS = ("0.0.0.0", "::", "")


class BodyLimit:
    """Refuse request bodies over `max_bytes` (`larger`: per path) with 413 before anything
    reads them whole."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app, self.max_bytes, self.larger = app, max_bytes, larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.larger.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await self._too_large(send, limit)
        seen, refused = 0, False

        async def limited() -> Message:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                refused = True
                await self._too_large(send, limit)
                return {"type": "http.disconnect"}  # the app stops reading and gives up
            return message

        async def guarded(message: Message) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, limited, guarded)
        except ClientDisconnect:
            if not refused:
                raise

    async def _too_large(self, send: Send, limit: int) -> None:
        response = JSONResponse({"detail": f"Request body exceeds {limit} bytes"}, status_code=413)
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class PerClientLimit:
    """At most `limit` requests in flight per client address on `paths`; more get 429 at once.

    Why: each of web.py's chats holds an LLM stream and tool calls for seconds, so one client
    sending many at once would take the connections the service accepts (MAX_CONNECTIONS), the
    MCP servers' attention and the owner's LLM budget from everyone else. A streamed reply
    counts until its last byte is sent (not until the app has finished cleaning up after it)."""

    def __init__(self, app: ASGIApp, limit: int, paths: frozenset[str]) -> None:
        self.app, self.limit, self.paths = app, limit, paths
        self.in_flight: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        client = scope["client"][0] if scope.get("client") else "?"
        held = self.in_flight.get(client, 0)
        if held >= self.limit:
            refused = JSONResponse(
                {
                    "detail": f"Too many requests running for {client} (at most {self.limit} "
                    "chats and tool calls at once): wait for one to finish"
                },
                status_code=429,
                headers={"Retry-After": "1"},
            )
            return await refused(scope, receive, send)
        self.in_flight[client] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                if self.in_flight[client] > 1:
                    self.in_flight[client] -= 1
                else:
                    del self.in_flight[client]

        async def sending(message: Message) -> None:
            # Released before the last byte leaves, not once the app has cleaned up after it:
            # a client that sends its next request on seeing the end of a stream (within the
            # limit) was refused 429 for 18 % of streamed chats (found from outside).
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                release()
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            release()


SECURITY_HEADERS = {
    # Defence in depth: the page never needs inline script, eval or third-party assets.
    # data: for pictures and sounds of tool results (public/js/media.js builds those URLs
    # only for checked PNG/JPEG/GIF/WebP and WAV/MP3/OGG/WebM).
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SameOriginWrites:
    """Refuse cross-site writes and add the security headers to every response.

    CORS is off by default, but a cross-site form POST is still "simple" and would reach a
    route: any write whose Origin is neither this site nor an allowed origin gets 403.
    """

    def __init__(self, app: ASGIApp, cors_origins: list[str]) -> None:
        self.app = app
        self.cors_origins = cors_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and origin:
            own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            if origin != own and origin not in self.cors_origins:
                refused = JSONResponse({"detail": f"origin {origin} not allowed"}, status_code=403)
                return await refused(scope, receive, _secured(send))
        await self.app(scope, receive, _secured(send))


def _secured(send: Send) -> Send:
    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for k, v in SECURITY_HEADERS.items():
                headers.setdefault(k, v)
        await send(message)

    return secured
