"""ASGI middleware of the MCP server: bearer auth, header whitespace, clients that stop reading,
responses the SDK leaves unfinished.

Pure ASGI classes (Starlette's style), each fixing one thing the SDK leaves to the host app.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any

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
    """Strip optional whitespace around header values (RFC 9110 5.5), and lower-case the Host
    and Origin values (host names and schemes are case-insensitive, RFC 3986 3.1, 3.2.2): the
    SDK compares raw values, so `Mcp-Name:  get_products ` was refused as a mismatch, and
    `Host: LocalHost:8083` as a foreign host (421, found from outside)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "headers": [_normal(k, v) for k, v in scope["headers"]]}
        await self.app(scope, receive, send)


def _normal(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    value = value.strip(b" \t")
    return name, value.lower() if name in (b"host", b"origin") else value


STREAM_PATHS = frozenset({"/sse", "/mcp"})  # where a GET is a long-lived event stream


def _error(rid: object, text: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32600, "message": text}}


def _event(message: dict[str, Any]) -> bytes:
    return f"event: message\ndata: {json.dumps(message)}\n\n".encode()


def _answers(body: bytes, rid: object) -> bool:
    """Whether an SSE chunk holds the answer (result or error) to request `rid`."""
    if b'"result"' not in body and b'"error"' not in body:
        return False
    for line in body.split(b"\n"):
        if line.startswith(b"data:"):
            try:
                message = json.loads(line[5:])
            except ValueError:
                continue
            if isinstance(message, dict) and message.get("id") == rid and "method" not in message:
                return True
    return False


class FinishResponses:
    """Finish every response the SDK leaves half-sent, with a JSON-RPC error in words.

    A session deleted while its own calls run (a tab closed, a retry loop gone wrong) makes the
    SDK's transport write to a closed stream: it logs the error and returns without finishing
    the response, so the client got a connection cut mid-stream ("incomplete chunked read") or,
    before any header, a 500. Here such a request gets 404 with an error naming what happened
    (the spec's answer for an ended session), or, if its SSE reply had begun, that error as
    the stream's last event and a proper end.
    """

    MESSAGE = "Session ended while this request was in flight: start a new session"
    ENDED_UNDER = (
        "Session ended while this request was in flight, which may have completed (a purchase "
        "retried with the same idempotencyKey tells): start a new session"
    )

    def __init__(
        self, app: ASGIApp, peeked_key: str, session_of: Callable[[str], Any] | None = None
    ) -> None:
        self.app = app
        self.peeked_key = peeked_key
        self.session_of = session_of  # a session id's transport here (Streamable HTTP), or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state: dict[str, Any] = {"started": False, "done": False, "sse": False}
        session, rid = self._session_and_id(scope)

        async def tracking_send(message: Message) -> None:
            if state["done"] or (state["started"] and message["type"] == "http.response.start"):
                # The SDK's /sse route returns an empty Response once its stream has ended
                # (at every shutdown): a second response to one request, which uvicorn
                # logged as "Exception in ASGI application" for each open stream. Its start
                # is dropped; its empty last body ends the stream, as the end below would.
                return
            if message["type"] == "http.response.body" and state["sse"] and session is not None:
                message = self._answer_owed(message, state, session, rid)
            await send(message)  # first: a start that never went out (cancelled) is not "started"
            if message["type"] == "http.response.start":
                state["started"] = True
                headers = dict(message.get("headers") or ())
                state["sse"] = headers.get(b"content-type", b"").startswith(b"text/event-stream")
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                state["done"] = True

        await self.app(scope, receive, tracking_send)
        if state["done"]:
            return
        error = _error(self._request_id(scope), self.MESSAGE)
        if not state["started"]:
            await JSONResponse(error, status_code=404)(scope, receive, send)
        elif state["sse"] and scope["method"] == "POST":
            await send({"type": "http.response.body", "body": _event(error), "more_body": False})
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _session_and_id(self, scope: Scope) -> tuple[Any, object]:
        """The session transport a POSTed request runs in, and the request's id (None, None
        for anything else: a notification, a GET stream, a request without a session)."""
        if self.session_of is None or scope["method"] != "POST":
            return None, None
        rid = self._request_id(scope)
        sid = next((v for k, v in scope["headers"] if k == b"mcp-session-id"), None)
        if rid is None or sid is None:
            return None, None
        return self.session_of(sid.decode("latin-1")), rid

    def _answer_owed(
        self, message: Message, state: dict[str, Any], session: Any, rid: object
    ) -> Message:
        """A request's SSE reply that ends without its answer because its session was
        terminated (a DELETE under a running purchase: found from outside, the client got a
        200 stream with nothing in it, though the order was placed) ends with an error.
        Only the last event is looked at, and only then (the answer is a reply's last
        event): nothing is parsed on the way (review: a full parse of every event)."""
        body = message.get("body", b"")
        if message.get("more_body"):
            if body:
                state["last"] = body
            return message
        if not session.is_terminated or _answers(body or state.get("last", b""), rid):
            return message
        return {**message, "body": body + _event(_error(rid, self.ENDED_UNDER))}

    def _request_id(self, scope: Scope) -> object:
        peeked = scope.get(self.peeked_key)
        message = peeked[1] if isinstance(peeked, tuple) else None
        return message.get("id") if isinstance(message, dict) else None
