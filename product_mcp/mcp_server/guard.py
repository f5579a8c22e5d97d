"""Check every JSON-RPC message before the SDK sees it: what the SDK lets through, we refuse.

Why at the HTTP layer: the SDK's Streamable HTTP transport files each request's response
stream under its id, so a second request reusing an id that is still in flight overwrote the
first one's stream (Bob's POST got Alice's order, Alice's never got an answer, both orders were
written). Only here, before the transport registers the request, can it be refused without
running. Also refused with -32600 Invalid Request: JSON-RPC batches (MCP dropped them), ids
that are not a string or an integer (float and null ids got a 202 and never an answer), and
ids over `max_id_chars` (a 1 MB id is echoed in every reply and event: hundreds of MiB).
On the SSE transport the answers travel on the client's GET stream, so the guard follows that
stream too: it knows which streams it serves and which request ids of a session are still
unanswered. A POST for a stream it does not serve gets 404 with a JSON-RPC error saying the
stream has ended and to reconnect (an SSE session dies with its stream's process: behind a
balancer, a replica's restart ends the streams it held). A reused id is
refused, and a session may have at most `max_pending` unanswered requests: a client that does
not read its stream stops getting its messages accepted (429) instead of piling them up in
memory, and `SlowReaderCutoff` drops its stream soon after. A request the client cancels
(`notifications/cancelled`) gets no answer, so it stops counting as unanswered; its id stays in
use for CANCEL_GRACE seconds (the SDK may still be finishing it: a purchase already sent runs
to its end), and a session may have at most 4 x `max_pending` of those at once.
An id is in use until its answer has gone out; a request reusing it just as that answer went
out (the client read the answer and sent the id again) waits the moment the SDK takes to
forget the first one, instead of being refused.

What it reads of a body is only what it checks: the top-level `id` and `method` (`peek`),
skipping `params` without building them (3-4x cheaper than a full parse for a large body; the
SDK parses the body itself anyway). It is read once per POST and kept in the scope, so
`SessionSharing` (REDIS_URL) ahead of the guard does not parse it again.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

import anyio
import pydantic_core
from pydantic import TypeAdapter, ValidationError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from typing_extensions import TypedDict  # pydantic needs this one on Python 3.11

from product_mcp.core.memory import reclaimer
from product_mcp.mcp_server.protocol import modern
from product_mcp.mcp_server.sessions import SessionRegistry, client_key

INVALID_REQUEST = -32600
CANCELLED = "notifications/cancelled"
CANCEL_GRACE = 30.0  # seconds a cancelled request's id stays in use (and counts, up to a cap)
MAX_BODY = 4 * 1024 * 1024  # the SDK's own request limit; larger bodies pass on to its 413
PEEKED = "product_mcp.peeked"  # scope key: (body, peeked message) of this POST, read once


class JsonRpcGuard:
    def __init__(
        self,
        app: ASGIApp,
        sessions: SessionRegistry | None = None,
        max_id_chars: int = 256,
        max_pending: int = 32,
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.max_id_chars = max_id_chars
        self.max_pending = max_pending
        self._answer = _answer_pattern(max_id_chars)
        self._pending: dict[str, set[str]] = {}  # SSE session -> request ids not yet answered
        self._cancelled: dict[str, dict[str, float]] = {}  # SSE session -> id -> when
        # (session, id) of a /mcp request whose answer has gone out, until the SDK is done
        self._finishing: dict[tuple[str, str], anyio.Event] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "GET" and path == "/sse":
            return await self._sse_stream(scope, receive, send)
        if path == "/mcp" and not _modern(scope):
            # Said here: the SDK first admits a session for a request without one, so on a
            # full server a PUT, a bare OPTIONS, or a GET naming no session got "Too many
            # open sessions" (503). (A 2026-07-28 request admits none: the SDK answers it.)
            if scope["method"] not in MCP_METHODS:
                return await _refuse(scope, send, 405, "/mcp takes GET, POST and DELETE", None)
            no_session = _header(scope, b"mcp-session-id") is None
            if scope["method"] != "POST" and no_session and self.sessions is not None:
                why = "Missing session ID: send the Mcp-Session-Id that initialize answered"
                return await _refuse(scope, send, 400, why, None)
        if scope["method"] != "POST" or path not in ("/mcp", "/messages/"):
            return await self.app(scope, receive, send)
        body, message, replay = await read_message(scope, receive)
        problem = self._problem(message) if message is not None else _not_an_object(body)
        if problem:
            return await _refuse(scope, send, 400, problem, _id_of(message))
        if path == "/messages/":
            return await self._sse_post(scope, replay, send, message, body)
        await self._mcp_post(scope, replay, send, message)

    def _problem(self, message: Any) -> str | None:
        if isinstance(message, list):
            return "JSON-RPC batches are not supported, send one message per POST"
        if isinstance(message, dict) and message.get("jsonrpc") != "2.0":
            # the SDK answered this with -32602 and a page of pydantic's union errors
            return 'a JSON-RPC message must carry "jsonrpc": "2.0"'
        if not isinstance(message, dict) or "method" not in message or "id" not in message:
            return None  # notifications, responses and garbage: the SDK answers those
        rid = message["id"]
        if isinstance(rid, bool) or not isinstance(rid, int | str):
            return "the id of a request must be a string or an integer"
        if isinstance(rid, str) and len(rid) > self.max_id_chars:
            return f"the id of a request must be at most {self.max_id_chars} characters"
        if isinstance(rid, int) and abs(rid) >= 2**53:
            return "the id of a request must be an integer of at most 53 bits"
        return None

    async def _mcp_post(self, scope: Scope, receive: Receive, send: Send, message: Any) -> None:
        if self.sessions is None:
            return await self.app(scope, receive, send)
        session_id = _header(scope, b"mcp-session-id")
        method = message.get("method") if isinstance(message, dict) else None
        if session_id is None and method == "initialize":
            client = client_key(scope)
            if not await self.sessions.make_room(client):
                why = "too many sessions are busy: close one or retry later"
                return await _refuse(scope, send, 429, why, _id_of(message))
            with self.sessions.opening(client):
                return await self.app(scope, receive, send)
        info = self.sessions.get(session_id)
        if info is None:
            return await self.app(scope, receive, send)
        if method == "notifications/initialized":
            info.initialized = True
        rid = str(message["id"]) if isinstance(message, dict) and "id" in message else None
        if rid is None or method is None:
            return await self._run(scope, receive, send, info)
        finishing = self._finishing.get((session_id, rid))
        if finishing is not None:  # its answer has gone out: the SDK is about done with it
            with anyio.move_on_after(5):
                await finishing.wait()
        if rid in info.in_flight:
            why = f"id {rid} is already in use by a request in progress in this session"
            return await _refuse(scope, send, 400, why, message["id"])
        info.in_flight.add(rid)
        key = (session_id, rid)

        async def answering(msg: Message) -> None:
            if msg["type"] == "http.response.body" and not msg.get("more_body", False):
                self._finishing.setdefault(key, anyio.Event())
            await send(msg)

        try:
            await self._run(scope, receive, answering, info)
        finally:
            info.in_flight.discard(rid)
            done = self._finishing.pop(key, None)
            if done is not None:
                done.set()

    async def _run(self, scope: Scope, receive: Receive, send: Send, info: Any) -> None:
        info.busy += 1
        info.last_used = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            info.busy -= 1
            info.last_used = time.monotonic()

    async def _sse_post(
        self, scope: Scope, receive: Receive, send: Send, message: Any, body: bytes
    ) -> None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        session = (query.get("session_id") or [""])[0]
        pending = self._pending.get(session)
        if pending is None and _is_uuid(session):
            return await _refuse(scope, send, 404, _stream_gone(session), _id_of(message))
        if pending and isinstance(message, dict) and message.get("method") == CANCELLED:
            self._cancel(session, pending, body)
        is_request = isinstance(message, dict) and "method" in message and "id" in message
        if pending is None or not is_request:
            return await self.app(scope, receive, send)  # the SDK answers malformed ids
        rid = _id_key(message["id"])
        cancelled = self._cancelled.get(session, {})
        now = time.monotonic()
        for old in [k for k, at in cancelled.items() if now - at > CANCEL_GRACE]:
            del cancelled[old]
        if rid in pending or rid in cancelled:
            why = f"id {message['id']} is already in use by a request in progress in this session"
            return await _refuse(scope, send, 400, why, message["id"])
        if len(pending) >= self.max_pending:
            why = (
                f"{len(pending)} requests of this session are unanswered: read the event "
                "stream before sending more"
            )
            return await _refuse(scope, send, 429, why, message["id"])
        if len(cancelled) >= 4 * self.max_pending:
            why = f"{len(cancelled)} cancelled requests of this session may still be running"
            return await _refuse(scope, send, 429, why, message["id"])
        pending.add(rid)
        accepted = False

        async def answering(msg: Message) -> None:
            nonlocal accepted
            if msg["type"] == "http.response.start":
                accepted = msg["status"] == 202  # the answer will come on the stream
            await send(msg)

        try:
            await self.app(scope, receive, answering)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            # The SDK answered 202, then found the session gone (dropped for not reading):
            # the client has its answer, nothing is left to do.
            accepted = False
        finally:
            # Anything but a 202 ("Could not parse message", an error) is owed nothing on the
            # stream: 32 such requests locked the session out (found from outside).
            if not accepted:
                pending.discard(rid)

    def _cancel(self, session: str, pending: set[str], body: bytes) -> None:
        """A cancelled request is owed no answer: it stops counting as unanswered, and its id
        is held for CANCEL_GRACE seconds instead (not freed at once: the SDK may still be
        running it, and a reused id would meet it)."""
        cancel = _parse(body)  # a notification: small, and rare
        params = cancel.get("params") if isinstance(cancel, dict) else None
        rid = params.get("requestId") if isinstance(params, dict) else None
        if isinstance(rid, int | str) and _id_key(rid) in pending:
            pending.discard(_id_key(rid))
            self._cancelled.setdefault(session, {})[_id_key(rid)] = time.monotonic()

    async def _sse_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Follow one GET /sse stream: learn its session id, strike answered request ids."""
        session: list[str] = []

        async def watching(message: Message) -> None:
            if message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if not session:
                    found = _SESSION.search(chunk)
                    if found:
                        session.append(found.group(1).decode())
                        self._pending[session[0]] = set()
                else:
                    answered = self._answer.search(chunk, 0, ANSWER_HEAD + 6 * self.max_id_chars)
                    pending = self._pending.get(session[0])
                    if answered and pending is not None:
                        pending.discard(_id_key(pydantic_core.from_json(answered.group(1))))
            await send(message)

        try:
            await self.app(scope, receive, watching)
        finally:
            if session:
                self._cancelled.pop(session[0], None)
            if session and self._pending.pop(session[0], None):
                # It ended with requests unanswered: their cancelled tasks hold the messages
                # in reference cycles until a garbage collection (core/memory.py).
                reclaimer.soon()


