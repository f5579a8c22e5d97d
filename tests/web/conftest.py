"""Fixtures of the web.py tests: the scripted LLM, the shop in process, web.py's app with
main.py in memory (`web`, its other servers from `web_servers`), web.py as a process with the
media server (`media_web`) and the scripted pages of the page tests.

A module whose web.py needs other servers overrides `web_servers`; one that needs other
settings or transports overrides `web` itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from product_mcp.mcp_server import mcp as shop_server
from tests.fake_llm import FakeLLM
from tests.inproc import InProcessWeb, shop_in_process, web_app
from tests.servers import Service, free_port, start
from tests.stack import Stack
from tests.web.page_harness import scripted_pages


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
def web_servers() -> dict[str, Any]:
    """The servers a module's `web` has besides main.py's "shop": an MCP server object is
    reached in memory, a dict is its mcp.json entry. None, unless the module overrides this."""
    return {}


@pytest.fixture(scope="module")
def web(
    shop_api: TestClient,
    chat_settings: dict[str, str],
    web_servers: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[InProcessWeb]:
    """web.py's app in process for one module: main.py's server in memory as "shop" (its API
    in process: `shop_api`), the scripted LLM (`chat_settings`) and `web_servers`."""
    entries = {name: s for name, s in web_servers.items() if isinstance(s, dict)}
    in_memory = {name: s for name, s in web_servers.items() if not isinstance(s, dict)}
    tmp = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    with web_app(
        tmp, entries, in_memory={"shop": shop_server, **in_memory}, **chat_settings
    ) as client:
        yield client


@pytest.fixture(scope="module")
def media_web(fake: FakeLLM, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """web.py as a process with tests/media_mcp.py (Streamable HTTP) as "media", the scripted
    LLM, and tool approval off."""
    with Stack(tmp_path_factory.mktemp("media-web")) as s:
        port = free_port()  # media_mcp as a module: the repo root, not tests/, on its path
        media = s.add("media", start(["-m", "tests.media_mcp", "--port", str(port)], port=port))
        yield s.web(
            {"media": {"url": f"{media.url}/mcp"}},
            {"OPENAI_API_KEY": "k", "OPENAI_API_BASE": fake.base_url, "TOOL_APPROVAL": "auto"},
        )


@pytest.fixture(scope="module")
def scripted(browser: Any, web: InProcessWeb) -> Iterator[dict[str, Any]]:
    """One page per size against `web`, kept for the module, whose reply stream the test
    writes step by step (page_harness.scripted_pages)."""
    with scripted_pages(browser, web.url) as opened:
        yield opened
