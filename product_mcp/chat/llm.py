"""The LLM side of the chat: its settings, one shared client, the streamed request, and its
errors in words.

Why a sentence per openai exception: "Connection error." tells a user nothing; "Cannot reach
the LLM provider at https://...: connection refused" tells them which setting to fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from product_mcp.chat.results import describe_error
from product_mcp.core.aiohttp_transports import Httpx2Client, PeerBounds
from product_mcp.core.errors import LLMError

NO_LLM_MESSAGE = (
    "No LLM configured: set OPENAI_API_KEY (and OPENAI_API_BASE for other providers) in .env"
)


@dataclass(frozen=True)
class LLMSettings:
    api_key: str | None = None
    base_url: str | None = None
    model: str = "deepseek-chat"
    timeout: float = 60.0
    max_retries: int = 1
    max_tool_rounds: int = 8
    max_result_chars: int = 20_000
    approval_timeout: float = 600.0

    @property
    def configured(self) -> bool:
        return bool(self.api_key)


# The JSON openai writes a request body as (its `openapi_dumps`: UTF-8, no spaces, no NaN).
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def encode_json(value: Any) -> str:
    """`value` as openai would send it in a request body."""
    return _dumps(value)


def encode_body(body: dict[str, Any], tools_json: str | None = None) -> bytes:
    """A Chat Completions body as the bytes openai would send, with `body["tools"]` taken
    from `tools_json` (already encoded) when given: the tools' JSON Schemas are most of a
    request (7 of 8 KB in the bench's turn) and the same until the tool list changes."""
    if tools_json is None or "tools" not in body:
        return _dumps(body).encode()
    rest = _dumps({k: v for k, v in body.items() if k != "tools"})
    return f'{rest[:-1]},"tools":{tools_json}}}'.encode()


# openai's telemetry headers: a provider needs none of them to answer, and each request would
# tell it this machine's OS, architecture and Python (9 of a request's ~19 headers; building
# them was ~6 % of the instructions web.py runs per chat turn). The two set per request (retry
# count, read timeout) are left out by naming them in the request's own headers.
PLATFORM_HEADERS = (
    "X-Stainless-Lang",
    "X-Stainless-Package-Version",
    "X-Stainless-OS",
    "X-Stainless-Arch",
    "X-Stainless-Runtime",
    "X-Stainless-Runtime-Version",
    "X-Stainless-Async",
)
REQUEST_HEADERS = ("X-Stainless-Retry-Count", "X-Stainless-Read-Timeout")


# A provider's reply, read by web.py: an error's body (openai reads it whole) and one line of
# the event stream (one chunk, which a provider keeps small) are bounded (core/aiohttp_transports).
LLM_BOUNDS = PeerBounds(body=8 * 1024 * 1024, line=8 * 1024 * 1024)


def make_client(settings: LLMSettings) -> Any:
    """The one `AsyncOpenAI` client, without openai's telemetry headers, on aiohttp (as
    openai's own `DefaultAioHttpClient`, with openai's limits, redirects and the environment's
    proxies): per streamed request it costs web.py ~35 % less CPU than httpx2's own stack (a
    chat turn went from 15.9 M to 12.9 M instructions; docs/benchmarks.md, session 18), and
    its replies are held to `LLM_BOUNDS`."""
    from openai import DEFAULT_CONNECTION_LIMITS, AsyncOpenAI, Omit

    http = Httpx2Client(
        bounds=LLM_BOUNDS,
        limits=DEFAULT_CONNECTION_LIMITS,
        timeout=settings.timeout,
        follow_redirects=True,
    )
    return AsyncOpenAI(
        http_client=http,
        api_key=settings.api_key,
        base_url=settings.base_url or None,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
        default_headers=dict.fromkeys(PLATFORM_HEADERS, Omit()),
    )


def completions_url(client: Any) -> str:
    """The client's Chat Completions URL, whole: openai joins a relative path to its base URL
    (which always ends with a slash) by parsing both for every request."""
    return f"{client.base_url}chat/completions"


async def stream_chat(client: Any, url: str, content: bytes) -> ChunkStream:
    """`client.chat.completions.create(**body)` with `stream=True` at `url`
    (`completions_url`), minus three costs openai adds for typing (measured: 1.1 ms, ~0.5 ms
    and ~0.2 ms of CPU per request):
    - the params transform, which walks the body against openai's TypedDicts to rename aliased
      keys and format dates or files: the chat's bodies are plain JSON with none of those, so
      it gives them back unchanged (tests/web/test_units.py checks that it still does);
    - encoding the body, tools and all, for every request: `content` is the body already
      encoded (`encode_body`, with the tools encoded once per tool list);
    - building a pydantic model per streamed chunk (unvalidated: `construct`): each chunk is
      its parsed JSON instead, read through `Chunk`.
    Otherwise the same POST: path, headers (less openai's telemetry: `make_client`), auth,
    retries, timeout, SSE parsing and errors."""
    from openai import AsyncStream, Omit
    from openai.types.chat import ChatCompletion

    stream = await client.post(
        url,
        content=content,
        cast_to=ChatCompletion,
        stream=True,
        stream_cls=AsyncStream[object],
        options={
            "security": {"bearer_auth": True},
            "headers": dict.fromkeys(REQUEST_HEADERS, Omit()),
        },
    )
    return ChunkStream(stream)


class ChunkStream:
    """openai's stream of parsed JSON chunks, each read through `Chunk`; `async with` closes
    the response (what Stop relies on: the provider stops generating)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aenter__(self) -> ChunkStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stream.close()

    async def __aiter__(self) -> AsyncIterator[Any]:
        async for data in self._stream:
            yield Chunk.of(data)


class Chunk(dict):  # type: ignore[type-arg]
    """A streamed chunk's JSON object, read like openai's chunk models (`chunk.choices[0].delta
    .content`): a missing field is None. Only for field names that are not dict methods."""

    __slots__ = ()

    @staticmethod
    def of(value: Any) -> Any:
        if type(value) is dict:
            return Chunk(value)
        if type(value) is list:
            return [Chunk.of(v) for v in value]
        return value

    def __getattr__(self, name: str) -> Any:
        return Chunk.of(self.get(name))


def _field(name: str) -> property:
    return property(lambda chunk: Chunk.of(chunk.get(name)), doc=f"the `{name}` field, or None")


# The fields the chat reads, found on the class: `__getattr__` runs only after Python has
# built (and formatted the message of) an AttributeError, ~45 times per chat turn.
_READ = "choices delta content tool_calls index id function name arguments".split()
for _name in _READ:
    setattr(Chunk, _name, _field(_name))


def explain_llm_error(exc: Exception, settings: LLMSettings) -> LLMError:
    """Turn openai's exceptions into a sentence a user can act on."""
    import httpx2
    import openai  # only ever called with one of its errors, so it is loaded already

    where = settings.base_url or "the default OpenAI endpoint"
    if isinstance(exc, openai.AuthenticationError):
        return LLMError(
            "The LLM provider rejected the API key (HTTP 401). Check OPENAI_API_KEY.", 502
        )
    if isinstance(exc, openai.PermissionDeniedError):
        return LLMError("The LLM provider denied access (HTTP 403). Check the key's rights.", 502)
    if isinstance(exc, openai.RateLimitError):
        return LLMError(
            "The LLM provider is rate-limiting requests (HTTP 429). Wait a moment and try again.",
            429,
        )
    if isinstance(exc, openai.NotFoundError):
        return LLMError(
            f"The LLM provider does not know model '{settings.model}' or the URL is wrong "
            f"(HTTP 404). Check LLM_MODEL and OPENAI_API_BASE ({where}).",
            502,
        )
    if isinstance(exc, openai.APITimeoutError):
        # Each try waits the whole timeout: say so, or 2 tries of 5 s read as "within 5s".
        tries = f", each of {settings.max_retries + 1} tries" if settings.max_retries else ""
        return LLMError(
            f"The LLM provider did not answer within {settings.timeout:g}s{tries} ({where}).", 504
        )
    if isinstance(exc, openai.APIConnectionError) and isinstance(
        exc.__cause__, httpx2.RemoteProtocolError
    ):  # it hung up, or answered but not in HTTP or not within the bounds: say which
        return LLMError(
            f"The LLM provider at {where} did not answer properly: {exc.__cause__}", 502
        )
    if isinstance(exc, openai.APIConnectionError):
        return LLMError(
            f"Cannot reach the LLM provider at {where}: connection refused or network error.", 502
        )
    if isinstance(exc, openai.APIStatusError):
        # openai's message repeats the status ("Error code: 500 - ..."): say it once
        detail = re.sub(r"^Error code: \d+ - ", "", exc.message or "")
        return LLMError(f"The LLM provider answered HTTP {exc.status_code}: {detail}", 502)
    return LLMError(f"LLM request failed: {describe_error(exc)}", 502)
