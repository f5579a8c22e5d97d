"""One plain, bounded log format for the services.

Why not the SDK's rich handler: rich renders a traceback in ~0.3 s of CPU and wraps every line
at 80 columns, and a client decides what gets logged (a session deleted under its own calls
logs a traceback; an unknown tool's name is logged as sent). Why bounded: that name can be
1 MB, and 600 such calls wrote 600 MB of log. Each message is cut to `MAX_MESSAGE` characters,
saying how much was left out; tracebacks are kept whole (they are ours, not the client's).
"""

from __future__ import annotations

import logging

MAX_MESSAGE = 2000
FORMAT = "%(levelname)s:%(name)s: %(message)s"


class BoundedFormatter(logging.Formatter):
    """A formatter whose message part is at most `limit` characters."""

    def __init__(self, fmt: str = FORMAT, limit: int = MAX_MESSAGE) -> None:
        super().__init__(fmt)
        self.limit = limit

    def formatMessage(self, record: logging.LogRecord) -> str:
        message = record.message
        if len(message) > self.limit:
            cut = len(message) - self.limit
            record.message = f"{message[: self.limit]}… ({cut} more characters)"
        return super().formatMessage(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Replace whatever handlers the root logger has (the SDK installs rich's on import)."""
    handler = logging.StreamHandler()
    handler.setFormatter(BoundedFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