async def read_message(scope: Scope, receive: Receive) -> tuple[bytes, Any, Receive]:
    """A POST's body, what `peek` sees in it, and a `receive` that hands the body to the app
    again; read once per request (kept in the scope for the middleware after the first)."""
    if PEEKED in scope:
        body, message = scope[PEEKED]
        return body, message, receive  # the first reader's replaying `receive`
    body, replay = await _read_body(receive)
    message = peek(body)
    scope[PEEKED] = (body, message)
    return body, message, replay


class _Envelope(TypedDict, total=False):
    jsonrpc: Any
    id: Any
    method: Any


_ENVELOPE = TypeAdapter(_Envelope)
_BATCH = re.compile(rb"[ \t\r\n]*\[")


def peek(body: bytes) -> Any:
    """The `id` and `method` keys a JSON object has (as a dict of only those), a list for a
    batch, None for anything else (empty, not JSON, not an object: the SDK answers those).
    Duplicate keys resolve as in a full parse (the last one), as the SDK will read them."""
    if not body:
        return None
    try:
        return dict(_ENVELOPE.validate_json(body))
    except ValidationError:
        if _BATCH.match(body):  # a batch, or garbage that starts like one: parse to tell
            return _parse(body)
        return None


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body (up to MAX_BODY), and a `receive` that hands it to the app again."""
    chunks: list[bytes] = []
    size, more, pending = 0, True, []
    while more and size <= MAX_BODY:
        message = await receive()
        pending.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = message.get("more_body", False)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return (b"".join(chunks) if not more else b""), replay


# The SDK's endpoint event, and the start of an answer as it serialises one (jsonrpc, id, then
# result or error): only the first few hundred bytes of an event are looked at.
_SESSION = re.compile(rb"data: [^\r\n]*[?&]session_id=([0-9a-f]{32})")
ANSWER_HEAD = 64  # bytes of an answer's event before its id


def _answer_pattern(max_id_chars: int) -> re.Pattern[bytes]:
    """The start of an answer whose id is at most `max_id_chars` characters: serialised, up to
    6 bytes each (a `\\u0001` escape; UTF-8 takes up to 4). Counted in characters, an id of
    110 CJK characters (330 bytes) was never found, so never struck, and 32 of them locked
    the session out (found from outside)."""
    most = 6 * max_id_chars
    return re.compile(
        rb'data: \{"jsonrpc":"2\.0","id":(-?\d+|"(?:[^"\\]|\\.){0,%d}"),"(?:result|error)"' % most
    )


def _is_uuid(session: str) -> bool:
    """A session id the SDK would accept (others get its own 400)."""
    try:
        UUID(hex=session)
    except ValueError:
        return False
    return True


def _stream_gone(session: str) -> str:
    """What a POST for an SSE stream this process does not hold is told: the SDK's bare
    "Could not find session" read like a routing error, but the stream has ended (an SSE
    session lives in its stream, which dies with the process that served it)."""
    return (
        f"no event stream for session_id {session} here: it has ended (closed, or the "
        "server or replica that held it stopped or restarted); open GET /sse again and "
        "post to the endpoint it announces"
    )


def _id_key(rid: Any) -> str:
    """Ids as the SDK keys them (7 and "7" are the same request to it)."""
    return str(rid)


def _parse(body: bytes) -> Any:
    if not body:
        return None
    try:
        return pydantic_core.from_json(body)
    except ValueError:
        return None


def _not_an_object(body: bytes) -> str | None:
    """A body that is JSON but not an object (`42`, `"hi"`, `null`): not a JSON-RPC message.
    Not JSON at all is left to the SDK's -32700 Parse error."""
    if not body:
        return None
    try:
        pydantic_core.from_json(body)
    except ValueError:
        return None
    return "a JSON-RPC message must be a JSON object"


def _id_of(message: Any) -> Any:
    if isinstance(message, dict):
        rid = message.get("id")
        if isinstance(rid, int | str) and not isinstance(rid, bool) and len(str(rid)) <= 256:
            return rid
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


MCP_METHODS = ("GET", "POST", "DELETE")


def _modern(scope: Scope) -> bool:
    """Whether the request names the 2026-07-28 protocol (or later): no sessions there."""
    return modern(_header(scope, b"mcp-protocol-version"))


async def _refuse(scope: Scope, send: Send, status: int, why: str, rid: Any) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": rid,
        "error": {"code": INVALID_REQUEST, "message": f"Invalid Request: {why}"},
    }
    headers = {"Allow": ", ".join(MCP_METHODS)} if status == 405 else None
    await JSONResponse(body, status_code=status, headers=headers)(scope, _disconnected, send)


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}
