"""One error tree for the whole project: an HTTP status plus a sentence a person can act on.

Why one base: the API's exception handler, the MCP tools' `isError` results and web.py's JSON
errors all map from `ProductMcpError` the same way (`{"detail": message}` with `status`), so a
new error anywhere needs no new plumbing. The MCP server's `ApiError` lives with the MCP wing
(`product_mcp/mcp_server/api_client.py`): it must also subclass the SDK's `ToolError` (the one
exception whose message the SDK passes to the client), and importing the SDK here would load it
into api.py and web.py's start-up for nothing (tests/e2e/test_service_imports.py checks).
"""

from __future__ import annotations

import math
import sys
from typing import Any


class ProductMcpError(Exception):
    """Base: `status` is the HTTP status to answer with, `message` the user-facing sentence."""

    status: int = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    @property
    def detail(self) -> str:
        """The API's historical name for the message (FastAPI's `{"detail": ...}`)."""
        return self.message

    @property
    def status_code(self) -> int:
        return self.status


async def error_response(_: Any, exc: Exception) -> Any:
    """The exception handler api.py and web.py register for ProductMcpError: `{"detail":
    message}` (and any `body` the error carries, e.g. an import's errors by row) at its status.
    Starlette is imported here, not at the top: main.py's tools import this module too."""
    from starlette.responses import JSONResponse

    assert isinstance(exc, ProductMcpError)
    extra = getattr(exc, "body", None) or {}
    return JSONResponse({"detail": exc.message, **extra}, status_code=exc.status)


async def validation_response(request: Any, exc: Exception) -> Any:
    """The 422 api.py and web.py answer a request that failed validation with (FastAPI's own:
    `{"detail": [{loc, msg, type, input, ...}]}`), with what JSON cannot carry written as text.
    Python's JSON parser takes NaN, Infinity and 1e400 (an infinity) in a body, and strings
    with a lone surrogate (`"\\ud800"`, which no UTF-8 can encode); echoing such an input back
    could not be encoded: a 500 where the client deserved to hear which field."""
    from fastapi.encoders import jsonable_encoder
    from starlette.responses import JSONResponse

    errors = exc.errors()  # type: ignore[attr-defined]
    sent = request.headers.get("content-type", "")
    if not _is_json(sent):
        # FastAPI reads a body as JSON only when it says so; any other body reached the model
        # as bytes, and the error read "Input should be a valid dictionary or object", with
        # nothing about the content type (found from outside).
        for error in errors:
            if tuple(error.get("loc", ())) == ("body",):
                error["msg"] = (
                    f"{error['msg']}: send the body as JSON, with Content-Type: "
                    f"application/json (this one came as {sent or 'no Content-Type'!r})"
                )
    budget = [ECHO_NODES]
    for error in errors:  # our validators' own sentences, without pydantic's "Value error, "
        msg = error.get("msg")
        if error.get("type") == "value_error" and isinstance(msg, str):
            error["msg"] = msg.removeprefix("Value error, ")
        if "input" in error:
            error["input"] = _echo(error["input"], 0, budget)
    return JSONResponse({"detail": _as_json(jsonable_encoder(errors))}, status_code=422)


# What a 422 echoes of a failing input: it echoed the whole value, and an 800-deep array made
# the handler itself fail (RecursionError: a 500 and a 3,000-line traceback; found from outside).
ECHO_DEPTH = 8  # levels of nesting shown
ECHO_NODES = 200  # values shown over all the errors of one answer
ECHO_CHARS = 500  # characters of one string shown
CUT = "…"


def _echo(value: Any, depth: int, budget: list[int]) -> Any:
    """`value` cut short to be echoed: nesting, items and text beyond the bounds become `…`."""
    budget[0] -= 1
    if isinstance(value, bytes):
        value = value[: ECHO_CHARS * 4].decode("utf-8", "replace")
    if isinstance(value, str):
        return value if len(value) <= ECHO_CHARS else value[:ECHO_CHARS] + CUT
    if not isinstance(value, dict | list | tuple):
        return value
    if depth >= ECHO_DEPTH or budget[0] <= 0:
        return CUT
    if isinstance(value, dict):
        shown: dict[str, Any] = {}
        for key, item in value.items():
            if budget[0] <= 0:
                shown[CUT] = f"{len(value) - len(shown)} more"
                break
            shown[str(key)[:ECHO_CHARS]] = _echo(item, depth + 1, budget)
        return shown
    items: list[Any] = []
    for item in value:
        if budget[0] <= 0:
            items.append(CUT)
            break
        items.append(_echo(item, depth + 1, budget))
    return items


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


async def http_error_response(request: Any, exc: Exception) -> Any:
    """FastAPI's answer to an HTTPException, except a body its JSON parser gave up on: that was
    400 "There was an error parsing the body", which said neither where nor why (a deeply
    nested body makes Python's parser raise RecursionError). It now says why."""
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import JSONResponse

    cause = exc.__cause__
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if getattr(exc, "detail", None) == UNPARSED and encoding != "identity":
        # A compressed body read as text was "UnicodeDecodeError: 'utf-8' codec ..."
        said = encodable(encoding)[:50]
        why = f"Content-Encoding: {said} is not accepted: send the body uncompressed"
        return JSONResponse({"detail": why}, status_code=415)
    if getattr(exc, "detail", None) == UNPARSED and cause is not None:
        if isinstance(cause, RecursionError):
            why = "it nests deeper than the parser can follow"
        elif isinstance(cause, ValueError) and "integer string conversion" in str(cause):
            digits = sys.get_int_max_str_digits()  # Python's words name its internals
            why = f"a number has more than {digits} digits"
        else:
            why = f"{type(cause).__name__}: {encodable(str(cause))[:200]}"
        exc.detail = f"{UNPARSED}: body: not JSON the service can read ({why})"  # type: ignore[attr-defined]
    return await http_exception_handler(request, exc)  # type: ignore[arg-type]


UNPARSED = "There was an error parsing the body"  # FastAPI's words (fastapi/routing.py)


def _as_json(value: Any) -> Any:
    """`value` with every NaN or infinite number replaced by its text ("nan", "inf"), and
    every lone surrogate in a string by its escape (the text `\\ud800`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return encodable(value)
    if isinstance(value, dict):
        return {encodable(str(k)): _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    return value


def encodable(text: str) -> str:
    """`text`, with any lone surrogate (which UTF-8 cannot encode) written as its escape."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


# --- the shop (api.py) -------------------------------------------------------------------


class ShopError(ProductMcpError):
    """A request the shop refuses (400 by default)."""

    status = 400


class NotFound(ShopError):
    status = 404


class Conflict(ShopError):
    status = 409


# --- the MCP server (main.py): ApiError, in product_mcp/mcp_server/api_client.py ----------


# --- the web chat (web.py) ----------------------------------------------------------------


class ToolCallError(ProductMcpError):
    """A call could not produce a tool result; the message is meant for people and models."""

    status = 502


class ServerUnavailable(ToolCallError):
    status = 503


class ToolTimeout(ToolCallError):
    status = 504


class UnknownTool(ToolCallError):
    status = 404


class LLMError(ProductMcpError):
    """The model could not be reached or refused; the message is shown to the user."""

    status = 502
