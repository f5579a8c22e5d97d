"""One plain, bounded log format for the services.

Why not the SDK's rich handler: rich renders a traceback in ~0.3 s of CPU and wraps every line
at 80 columns, and a client decides what gets logged (a session deleted under its own calls
logs a traceback; an unknown tool's name is logged as sent). Why bounded: that name can be
1 MB, and 600 such calls wrote 600 MB of log. Each message is cut to `MAX_MESSAGE` characters,
saying how much was left out; tracebacks are kept whole (they are ours, not the client's),
except one kind: the SDK's client transports log a 70-line traceback when a server they were
reading from went away (`Error in sse_reader`: peer closed connection), which web.py then
reports itself in one line ("lost connection"). Those become one line too, and so do the
server transports' tracebacks for a client that went away: a POST dropped mid-body
(`ClientDisconnect`) or a session deleted while its calls stream (`ClosedResourceError`), which
any client can cause at will. A peer's malformed message (a client's POST to /messages/, a
stdio server's line of stdout that is not JSON-RPC, an HTTP server's reply that is not, or is
beyond web.py's bounds) is one line too, the error cut short.

Such a peer's messages are also rate-limited (`Repeats`): a server sending invalid
notifications (`"progressToken": null`) ~1000 times a second wrote 47,680 tracebacks, 60 MiB,
to web.py's log in 30 s (found from outside). The first is logged, then one line per
`REPEAT_EVERY` seconds at most, saying how many like it were left out; each server (the
`peer` context variable, set by the task that owns its session) and kind counted apart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar

MAX_MESSAGE = 2000
QUIET_PEERS_OF = "mcp.client."  # loggers whose network errors are logged in one line
NETWORK_ERRORS_FROM = frozenset({"httpx", "httpcore", "httpx2", "httpcore2"})  # packages
# (logger, message) -> the exceptions for which its traceback tells nothing: the SDK's server
# transports when a client went away (a POST dropped mid-body, a session deleted under its
# streaming calls), and its reports of a peer's malformed message (a client's POST, a stdio
# server's line of stdout), a 20- to 40-line pydantic traceback each, as often as the peer
# likes. Keyed on the message too (review): the same exception elsewhere in the SDK, e.g. a
# stream this side closed and used again, is a bug of ours, and keeps its traceback.
CLIENT_GONE = frozenset({"starlette.ClientDisconnect", "anyio.ClosedResourceError",
                         "anyio.BrokenResourceError", "anyio.EndOfStream"})  # fmt: skip
MALFORMED = frozenset({"pydantic_core.ValidationError", "json.JSONDecodeError"})
ONE_LINE_FOR = {
    ("mcp.server.streamable_http", "Error handling POST request"): CLIENT_GONE,
    ("mcp.server.streamable_http", "SSE response error"): CLIENT_GONE,
    ("mcp.server.sse", "Failed to parse message"): MALFORMED,
    ("mcp.client.stdio", "Failed to parse JSONRPC message from server"): MALFORMED,
    # an HTTP server's reply that is not JSON-RPC, or one web.py refuses (over its bounds)
    ("mcp.client.streamable_http", "Error parsing JSON response"): MALFORMED
    | {"product_mcp.ReplyRefused"},
    # the SDK's client session logs as "client", not by its module's name
    ("client", "Failed to validate notification: %s"): MALFORMED,
}
# What a peer can make the SDK log as often as it likes: rate-limited per peer and kind.
REPEATED = frozenset(ONE_LINE_FOR) | {
    ("client", "notification queue for %r is full; dropped the oldest event"),
}
REPEAT_EVERY = 60.0  # seconds: after the first, at most one line per peer and kind in each
REPEAT_KINDS = 1000  # (peer, kind) pairs remembered; the oldest is forgotten first
# The MCP server whose session the current task serves (web.py's supervisor task sets it).
peer: ContextVar[str | None] = ContextVar("log_peer", default=None)
ONE_LINE_ERROR = 300  # characters of the error kept in such a line
FORMAT = "%(levelname)s:%(name)s: %(message)s"


def _leaves(e: BaseException) -> Iterator[BaseException]:
    if isinstance(e, BaseExceptionGroup):
        for sub in e.exceptions:
            yield from _leaves(sub)
    else:
        yield e


def _root(e: BaseException) -> str:
    return type(e).__module__.split(".")[0]


def _said(e: BaseException) -> str:
    """`Type: message` on one line (a pydantic error's report spans many)."""
    return " ".join(f"{type(e).__name__}: {e}".split()).rstrip(":")


def _one_line(record: logging.LogRecord) -> bool:
    """Whether this record's traceback says nothing an operator needs (see the module)."""
    e = record.exc_info[1] if record.exc_info else None
    if e is None:
        return False
    if record.name.startswith(QUIET_PEERS_OF) and _root(e) in NETWORK_ERRORS_FROM:
        return True
    expected = ONE_LINE_FOR.get((record.name, record.msg))
    return expected is not None and all(_kind(x) in expected for x in _leaves(e))


def _kind(e: BaseException) -> str:
    return f"{_root(e)}.{type(e).__name__}"


class Repeats(logging.Filter):
    """Lets through the first of a peer's repeated messages (REPEATED), then at most one per
    `every` seconds, which says how many were left out since; other records pass as they are.
    A record let through is marked with the peer's name and that count (`repeat_note`)."""

    def __init__(
        self, every: float = REPEAT_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.every = every
        self.clock = clock
        self._seen: dict[tuple[object, ...], list[float]] = {}  # key -> [since, left out]

    def filter(self, record: logging.LogRecord) -> bool:
        # a message need not be a string (a dict, a list): unhashable, it raised in the caller
        if not isinstance(record.msg, str) or (record.name, record.msg) not in REPEATED:
            return True
        who = peer.get()
        key = (who, record.name, record.msg, str(record.args)[:200])
        now = self.clock()
        state = self._seen.get(key)
        if state is not None and now - state[0] < self.every:
            state[1] += 1
            return False
        since, left_out = (state[0], int(state[1])) if state is not None else (now, 0)
        self._seen.pop(key, None)
        self._seen[key] = [now, 0]
        while len(self._seen) > REPEAT_KINDS:
            del self._seen[next(iter(self._seen))]
        notes = [f"server '{who}'"] if who is not None else []
        if left_out:
            notes.append(f"{left_out} more like it in the last {now - since:.0f} s")
        if notes:
            record.repeat_note = f" ({'; '.join(notes)})"
        return True


class BoundedFormatter(logging.Formatter):
    """A formatter whose message part is at most `limit` characters."""

    def __init__(self, fmt: str = FORMAT, limit: int = MAX_MESSAGE) -> None:
        super().__init__(fmt)
        self.limit = limit

    def format(self, record: logging.LogRecord) -> str:
        if _one_line(record):
            e = record.exc_info[1]  # type: ignore[index]
            what = ", ".join(dict.fromkeys(map(_said, _leaves(e))))
            if len(what) > ONE_LINE_ERROR:
                what = what[: ONE_LINE_ERROR - 1] + "…"
            record = logging.makeLogRecord(
                {
                    **record.__dict__,
                    "msg": f"{record.getMessage()}: {what}",
                    "args": None,
                    "exc_info": None,
                    "exc_text": None,
                }
            )
        return super().format(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        if len(message) > self.limit:
            cut = len(message) - self.limit
            record.message = f"{message[: self.limit]}… ({cut} more characters)"
        record.message += getattr(record, "repeat_note", "")  # Repeats: whose, how many more
        return super().formatMessage(record)


def setup_logging(level: int | str = logging.INFO) -> None:
    """Replace whatever handlers the root logger has (the SDK installs rich's on import)."""
    handler = logging.StreamHandler()
    handler.setFormatter(BoundedFormatter())
    handler.addFilter(Repeats())
    logging.basicConfig(level=level, handlers=[handler], force=True)
