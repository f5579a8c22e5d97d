"""Fixtures shared by the test modules: the async backend and a real api.py per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import Service, start_api


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Service]:
    """api.py on its own fresh SQLite file, shared by the tests of one module."""
    name = request.module.__name__.rsplit(".", 1)[-1]
    svc = start_api(tmp_path_factory.mktemp(name) / "shop.db")
    yield svc
    svc.stop()
