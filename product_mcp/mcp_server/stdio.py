"""main.py over stdio: the SDK's transport, fed by a reader that bounds a line and answers a
line that is not a JSON-RPC message.

Why: the SDK's stdio reader read a line of any length into memory, and turned a line that was
not a message into an exception only the server's log saw: the client got no answer and waited
forever. Here a line is at most `MAX_BODY_BYTES` (what /mcp takes in one body; the rest of a
longer line is read and dropped, never held), and a bad line gets the JSON-RPC error HTTP gives
(-32700 not JSON, -32600 not a message), with the line's id when it has a usable one. Blank
lines are skipped. The SDK still owns stdout and the session; stdin is claimed here as the SDK
claims it (fd 0 then reads the null device, so nothing else in the process eats the wire).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

import anyio
import anyio.to_thread
import mcp_types as types
import pydantic_core
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from pydantic import ValidationError

from models import MAX_BODY_BYTES
from product_mcp.core.mcp_compat import run_on_streams

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
CHUNK = 64 * 1024  # how much of an over-long line is read (and dropped) at a time

Reply = Callable[[SessionMessage], Awaitable[None]]


class BoundedLines:
    """The lines of a binary stream as text, for `stdio_server(stdin=...)`, bad ones answered
    through `reply` (set once the transport's write stream exists) instead of passed on."""

    def __init__(self, source: BinaryIO, limit: int = MAX_BODY_BYTES) -> None:
        self._source = source
        self._limit = limit
        self._reply: Reply | None = None
        self._replying = anyio.Event()

    def answer_with(self, reply: Reply) -> None:
        self._reply = reply
        self._replying.set()

    def __aiter__(self) -> BoundedLines:
        return self

    async def __anext__(self) -> str:
        while True:
            raw = await anyio.to_thread.run_sync(self._read_line, abandon_on_cancel=True)
            if raw is None:
                raise StopAsyncIteration
            if isinstance(raw, int):
                await self._refuse(
                    None,
                    INVALID_REQUEST,
                    f"Invalid Request: a line of {raw} bytes or more; a message on stdio may "
                    f"take at most {self._limit} bytes",
                )
                continue
            if not raw.strip():
                continue
            line = raw.decode("utf-8", errors="replace")
            problem = _problem(line)
            if problem is None:
                return line
            await self._refuse(*problem)

    def _read_line(self) -> bytes | int | None:
        """A line; its length so far if it passed the limit (the rest is dropped); None at
        the end of input. Runs in a worker thread: the read blocks."""
        line = self._source.readline(self._limit + 1)
        if not line:
            return None
        if line.endswith(b"\n") or len(line) <= self._limit:
            return line
        size = len(line)
        while True:
            rest = self._source.readline(CHUNK)
            size += len(rest)
            if not rest or rest.endswith(b"\n"):
                return size

    async def _refuse(self, rid: Any, code: int, message: str) -> None:
        await self._replying.wait()
        assert self._reply is not None
        error = types.JSONRPCError(
            jsonrpc="2.0", id=rid, error=types.ErrorData(code=code, message=message)
        )
        await self._reply(SessionMessage(error))


def _problem(line: str) -> tuple[Any, int, str] | None:
    """Why a line is not a JSON-RPC message (its id, the code, the words), or None."""
    try:
        message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    except ValidationError as e:
        as_text = e
    else:
        # a request whose id is not a string or a number reads as a notification: dropped
        # unanswered (found from outside); a notification has no id at all
        if not isinstance(message, types.JSONRPCNotification) or '"id"' not in line:
            return None
        data = pydantic_core.from_json(line)
        if not (isinstance(data, dict) and "id" in data):
            return None
        return None, INVALID_REQUEST, "Invalid Request: id: must be a string or an integer"
    try:
        data = pydantic_core.from_json(line)
    except ValueError as e:
        return None, PARSE_ERROR, f"Parse error: the line is not JSON ({e})"
    if not isinstance(data, dict):
        return None, INVALID_REQUEST, "Invalid Request: a JSON-RPC message must be a JSON object"
    rid = data.get("id")
    if not (isinstance(rid, int | str) and not isinstance(rid, bool) and len(str(rid)) <= 256):
        rid = None
    try:
        types.jsonrpc_message_adapter.validate_python(data, by_name=False)
    except ValidationError as e:
        return rid, INVALID_REQUEST, _said(e)
    # Valid once parsed, not as the text the SDK reads (it would drop it unanswered): refused
    # here with what the SDK's own check says.
    return rid, INVALID_REQUEST, _said(as_text)


def _said(e: ValidationError) -> str:
    first = e.errors()[0]
    where = ".".join(str(part) for part in first["loc"][1:]) or "message"
    return f"Invalid Request: {where}: {first['msg']}"


def claim_stdin() -> tuple[BinaryIO, Callable[[], None]]:
    """fd 0's wire as a private binary file; fd 0 itself reads the null device until
    `release` (as the SDK's own claim: a child or a stray read cannot eat messages)."""
    private = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)

    def release() -> None:
        os.dup2(private, 0)

    # closefd=False: a worker thread may still block on it after the transport ends.
    return os.fdopen(private, "rb", closefd=False), release


async def run_stdio(server: Any) -> None:
    """Serve one MCP session on stdin/stdout with `server` (an `MCPServer`)."""
    source, release = claim_stdin()
    lines = BoundedLines(source)
    try:
        async with stdio_server(stdin=lines) as (read_stream, write_stream):  # type: ignore[arg-type]
            lines.answer_with(write_stream.send)
            await run_on_streams(server, read_stream, write_stream)
    finally:
        release()
