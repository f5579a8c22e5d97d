"""httpx and httpx2 clients that send through aiohttp, with aiohttp's failures named as httpx
names them.

Why aiohttp underneath: per request it costs a fraction of httpx's own stack (httpcore, h11
and anyio, with a cancel scope for every socket read). Measured with callgrind, main.py's
instructions per `tools/call` went from 4.76 M to 3.58 M with its API client on it, and web.py's
per `/api/call-tool` from 6.43 M to 5.25 M with its MCP sessions on it (docs/benchmarks.md,
session 18). The transports are httpx-aiohttp's, by httpx's maintainers; httpx's client,
timeouts, limits and the code that uses them stay as they were.

Why the renaming: httpx-aiohttp reports every connection failure that is not a refused
connect (a server that closed a kept connection without answering, a reset) as httpx's
`ConnectTimeout`, and a reply that is not HTTP as aiohttp's own "400, message=...", a status
the server never sent. Callers here decide by the type whether a request may have been carried
out: main.py's API client sends a GET again on a stale connection, and says a purchase that
went unanswered "may have been placed". So each failure gets the type httpx itself raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import httpx2
from httpx_aiohttp import AiohttpTransport as _HttpxTransport
from httpx_aiohttp.httpx2 import AiohttpTransport as _Httpx2Transport

HEAD_LINE_BYTES = 64 * 1024
# The content codings httpx2 decodes (and so could unpack a bomb from), whatever is installed.
DECODED = frozenset({"gzip", "x-gzip", "deflate", "br", "zstd"})


def _renamed(exc: Exception, lib: Any) -> Exception | None:
    """The httpx (`lib`: httpx or httpx2) exception for an aiohttp failure, or None to keep
    `exc` as it is."""
    cause = exc if isinstance(exc, aiohttp.ClientError | TimeoutError) else exc.__cause__
    if isinstance(cause, aiohttp.InvalidURL):  # already httpx's UnsupportedProtocol
        return None
    # Timeouts without words, as httpx raises them: callers print the type's name instead.
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        return lib.ConnectTimeout("")
    if isinstance(cause, aiohttp.SocketTimeoutError | aiohttp.ServerTimeoutError | TimeoutError):
        return lib.ReadTimeout("")
    if isinstance(cause, aiohttp.ClientConnectorError):
        if type(cause).__str__ is not aiohttp.ClientConnectorError.__str__:
            return lib.ConnectError(str(cause))  # a certificate's own words
        # without aiohttp's "ssl:default", which a plain-HTTP API's refusal showed too
        where = f"{cause.host}:{cause.port}"
        return lib.ConnectError(f"Cannot connect to host {where} [{cause.strerror}]")
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return lib.RemoteProtocolError("Server disconnected without sending a response.")
    if isinstance(cause, aiohttp.ClientPayloadError):
        # the reason, without aiohttp's "<ContentLengthError: 400, message=...>" around it:
        # a status the server never sent, which the model read as the API's refusal
        why = getattr(cause.__cause__, "message", None) or str(cause)
        return lib.RemoteProtocolError("incomplete response body: " + " ".join(str(why).split()))
    if isinstance(cause, aiohttp.ClientHttpProxyError):  # CONNECT refused: nothing was sent on
        return lib.ProxyError(f"{cause.status} {cause.message}")
    if isinstance(cause, aiohttp.ClientResponseError):  # the reply could not be parsed
        return lib.RemoteProtocolError("not valid HTTP: " + " ".join(str(cause.message).split()))
    if isinstance(cause, aiohttp.ClientError):  # a reset or another socket error
        return lib.ReadError(str(cause) or type(cause).__name__)
    return None


def _reraise(exc: Exception, lib: Any) -> None:
    renamed = _renamed(exc, lib)
    if renamed is None:
        raise exc
    raise renamed from exc


def _without_userinfo(request: Any) -> None:
    """httpx turned a URL's `user:password@` into an Authorization header already; aiohttp,
    given both, refuses the request (ValueError), so every call to an API URL with credentials
    failed."""
    if request.url.userinfo:
        request.url = request.url.copy_with(username=None, password=None)


@dataclass(frozen=True)
class PeerBounds:
    """What web.py reads of one reply from a peer it does not trust (an LLM provider, an MCP
    server). Such a peer sent a gzip bomb (3 GB from a 500's body: web.py reached 9 GB, as
    openai reads an error's body whole) and a 400 MB event-stream line (1.6 GB; the SSE
    readers keep a line until it ends). So the reply is asked for uncompressed, a compressed
    one is refused (its decoded size cannot be bounded before it is decoded), a reply other
    than an event stream is read up to `body` bytes and an event stream's line up to `line`;
    and its head must come whole within the read timeout."""

    body: int
    line: int


class ReplyRefused(httpx2.SSEError, httpx2.RemoteProtocolError, httpx2.StreamError):
    """A reply held to its bounds. A RemoteProtocolError to the LLM client; to the MCP SDK,
    raised while a body is read, one reply's failure, not the transport's: the SDK ends only
    the request whose JSON reply raises a StreamError or whose event stream raises an
    SSEError, with the reason, while anything else tears the whole session down as
    "Connection closed" (found from outside: a compressed reply, or a long line, dropped the
    session and hid the reason)."""


class _Body:
    """A reply body whose read failures are renamed too (a server gone mid-body), and whose
    size is held to `bounds` when given."""

    def __init__(
        self,
        stream: Any,
        lib: Any,
        bounds: PeerBounds | None,
        events: bool,
        refused: str | None = None,
    ) -> None:
        self._stream = stream
        self._lib = lib
        self._bounds = bounds
        self._events = events
        self._refused = refused  # why none of it is read (a compressed reply)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._refused is not None:
            raise ReplyRefused(self._refused)
        chunks = self._stream.__aiter__()
        bounds, seen = self._bounds, 0  # bytes of the body, or of the event stream's line
        while True:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except Exception as e:
                _reraise(e, self._lib)
            if bounds is not None:
                if not self._events:
                    seen += len(chunk)
                    if seen > bounds.body:
                        raise ReplyRefused(
                            f"the reply is over {bounds.body:,} bytes: not read further"
                        )
                else:
                    # a line ends at LF, CRLF or a lone CR (the SSE spec; the readers take all)
                    end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
                    seen = seen + len(chunk) if end < 0 else len(chunk) - end - 1
                    if seen > bounds.line:
                        raise ReplyRefused(
                            f"a line of the event stream is over {bounds.line:,} bytes: "
                            "not read further"
                        )
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except Exception as e:
            _reraise(e, self._lib)


class _HttpxBody(_Body, httpx.AsyncByteStream):
    pass


class _Httpx2Body(_Body, httpx2.AsyncByteStream):
    pass


class _NoCookieJar:
    """The transports' aiohttp session keeps no cookies: httpx's client keeps its own (and
    can be told not to), while aiohttp's jar, unseen by httpx, put a server's cookie in place
    of a `Cookie` header the caller set (an MCP server's configured header)."""

    client: Any
    limits: Any
    ssl_context: Any
    local_address: str | None

    def get_client(self) -> aiohttp.ClientSession:
        if self.client is not None:
            return super().get_client()  # type: ignore[misc]
        # httpx's `max_connections=None` is no limit (web.py's MCP sessions), aiohttp's 0:
        # given none, aiohttp allowed 100, and the 101st concurrent call to one MCP server
        # waited, failed as a connect timeout and took the SDK's session down (found from
        # outside).
        limit = self.limits.max_connections
        connector = aiohttp.TCPConnector(
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
            local_addr=(self.local_address, 0) if self.local_address else None,
            limit=0 if limit is None else limit,
        )
        # A head line up to 64 KiB: httpx's stack took heads up to 100 KiB (aiohttp's own
        # line limit is 8 KiB; it takes 128 lines at most).
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            max_line_size=HEAD_LINE_BYTES,
            max_field_size=HEAD_LINE_BYTES,
        )


