"""The per-turn work web.py does once instead: compiled argument validators per tool schema,
and the tool table and request `tools` payload (and its JSON) per tool-list generation
(issue #14's CPU)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import jsonschema
import pytest
from mcp.types import Tool, ToolAnnotations

from product_mcp.chat import arguments
from product_mcp.chat.arguments import validate_arguments
from product_mcp.chat.llm import LLMSettings, encode_body
from product_mcp.chat.loop import ChatEngine
from product_mcp.chat.manager import McpManager, Offer
from product_mcp.chat.mcp_config import McpConfig, ServerConfig
from product_mcp.chat.results import ToolEntry

SCHEMA = {
    "type": "object",
    "properties": {"quantity": {"type": "integer", "minimum": 1}},
    "required": ["quantity"],
}


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    built: list[Any] = []
    real = jsonschema.validators.validator_for

    def counting(schema: Any, *a: Any, **kw: Any) -> Any:
        built.append(schema)
        return real(schema, *a, **kw)

    monkeypatch.setattr(jsonschema.validators, "validator_for", counting)
    return built


def test_validator_built_once_per_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    built = _count_builds(monkeypatch)
    entry = ToolEntry("shop", Tool(name="buy", input_schema=SCHEMA))
    schema = entry.input_schema  # the tool's own copy
    for _ in range(5):
        assert validate_arguments(entry, {"quantity": 2}) is None
        said = validate_arguments(entry, {"quantity": 0})
        assert said == "invalid arguments for 'buy': quantity: must be ≥ 1 (got 0)"
    assert sum(s is schema for s in built) == 1  # (jsonschema also calls it for subschemas)
    # A tool list refresh brings a new schema object, which gets its own validator and rules.
    changed = {**SCHEMA, "properties": {"quantity": {"type": "integer", "maximum": 3}}}
    fresh = ToolEntry("shop", Tool(name="buy", input_schema=changed))
    assert validate_arguments(fresh, {"quantity": 0}) is None
    assert "must be ≤ 3" in (validate_arguments(fresh, {"quantity": 9}) or "")
    assert sum(s is fresh.input_schema for s in built) == 1
    # A tool without a schema shares one (so one validator), and takes any object.
    bare = ToolEntry("shop", Tool.model_construct(name="ping", input_schema=None))
    assert bare.input_schema is ToolEntry("x", bare.tool).input_schema
    assert validate_arguments(bare, {"anything": 1}) is None


def test_validator_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(arguments, "CACHE_MAX", 3)
    monkeypatch.setattr(arguments, "_validators", {})
    schemas = [{"type": "object", "properties": {f"p{i}": {"type": "string"}}} for i in range(10)]
    for s in schemas:
        assert validate_arguments(ToolEntry("s", Tool(name="t", input_schema=s)), {}) is None
    assert len(arguments._validators) <= 3


def test_unusable_schema_still_lets_the_server_judge() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}
    entry = ToolEntry("s", Tool(name="dangling", input_schema=schema))
    for _ in range(2):  # the cached validator fails again at check time: still no verdict
        assert validate_arguments(entry, {"a": 1}) is None


def _tool(name: str, read_only: bool = True) -> Tool:
    return Tool(
        name=name,
        description=f"{name} tool",
        input_schema={"type": "object", "properties": {"q": {"type": "string"}}},
        annotations=ToolAnnotations(read_only_hint=read_only),
    )


def test_offer_built_once_per_tool_list_generation() -> None:
    async def main() -> None:
        config = McpConfig(
            servers=[
                ServerConfig(name="a", transport="http", url="http://127.0.0.1:1/mcp"),
                ServerConfig(name="b", transport="http", url="http://127.0.0.1:2/mcp"),
            ]
        )
        manager = McpManager(config)
        a, b = manager.connections["a"], manager.connections["b"]
        a.tools, b.tools = [_tool("search")], [_tool("search"), _tool("buy", False)]
        a.status = b.status = "connected"
        first = manager.offer()
        assert manager.offer() is first  # nothing changed: the same table and payload
        assert sorted(first.table) == ["a__search", "b__search", "buy"]
        by_name = {f["function"]["name"]: f["function"] for f in first.functions}
        assert by_name["buy"]["description"] == "[b] buy tool"
        assert by_name["buy"]["parameters"]["properties"] == {"q": {"type": "string"}}

        b.tools = [_tool("search")]  # a refresh: a new list
        second = manager.offer()
        assert second is not first and sorted(second.table) == ["a__search", "b__search"]

        b.status = "failed"  # its tools are no longer offered
        third = manager.offer()
        assert sorted(third.table) == ["search"] and [
            f["function"]["name"] for f in third.functions
        ] == ["search"]
        b.status = "connected"
        assert sorted(manager.offer().table) == ["a__search", "b__search"]

    anyio.run(main)


def test_request_body_is_the_json_openai_would_send() -> None:
    """The body is sent encoded (the tools' JSON once per tool list): the same JSON as
    openai's own encoder writes, UTF-8 as it is, and a schema that is not JSON still fails."""
    from openai._utils._json import openapi_dumps

    manager = McpManager(McpConfig(servers=[]))
    table = {"buy": ToolEntry("shop", _tool("buy", False)), "vérifier": ToolEntry("s", _tool("x"))}
    offer = Offer(table, [{"type": "function", "function": {"name": n}} for n in table])
    engine = ChatEngine(manager, LLMSettings())
    messages = [{"role": "user", "content": "Grüße, ünïcode ✓"}]
    body = engine._request(messages, offer.functions)
    sent = encode_body(body, offer.functions_json)
    assert json.loads(sent) == json.loads(openapi_dumps(body)) == body  # "tools" comes last
    assert len(sent) == len(openapi_dumps(body))  # the same spacing, UTF-8 as it is
    assert offer.functions_json is offer.functions_json  # encoded once
    plain = engine._request(messages, [])
    assert encode_body(plain) == encode_body(plain, offer.functions_json) == openapi_dumps(plain)
    nan = Offer({}, [{"type": "function", "function": {"parameters": {"maximum": float("nan")}}}])
    with pytest.raises(ValueError):
        nan.functions_json  # noqa: B018
    with pytest.raises(ValueError):
        openapi_dumps(nan.functions)


@pytest.mark.parametrize(
    "base", [None, "http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1/", "https://llm.example/api/v2"]
)
def test_completions_url_is_the_one_openai_builds(base: str | None) -> None:
    """web.py hands openai the whole URL (openai parses the relative path and the base URL
    again for every request otherwise): the same URL openai would build."""
    engine = ChatEngine(McpManager(McpConfig(servers=[])), LLMSettings(api_key="k", base_url=base))
    assert engine.client is not None
    assert engine.url == str(engine.client._prepare_url("/chat/completions"))
    assert engine.url.endswith("/chat/completions") and "//chat" not in engine.url


def test_the_event_loop_thread_names_asyncio_for_sniffio() -> None:
    """anyio asks sniffio for the event loop at every cancel scope; web.py's lifespan names it
    once for the loop's thread (no import and `getpid` each time), and only for its life."""
    import sniffio

    from product_mcp.core.serve import asyncio_named

    def library() -> str | None:
        try:
            return sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            return None

    assert library() is None  # no event loop here
    with asyncio_named():
        assert library() == "asyncio" and sniffio.thread_local.name == "asyncio"
    assert library() is None and sniffio.thread_local.name is None


def test_the_services_dependency_runs_on_the_event_loop() -> None:
    """FastAPI runs a plain `def` dependency in its thread pool: a thread hop and two loop
    wake-ups for every request web.py serves (~0.15 ms of CPU per request, issue #14)."""
    import asyncio

    from product_mcp.chat.services import services

    assert asyncio.iscoroutinefunction(services)
