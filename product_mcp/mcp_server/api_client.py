"""The MCP server's one HTTP client to the product API, and the API's errors in words.

Why one pooled client, opened by whichever lifespan comes first: every tool call reuses its
connections, so no call pays for a TCP or TLS handshake. Every API failure becomes an
`ApiError` (a `ToolError`) carrying the API's own words and the URL it tried, because in mcp
2.x any other exception reaches the model only as "Error executing tool X".

Why one retry: a pooled connection the API closes for idleness just as a request leaves on it
fails with no answer (CI saw 12 such calls under load). A request that is safe to repeat (a GET,
or a purchase with an Idempotency-Key) is sent once more on a new connection; any other is not,
because it may have been carried out. Pooled connections also expire before the API's own
keep-alive timer (KEEP_ALIVE_TIMEOUT, 5 s by default), which makes the race rare to begin with.
A purchase whose answer did not come in time (PRODUCT_API_TIMEOUT) is asked once more with its
key too: the API answers with the order it placed, or places it if the first never arrived.
An `ApiError` says whether the request may have been carried out all the same (`maybe_done`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import httpx
from mcp.server.mcpserver.exceptions import ToolError

from product_mcp.core.aiohttp_transports import HttpxClient
from product_mcp.core.config import mask_url
from product_mcp.core.errors import ProductMcpError


class ApiError(ProductMcpError, ToolError):
    """The product API failed or refused; the message quotes it for the model to read.

    `status` is the API's HTTP status, or 502 when it could not be reached at all. Defined here,
    not in core/errors.py, so that only the MCP wing imports the SDK.
    """

    status = 502

    def __init__(
        self, message: str, status: int | None = None, api_said: str = "", maybe_done: bool = False
    ) -> None:
        super().__init__(message, status)
        self.api_said = api_said  # the API's own sentence, when it answered with an error
        self.maybe_done = maybe_done  # sent, never answered: it may have been carried out


# Failures that mean "the connection died before an answer", never "the API said no".
STALE_CONNECTION = (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
# Failures after which the API may have carried the request out all the same.
UNANSWERED = (*STALE_CONNECTION, httpx.ReadTimeout, httpx.WriteTimeout)
# Below uvicorn's default keep-alive timeout of 5 s, so we drop a connection before it does.
KEEPALIVE_EXPIRY = 4.0


class ProductApi:
    """One pooled HTTP client for the whole process; `configure` it when the server starts."""

    def __init__(self, base_url: str = "http://127.0.0.1:8000/api", timeout: float = 10.0) -> None:
        self.configure(base_url, timeout)
        self._client: httpx.AsyncClient | None = None
        self._users = 0

    def configure(
        self,
        base_url: str,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Where the API is (settings are read at start, not on import); `transport` lets
        tests reach an in-process app."""
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.transport = transport

    @asynccontextmanager
    async def open(self) -> AsyncIterator[ProductApi]:
        """Reference-counted: the HTTP app's lifespan and each SSE/stdio connection share it."""
        if self._users == 0:
            limits = httpx.Limits(
                max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_EXPIRY
            )
            # aiohttp underneath (a quarter of main.py's instructions per tool call), proxies
            # from the environment included
            self._client = HttpxClient(
                base_url=self.base_url,
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
                limits=limits,
                transport=self.transport,
            )
        self._users += 1
        try:
            yield self
        finally:
            self._users -= 1
            if self._users == 0 and self._client is not None:
                client, self._client = self._client, None
                await client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        service: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        failed: str | None = None,
        requesting: str | None = None,
    ) -> Any:
        """Call the API; raise ApiError worded like the seed tutorial's messages."""
        if self._client is None:
            raise ApiError(f"Error requesting {service}: the server is not started")
        query = tuple((k, type(v), v) for k, v in (params or {}).items() if v is not None)
        try:
            url = _url(self.base_url, path, query)
        except TypeError:  # a value that cannot be a cache key (a list): built this once
            url = _url.__wrapped__(self.base_url, path, query)
        # A write sent and never answered may have been carried out, whatever the retry says
        # after it (found from outside: the first try placed the order, the retry met a dead
        # API, and "All connection attempts failed" hid that the order existed).
        unanswered = False
        try:
            keyed = "Idempotency-Key" in (headers or {})
            try:
                response = await self._client.request(method, url, json=json, headers=headers)
            except (*STALE_CONNECTION, httpx.ReadTimeout) as e:
                if not keyed and (method != "GET" or isinstance(e, httpx.ReadTimeout)):
                    raise
                unanswered = method != "GET"
                response = await self._client.request(method, url, json=json, headers=headers)
            response.raise_for_status()
            return response.json()
        except httpx.HTTPStatusError as e:
            raise ApiError(
                f"{failed or f'Failed to call {service}'} ({e.response.status_code}): "
                f"{_detail(e.response)}",
                e.response.status_code,
                api_said=_detail(e.response),
                maybe_done=unanswered and e.response.status_code >= 500,
            ) from e
        except httpx.RequestError as e:
            reason = str(e) or type(e).__name__
            raise ApiError(
                f"{requesting or f'Error requesting {service}'}: {reason} "
                f"(product API at {mask_url(self.base_url)})",
                maybe_done=method != "GET" and (unanswered or isinstance(e, UNANSWERED)),
            ) from e
        except ValueError as e:  # a 2xx whose body is not JSON
            raise ApiError(f"Error requesting {service}: invalid JSON from the API") from e


@lru_cache(maxsize=1024)
def _url(base: str, path: str, query: tuple[tuple[str, type, Any], ...]) -> httpx.URL:
    """The request's whole URL, built once: httpx parses and joins the base URL, the path and
    the query for every request given them apart (~45 µs, the largest piece of main.py's own
    work per tool call that is not the request itself), and the same few URLs come back again
    and again. A whole `httpx.URL` is taken as it is. The value's type is part of the key, so
    `True` and `1` (equal in Python) keep their own spellings ("true", "1")."""
    return httpx.URL(base + path, params={k: v for k, _, v in query})


def _detail(response: httpx.Response) -> str:
    """The API's `detail` (FastAPI validation lists become `field: message; ...`)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):
        parts = []
        for err in detail:
            if isinstance(err, dict):
                loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
                parts.append(f"{loc}: {err.get('msg', err)}" if loc else str(err.get("msg", err)))
            else:
                parts.append(str(err))
        return "; ".join(parts)
    if detail is not None:
        return str(detail)
    return response.text.strip()[:500] or response.reason_phrase


api = ProductApi()
