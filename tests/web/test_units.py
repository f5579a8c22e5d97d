"""Fast unit tests of web.py's pure parts: mcp.json parsing, tool naming, history checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest
from mcp.types import CallToolResult, ElicitRequestFormParams, TextContent, Tool, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from models import (
    HISTORY_MAX_CHARS,
    HISTORY_MAX_CONTENT,
    MAX_BODY_BYTES,
    MAX_ITEMS,
    MAX_MCP_SERVERS,
    MAX_PRODUCT_NAME,
    QUOTE_META_KEY,
)
from product_mcp.chat.arguments import validate_arguments
from product_mcp.chat.elicitation import quote_of
from product_mcp.chat.history import ChatRequest, HistoryMessage, check_history, fit_for_history
from product_mcp.chat.mcp_config import load_config, parse_config
from product_mcp.chat.names import VALID, build_table, functions
from product_mcp.chat.results import ToolEntry, result_text
from tests.servers import ROOT


def parse(servers: Any, key: str = "mcpServers", **env: str) -> Any:
    return parse_config({key: servers}, base_dir=Path("/cfg"), environ=env)


def test_cursor_and_claude_shapes() -> None:
    cfg = parse(
        {
            "http": {"url": "http://127.0.0.1:8083/mcp", "headers": {"Authorization": "Bearer x"}},
            "sse": {"url": "http://127.0.0.1:8083/sse"},
            "sse-slash": {"url": "http://127.0.0.1:8083/sse/"},
            "not-sse": {"url": "http://127.0.0.1:8083/ssex"},
            "stdio": {"command": "node", "args": ["server.js"], "env": {"A": "1"}},
        }
    )
    assert cfg.errors == []
    got = {s.name: s for s in cfg.servers}
    assert {n: s.transport for n, s in got.items()} == {
        "http": "http",
        "sse": "sse",
        "sse-slash": "sse",
        "not-sse": "http",
        "stdio": "stdio",
    }
    assert got["http"].headers == {"Authorization": "Bearer x"}
    assert got["stdio"].args == ["server.js"] and got["stdio"].env == {"A": "1"}
    assert got["stdio"].cwd == "/cfg"


def test_vscode_shape_type_and_transport_keys() -> None:
    cfg = parse(
        {
            "a": {"type": "http", "url": "http://h/sse"},  # explicit type beats the path
            "b": {"transport": "sse", "url": "http://h/events"},
            "c": {"type": "stdio", "command": "python", "cwd": "sub"},
            "d": {"type": "streamable-http", "url": "https://h/mcp"},
            "off": {"url": "http://h/mcp", "disabled": True},
        },
        key="servers",
    )
    assert cfg.errors == []
    assert [(s.name, s.transport) for s in cfg.servers] == [
        ("a", "http"),
        ("b", "sse"),
        ("c", "stdio"),
        ("d", "http"),
    ]
    assert cfg.servers[2].cwd == "/cfg/sub"


def test_variable_expansion() -> None:
    cfg = parse(
        {
            "a": {"url": "http://h/mcp", "headers": {"Authorization": "Bearer ${TOKEN}"}},
            "b": {"command": "${BIN:-node}", "args": ["${HOME}/x"]},
            "c": {"url": "http://h/${MISSING}"},
        },
        TOKEN="t0k",
        HOME="/home/me",
    )
    assert cfg.servers[0].headers == {"Authorization": "Bearer t0k"}
    assert cfg.servers[1].command == "node" and cfg.servers[1].args == ["/home/me/x"]
    [err] = cfg.errors
    assert err.server == "c" and err.key == "url" and "MISSING" in err.message


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        ({"type": "websocket", "url": "ws://h"}, "type"),
        ({"url": "ftp://h/mcp"}, "url"),
        ({"url": 42}, "url"),
        ({"headers": {"a": "b"}}, "url"),
        ({"type": "stdio"}, "command"),
        ({"type": "sse"}, "url"),
        ({"command": "node", "args": "server.js"}, "args"),
        ({"command": "node", "env": {"A": ["x"]}}, "env.A"),
        ({"url": "http://h/mcp", "headers": []}, "headers"),
        ("http://h/mcp", "(entry)"),
        # found from outside (session 15): each loaded, then failed at every reconnect with
        # a misleading error (or a traceback at start)
        ({"url": "http://[::1/mcp"}, "url"),
        ({"url": "http://127.0.0.1:99999/mcp"}, "url"),
        (
            {"url": "http://h/mcp", "headers": {"Authorization": "Bearer café"}},
            "headers.Authorization",
        ),
        ({"url": "http://h/mcp", "headers": {"X": "a\r\nX-Injected: 1"}}, "headers.X"),
        ({"url": "http://h/mcp", "headers": {"Bad Name": "v"}}, "headers.Bad Name"),
        ({"url": "http://h/mcp", "headers": {"X": "token\n"}}, "headers.X"),  # review: `$`
    ],
)
def test_bad_entries_name_server_and_key(entry: Any, key: str) -> None:
    cfg = parse({"good": {"url": "http://h/mcp"}, "bad": entry})
    assert [s.name for s in cfg.servers] == ["good"], "the good server still loads"
    [err] = cfg.errors
    assert (err.server, err.key) == ("bad", key)
    assert "'bad'" in str(err) and f"'{key}'" in str(err)


def test_bad_files(tmp_path: Path) -> None:
    assert "file not found" in str(load_config(tmp_path / "nope.json").errors[0])
    broken = tmp_path / "mcp.json"
    broken.write_text('{"mcpServers": {')
    assert "invalid JSON at line 1" in str(load_config(broken).errors[0])
    broken.write_text(json.dumps({"servers": []}))
    assert "'servers'" in str(load_config(broken).errors[0])
    broken.write_text(json.dumps({"something": {}}))
    assert "'mcpServers'" in str(load_config(broken).errors[0])
    # found from outside (session 15): each of these stopped web.py with a traceback
    for raw, said in [
        ('{"mcpServers": {"café": {}}}'.encode("latin-1"), "not UTF-8 text"),
        (b'{"mcpServers": {}, "n": ' + b"9" * 5000 + b"}", "number"),
        (b'{"mcpServers": {}, "n": ' + b"[" * 100_000 + b"}", "nested"),
        (b'{"mcpServers": {"a": {"url": "http://[::1/mcp"}}}', "not a valid URL"),
    ]:
        broken.write_bytes(raw)
        errors = load_config(broken).errors
        assert errors and said in str(errors[0]), (raw[:40], errors)
    good = {"mcpServers": {"shop": {"url": "http://h/mcp"}}}
    for encoding in ("utf-8-sig", "utf-16"):  # a BOM (Notepad; PowerShell 5's `>`)
        broken.write_bytes(json.dumps(good).encode(encoding))
        cfg = load_config(broken)
        assert [s.name for s in cfg.servers] == ["shop"] and not cfg.errors, encoding
    three = ", ".join(f'"a": {{"url": "http://h/{i}"}}' for i in range(3))
    broken.write_text(f'{{"mcpServers": {{{three}, "b": {{"url": "http://h/b"}}}}}}')
    cfg = load_config(broken)
    assert [(e.server, e.message) for e in cfg.errors] == [("a", "defined twice")], cfg.errors
    assert [s.name for s in cfg.servers] == ["b"]
    broken.write_text(
        '{"mcpServers": {"a": {"url": "http://h/1", "url": "http://h/2"},'
        ' "b": {"url": "http://h/b", "headers": {"X": "1", "X": "2"}}}}'
    )
    cfg = load_config(broken)  # inside an entry too (review)
    assert [(e.server, e.key, e.message) for e in cfg.errors] == [
        ("a", "url", "given twice"),
        ("b", "headers.X", "given twice"),
    ]


def test_shipped_config_points_at_the_local_server() -> None:
    cfg = load_config(ROOT / "mcp.json")
    assert cfg.errors == []
    [server] = cfg.servers
    assert (server.transport, server.url) == ("http", "http://127.0.0.1:8083/mcp")


def entry(server: str, name: str, read_only: bool | None = None) -> ToolEntry:
    ann = ToolAnnotations(read_only_hint=read_only) if read_only is not None else None
    return ToolEntry(server, Tool(name=name, input_schema={"type": "object"}, annotations=ann))


def test_tool_names_are_unique_valid_and_mapped_by_table() -> None:
    entries = [
        entry("shop", "get_products"),
        entry("shop_v2", "get_products"),  # same tool name, underscore in the server name
        entry("shop", "v2_get_products"),
        entry("my server", "do.thing/now"),
        entry("x", "a" * 100),
        entry("y", "a" * 100),
        entry("solo", "unique_tool"),
    ]
    table = build_table(entries)
    assert len(table) == len(entries)
    assert all(VALID.match(name) for name in table)
    assert table["unique_tool"].server == "solo"  # unique and valid: kept as is
    assert {(e.server, e.name) for e in table.values()} == {(e.server, e.name) for e in entries}
    assert table["shop__get_products"].server == "shop"
    assert table["shop_v2__get_products"].server == "shop_v2"
    assert build_table(entries) == table, "deterministic"


def test_read_only_needs_an_explicit_hint() -> None:
    assert entry("s", "t", True).read_only
    assert not entry("s", "t", False).read_only
    assert not entry("s", "t").read_only


def test_result_text_prefers_structured_content() -> None:
    listed = CallToolResult(
        content=[TextContent(type="text", text='{"a": 1}'), TextContent(type="text", text="{}")],
        structured_content={"result": [{"a": 1}, {}]},
    )
    assert json.loads(result_text(listed)) == [{"a": 1}, {}]
    plain = CallToolResult(content=[TextContent(type="text", text="hi")])
    assert result_text(plain) == "hi"
    err = CallToolResult(content=[TextContent(type="text", text="bad")], is_error=True)
    assert result_text(err) == "bad"
    assert result_text(CallToolResult(content=[])) == "(the tool returned no content)"


def msgs(*items: dict[str, Any]) -> list[HistoryMessage]:
    return [HistoryMessage.model_validate(i) for i in items]


def test_history_rules() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ok = msgs(
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
        {"role": "assistant", "content": "done"},
    )
    assert check_history(ok) == ok
    with pytest.raises(ValueError, match="unknown tool_call_id"):
        check_history(msgs({"role": "tool", "tool_call_id": "zz", "content": "r"}))
    with pytest.raises(ValueError, match="not answered"):
        check_history(ok[:2] + ok[3:])
    with pytest.raises(ValueError, match="unanswered"):
        check_history(ok[:2])
    with pytest.raises(ValidationError):
        ChatRequest.model_validate(
            {"message": "x", "history": [{"role": "system", "content": "s"}]}
        )
    with pytest.raises(ValidationError):
        ChatRequest.model_validate({"message": ""})
    seed_style = ChatRequest.model_validate(
        {
            "message": "x",
            "history": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        }
    )
    assert len(seed_style.history) == 2


def test_history_total_text_is_capped_and_fits_the_body_limit() -> None:
    turns = []
    for _ in range(HISTORY_MAX_CHARS // 40_000):  # 25 turns of 2 x 20,000 = the whole budget
        turns += [
            {"role": "user", "content": "€" * 20_000},
            {"role": "assistant", "content": "€" * 20_000},
        ]
    body = {"message": "x", "history": turns}
    assert sum(len(t["content"]) for t in turns) == HISTORY_MAX_CHARS
    assert len(json.dumps(body, ensure_ascii=False).encode()) < MAX_BODY_BYTES  # 3-byte chars
    assert len(ChatRequest.model_validate(body).history) == len(turns)
    turns.append({"role": "user", "content": "one more"})
    with pytest.raises(ValidationError, match="characters of text"):
        ChatRequest.model_validate({"message": "x", "history": turns})


def test_fit_for_history_caps_text_and_tool_call_fields() -> None:
    long_reply = {"role": "assistant", "content": "a" * (HISTORY_MAX_CONTENT + 50_000)}
    fitted = fit_for_history(long_reply, 20_000)
    assert fitted["content"].startswith("a" * 20_000)
    assert fitted["content"].endswith(
        f"[truncated: {HISTORY_MAX_CONTENT + 30_000} more characters]"
    )
    assert long_reply["content"] == "a" * (HISTORY_MAX_CONTENT + 50_000)  # a copy, not in place
    # even a cap above the history limit leaves room for the marker
    assert HistoryMessage.model_validate(fit_for_history(long_reply, 10**9))
    call = {
        "id": "c" * 300,
        "type": "function",
        "function": {"name": "n" * 300, "arguments": "1" * 150_000},
    }
    turn = [
        fit_for_history({"role": "assistant", "content": None, "tool_calls": [call]}, 20_000),
        fit_for_history({"role": "tool", "tool_call_id": "c" * 300, "content": "r"}, 20_000),
    ]
    checked = check_history(msgs(*turn))
    fn = checked[0].tool_calls[0].function  # type: ignore[index]
    assert json.loads(fn.arguments) == {"_truncated": "150000 characters of arguments left out"}
    assert len(fn.name) == 128


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"text": {"$ref": "#/$defs/Missing"}}},
        {"type": "object", "properties": {"text": {"$ref": "other.json#/x"}}},
        {"$ref": "#"},
        {"type": "object", "properties": {"text": {"type": "no-such-type"}}},
    ],
)
def test_unusable_schema_skips_local_validation(
    schema: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    tool = Tool(name=f"t{id(schema)}", input_schema=schema)
    with caplog.at_level("WARNING", logger="chat"):
        assert validate_arguments(ToolEntry("srv", tool), {"text": "hi"}) is None
    assert "input schema unusable" in caplog.text and "unchecked" in caplog.text


def test_chat_request_bodies_need_no_openai_transform() -> None:
    """web.py posts its chat bodies without openai's params transform (llm.stream_chat, ~1.1 ms
    per request): that is only right while the transform gives them back unchanged."""
    import anyio
    from openai._utils import async_maybe_transform
    from openai.types.chat.completion_create_params import CompletionCreateParamsStreaming

    from product_mcp.chat.llm import LLMSettings
    from product_mcp.chat.loop import SYSTEM_PROMPT, ChatEngine

    schema = {
        "type": "object",
        "properties": {
            "customerName": {"type": "string", "minLength": 1, "format": "date-time"},
            "items": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"productId": {"type": "integer"}, "quantity": {"minimum": 1}},
                    "required": ["productId", "quantity"],
                },
            },
            "when": {"anyOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
        },
        "required": ["items"],
        "$defs": {"x": {"type": "string"}},
    }
    tools = [ToolEntry("shop", Tool(name="create_purchase", input_schema=schema))]
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    history = [
        HistoryMessage(role="user", content="hi 2026-01-01T00:00:00Z"),
        HistoryMessage(role="assistant", content=None, tool_calls=[call]),
        HistoryMessage(role="tool", tool_call_id="c1", content='{"date": "2026-01-01"}'),
        HistoryMessage(role="assistant", content="done"),
    ]
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    messages += [m.to_openai() for m in history] + [{"role": "user", "content": "and now?"}]
    engine = ChatEngine(None, LLMSettings())  # type: ignore[arg-type]
    for offered in (functions(build_table(tools)), []):
        body = engine._request(messages, offered)
        sent = anyio.run(async_maybe_transform, body, CompletionCreateParamsStreaming)
        assert sent == body


class _Item(BaseModel):
    quantity: int = Field(ge=1)


class _Search(BaseModel):
    query: str = Field(min_length=1)
    minPrice: float | None = Field(default=None, ge=0)
    limit: int = Field(default=10, ge=1, le=100)
    tags: list[Literal["new", "sale"]] | None = None
    items: list[_Item] = Field(default_factory=list, max_length=2)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        ({"query": "x", "minPrice": -5}, "minPrice: must be ≥ 0 (got -5)"),
        ({"query": "x", "minPrice": "cheap"}, 'minPrice: must be a number (got "cheap")'),
        ({"query": "x", "limit": 500}, "limit: must be ≤ 100 (got 500)"),
        ({"query": ""}, "query: must be at least 1 character long (got 0)"),
        ({}, "query: is required"),
        ({"query": "x", "tags": ["old"]}, 'tags[0]: must be one of "new", "sale" (got "old")'),
        ({"query": "x", "items": [{"quantity": 0}]}, "items[0].quantity: must be ≥ 1 (got 0)"),
        ({"query": "x", "items": [{}]}, "items[0].quantity: is required"),
        (
            {"query": "x", "items": [{"quantity": 1}] * 3},
            "items: must have at most 2 items (got 3)",
        ),
    ],
)
def test_schema_errors_say_the_real_reason(args: dict[str, Any], said: str) -> None:
    """Issue 14: not "at minPrice: -5 is not valid under any of the given schemas"."""
    tool = Tool(name="search", input_schema=_Search.model_json_schema())
    entry = ToolEntry("srv", tool)
    assert validate_arguments(entry, args) == f"invalid arguments for 'search': {said}"
    assert validate_arguments(entry, {"query": "x", "minPrice": None}) is None


def test_a_timeout_says_how_long_web_py_waited_in_all() -> None:
    """Each try waits the whole LLM_TIMEOUT: with a retry, "within 5s" was said after 10 s."""
    import httpx
    import openai

    from product_mcp.chat.llm import LLMSettings, explain_llm_error

    timeout = openai.APITimeoutError(request=httpx.Request("POST", "http://llm.test/v1"))
    once = explain_llm_error(timeout, LLMSettings(timeout=5, max_retries=0))
    assert once.status == 504 and "did not answer within 5s (" in once.message
    twice = explain_llm_error(timeout, LLMSettings(timeout=5, max_retries=1))
    assert "did not answer within 5s, each of 2 tries (" in twice.message


def _question(quote: Any) -> ElicitRequestFormParams:
    return ElicitRequestFormParams(
        message="Place this order?",
        requested_schema={"type": "object", "properties": {}},
        _meta={QUOTE_META_KEY: quote},  # type: ignore[call-arg]
    )


GOOD_ITEM = {"productId": 3, "name": "Portable Power Bank", "unitPrice": 299.0, "quantity": 2,
             "lineTotal": 598.0, "available": 9}  # fmt: skip


def test_a_question_passes_its_quote_on_only_when_well_formed_and_bounded() -> None:
    """A server's quote reaches the page as data only if it is a `Quote` of at most MAX_ITEMS
    items with product-length names: anything else is dropped (the message still shows)."""
    good = {"items": [GOOD_ITEM], "totalAmount": 598.0, "inStock": True}
    assert quote_of(_question(good)) == good
    assert quote_of(_question({**good, "totalAmount": "lots"})) is None
    assert quote_of(_question({"items": "no", "totalAmount": 1, "inStock": True})) is None
    assert quote_of(_question([good])) is None
    many = {**good, "items": [GOOD_ITEM] * (MAX_ITEMS + 1)}
    assert quote_of(_question(many)) is None
    long_name = {**good, "items": [{**GOOD_ITEM, "name": "x" * (MAX_PRODUCT_NAME + 1)}]}
    assert quote_of(_question(long_name)) is None
    for number in (float("nan"), float("inf")):  # the page's JSON.parse cannot read them
        assert quote_of(_question({**good, "totalAmount": number})) is None
        assert quote_of(_question({**good, "items": [{**GOOD_ITEM, "lineTotal": number}]})) is None
    no_meta = ElicitRequestFormParams(message="?", requested_schema={"type": "object"})
    assert quote_of(no_meta) is None


def test_the_number_of_servers_is_bounded() -> None:
    """Found from outside: an mcp.json of 2,000 servers kept web.py starting for minutes (a
    session, or a process, each). The first MAX_MCP_SERVERS load; the rest is one error."""
    cfg = parse({f"s{i}": {"url": f"http://h/{i}"} for i in range(MAX_MCP_SERVERS + 7)})
    assert [s.name for s in cfg.servers] == [f"s{i}" for i in range(MAX_MCP_SERVERS)]
    [err] = cfg.errors
    assert err.message.startswith(f"at most {MAX_MCP_SERVERS} servers: 7 not loaded ('s64', "), err


def test_a_header_name_ending_in_a_line_break_is_refused() -> None:
    """Review: `$` also matches before a last line break, so "X-A\\n" passed the check."""
    cfg = parse({"a": {"url": "http://h/mcp", "headers": {"X-A\n": "v"}}})
    assert [(e.key, e.message) for e in cfg.errors] == [
        ("headers.X-A\n", "not a valid HTTP header name")
    ]


def test_text_json_can_carry_but_no_answer_can_is_refused_by_name(tmp_path: Path) -> None:
    """Found from outside: a server named "shop\\ud800" (a lone surrogate, valid JSON) loaded,
    and /api/servers and every chat turn answered 500 (the tool list could not be encoded). A
    URL with a line break or NUL loaded and failed at every reconnect in httpx's words; two
    mcpServers blocks kept the last silently."""
    path = tmp_path / "mcp.json"
    path.write_text(
        '{"mcpServers": {"good": {"url": "http://h/mcp"}, "shop\\ud800": {"url": "http://h/2"},'
        ' "u": {"url": "http://h/\\udc80"}, "lf": {"url": "http://h/a\\nb"},'
        ' "nul": {"url": "http://h/a\\u0000"}, "env": {"command": "x", "env": {"A": "\\u0000"}},'
        ' "hdr": {"url": "http://h/3", "headers": {"X\\ud800": "v"}}}}'
    )
    cfg = load_config(path)
    assert [s.name for s in cfg.servers] == ["good"]
    said = {e.server: (e.key, e.message) for e in cfg.errors}
    assert said["shop\\ud800"][1].startswith("server name must be valid Unicode text")
    assert said["u"] == ("url", "must be valid Unicode text (no lone surrogates)")
    assert said["lf"][0] == "url" and "control characters" in said["lf"][1]
    assert said["nul"] == ("url", "must not contain NUL characters")
    assert said["env"] == ("env.A", "must not contain NUL characters")
    assert said["hdr"][0] == "headers.X\\ud800"
    json.dumps([str(e) for e in cfg.errors]).encode()  # every error can be said back
    path.write_text(
        '{"mcpServers": {"first": {"url": "http://h/1"}}, "mcpServers": {"second": {"url": "http://h/2"}}}'
    )
    cfg = load_config(path)
    assert [(e.key, e.message) for e in cfg.errors] == [
        ("mcpServers", "given twice: only the last is read")
    ]


def test_names_and_secrets_in_entries(tmp_path: Path) -> None:
    """Review: environment variable names were not checked (they failed at the process's
    start), and a URL error quoted the URL after `${VAR}` expansion, token and all."""
    cfg = parse(
        {"a": {"command": "x", "env": {"A=B": "1"}}, "b": {"command": "x", "env": {"": "1"}}}
    )
    assert [(e.server, e.key, e.message) for e in cfg.errors] == [
        ("a", "env.A=B", "not a valid name"),
        ("b", "env.", "not a valid name"),
    ]
    cfg = parse({"c": {"url": "https://h/mcp?key=${K}"}}, K="s3cret\r")
    [err] = cfg.errors
    assert err.key == "url" and "U+000D" in err.message, err
    assert "s3cret" not in str(err) and "${K}" in str(err), err
