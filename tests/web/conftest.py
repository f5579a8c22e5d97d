"""Fixtures of the web.py tests: the scripted LLM, the shop in process, one Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.fake_llm import FakeLLM
from tests.inproc import shop_in_process
from tests.web.page_harness import chromium


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeLLM]:
    llm = FakeLLM().start()
    yield llm
    llm.stop()


@pytest.fixture(scope="module")
def chat_settings(fake: FakeLLM) -> dict[str, str]:
    """web.py's settings for chat tests: the scripted LLM, and 3 s for tools and the LLM."""
    return {
        "OPENAI_API_KEY": "test-key",
        "OPENAI_API_BASE": fake.base_url,
        "TOOL_CALL_TIMEOUT": "3",
        "LLM_TIMEOUT": "3",
    }


@pytest.fixture(scope="module")
def shop_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """api.py's app, with main.py's MCP server (`product_mcp.mcp_server.mcp`) wired to it."""
    with shop_in_process(tmp_path_factory.mktemp("shop") / "shop.db") as api:
        yield api


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for a module's page tests (page_harness.chromium)."""
    with chromium() as b:
        yield b