class HttpxTransport(_NoCookieJar, _HttpxTransport):
    """For an `httpx.AsyncClient` (main.py's client to the product API, a trusted peer)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        _without_userinfo(request)
        try:
            response = await super().handle_async_request(request)
        except Exception as e:
            _reraise(e, httpx)
        response.stream = _HttpxBody(response.stream, httpx, None, False)
        return response


class Httpx2Transport(_NoCookieJar, _Httpx2Transport):
    """For an `httpx2.AsyncClient` (web.py's LLM client and MCP sessions); with `bounds`, a
    reply is held to them."""

    def __init__(
        self, *, bounds: PeerBounds | None = None, refuse_in_body: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.bounds = bounds
        # A compressed reply refused when its body is read, not when it arrives: the MCP SDK
        # takes an error there as its request's (ReplyRefused), one raised by the transport
        # as the session's; openai takes only the latter as the provider's ("did not answer
        # properly").
        self.refuse_in_body = refuse_in_body

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        _without_userinfo(request)
        # A head dripped a byte at a time never trips the read timeout (it restarts with each
        # read): from an untrusted peer, the whole head must come within it.
        head_within = None
        if self.bounds is not None:
            request.headers["Accept-Encoding"] = "identity"
            head_within = request.extensions.get("timeout", {}).get("read")
        try:
            async with asyncio.timeout(head_within):
                response = await super().handle_async_request(request)
        except TimeoutError as e:
            raise httpx2.ReadTimeout("") from e
        except Exception as e:
            _reraise(e, httpx2)
        refused = None
        if self.bounds is not None and "content-encoding" in response.headers:
            # what httpx2 would decode; a coding it does not know (`utf-8`, a server's mistake)
            # it reads as it is, so that reply is bounded like any other
            encodings = response.headers.get_list("content-encoding", split_commas=True)
            decoded = [e for e in (v.strip().lower() for v in encodings) if e in DECODED]
            if decoded:
                refused = (
                    f"the reply is compressed ({', '.join(decoded)[:40]}), which was not asked for"
                )
                if not self.refuse_in_body:
                    await response.aclose()
                    raise ReplyRefused(refused)
        events = response.headers.get("content-type", "").lower().startswith("text/event-stream")
        response.stream = _Httpx2Body(response.stream, httpx2, self.bounds, events, refused)
        return response


class HttpxClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` on `HttpxTransport`, its proxies (HTTP(S)_PROXY, ALL_PROXY and
    NO_PROXY, or `proxy=`) included: httpx reads the environment's proxies only for a client
    given no `transport`, and aiohttp's session never, so a client handed one went direct
    (as httpx-aiohttp's own client, the transports are made here instead)."""

    def _init_transport(self, transport: Any = None, **kwargs: Any) -> Any:
        return transport if transport is not None else HttpxTransport(**kwargs)

    def _init_proxy_transport(self, proxy: httpx.Proxy, **kwargs: Any) -> Any:
        return HttpxTransport(proxy=proxy, **kwargs)


class Httpx2Client(httpx2.AsyncClient):
    """`HttpxClient` for httpx2, on `Httpx2Transport`: each route's replies held to `bounds`."""

    def __init__(self, *, bounds: PeerBounds | None = None, **kwargs: Any) -> None:
        self._bounds = bounds  # read by the transports, which httpx2's __init__ makes
        super().__init__(**kwargs)

    def _init_transport(self, transport: Any = None, **kwargs: Any) -> Any:
        if transport is not None:
            return transport
        return Httpx2Transport(bounds=self._bounds, **kwargs)

    def _init_proxy_transport(self, proxy: httpx2.Proxy, **kwargs: Any) -> Any:
        return Httpx2Transport(bounds=self._bounds, proxy=proxy, **kwargs)
