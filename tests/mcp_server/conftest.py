"""Fixtures of the main.py tests: a real api.py and main.py for a module (`real`), for what
needs the process (a transport such as SSE, the banner, HTTP checks), and a Redis key prefix
of a test's own (`prefix`) for main.py with REDIS_URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.databases import redis_prefix
from tests.stack import Stack, stack_fixture


@stack_fixture
def real(s: Stack) -> None:
    """api.py and main.py (both HTTP transports) as processes, shared by a module's tests."""
    s.mcp(s.api())


@pytest.fixture
def prefix() -> Iterator[str]:
    """A Redis key prefix of the test's own (tests/databases.py), its keys dropped after."""
    with redis_prefix() as p:
        yield p
