"""A PostgreSQL host that goes silent (nothing refuses: a dead machine, a dropped network)
ends a connection attempt in bounded time. Found from outside: with no connect_timeout,
libpq waited for ever for a server that accepted the TCP connection and said nothing, and
requests needing a connection hung with it (the keepalive and tcp_user_timeout settings that
bound a pooled connection need a real network fault to show, and are not tested here)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from product_mcp.shop.schema import make_engine


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port whose listener takes connections (the kernel completes them) and never speaks."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def test_a_silent_server_is_given_up_on(silent_server: int) -> None:
    engine = make_engine(f"postgresql://u@127.0.0.1:{silent_server}/shop")
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError, match="timeout"), engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    finally:
        engine.dispose()
    assert time.monotonic() - started < 30  # a bound, not a speed check: it never ended
