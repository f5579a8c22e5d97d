"""One plain, bounded log format for the services.

Why not the SDK's rich handler: rich renders a traceback in ~0.3 s of CPU and wraps every line
at 80 columns, and a client decides what gets logged (a session deleted under its own calls
logs a traceback; an unknown tool's name is logged as sent). Why bounded: that name can be
1 MB, and 600 such calls wrote 600 MB of log. Each message is cut to `MAX_MESSAGE` characters,
saying how much was left out; tracebacks are kept whole (they are ours, not the client's),
except one kind: the SDK's client transports log a 70-line traceback when a server they were
reading from went away (`Error in sse_reader`: peer closed connection), which web.py then
reports itself in one line ("lost connection"). Those become one line too.
"""

from __future__ import annotations

import logging

MAX_MESSAGE = 2000
QUIET_PEERS_OF = "mcp.client."  # loggers whose network errors are logged in one line
NETWORK_ERRORS_FROM = frozenset({"httpx", "httpcore", "httpx2", "httpcore2"})  # packages
FORMAT = "%(levelname)s:%(name)s: %(message)s"


class BoundedFormatter(logging.Formatter):
    """A formatter whose message part is at most `limit` characters."""

    def __init__(self, fmt: str = FORMAT, limit: int = MAX_MESSAGE) -> None:
        super().__init__(fmt)
        self.limit = limit

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and record.name.startswith(QUIET_PEERS_OF):
            e = record.exc_info[1]
            if e is not None and type(e).__module__.split(".")[0] in NETWORK_ERRORS_FROM:
                record = logging.makeLogRecord(
                    {
                        **record.__dict__,
                        "msg": f"{record.getMessage()}: {type(e).__name__}: {e}",
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
        return super().formatMessage(record)


def setup_logging(level: int | str = logging.INFO) -> None:
    """Replace whatever handlers the root logger has (the SDK installs rich's on import)."""
    handler = logging.StreamHandler()
    handler.setFormatter(BoundedFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
