"""Issue #11, the pure parts: tool-call ids, stream assembly, argument bounds, media checks."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace as NS
from typing import Any

from mcp.types import (
    AudioContent,
    CallToolResult,
    ImageContent,
    TextContent,
)

from models import HISTORY_MAX_ID
from product_mcp.chat.calls import (
    INVALID_NAME,
    MAX_ARGUMENTS,
    MAX_ARGUMENTS_TOTAL,
    MAX_CALLS,
    CallAssembler,
    ToolCall,
    assistant_message,
    parse_arguments,
    unique_ids,
)
from product_mcp.chat.history import ChatRequest
from product_mcp.chat.media import (
    CONTENT_MAX_ITEMS,
    MEDIA_MAX_TOTAL,
    human_size,
    result_content,
)
from product_mcp.chat.results import model_text, result_text
from tests.media_mcp import png


def delta(index: Any = 0, id: Any = None, name: Any = None, arguments: Any = None) -> NS:
    return NS(index=index, id=id, function=NS(name=name, arguments=arguments))


def test_unique_ids_keep_the_models_where_usable() -> None:
    assert unique_ids(["a", "b"], set()) == ["a", "b"]
    assert unique_ids(["a", "a", "a"], set()) == ["a", "a_2", "a_3"]
    assert unique_ids(["a"], {"a"}) == ["a_2"]  # already used earlier in the conversation
    assert unique_ids(["", ""], {"call_1"}) == ["call_2", "call_3"]
    # a later model id is kept, the repeat steps around it
    assert unique_ids(["a", "a", "a_2"], set()) == ["a", "a_3", "a_2"]
    long = ["x" * 300 + "1", "x" * 300 + "2"]
    ids = unique_ids(long, set())
    assert len(set(ids)) == 2 and all(len(i) <= HISTORY_MAX_ID for i in ids)
    assert unique_ids(["a", "a"], set()) == unique_ids(["a", "a"], set()), "deterministic"


def test_assembler_splits_calls_that_share_an_index_and_bounds_them() -> None:
    a = CallAssembler()
    a.add(delta(0, "c1", "echo", '{"te'))
    a.add(delta(0, None, None, 'xt": "a"}'))
    a.add(delta(0, "c2", "add", "{}"))  # another id at the same index: a second call
    a.add(delta(None, None, "echo", "{}"))  # no index at all
    a.add(delta(None, None, "add", "{}"))  # a new name after arguments: a new call
    calls = a.calls(set())
    assert [(c.id, c.function, c.raw_arguments) for c in calls] == [
        ("c1", "echo", '{"text": "a"}'),
        ("c2", "add", "{}"),
        ("call_1", "echo", "{}"),
        ("call_2", "add", "{}"),
    ]

    # a provider that repeats the id and name in every delta
    a = CallAssembler()
    for piece in ('{"a"', ": 1}"):
        a.add(delta(0, "c", "echo", piece))
    [call] = a.calls(set())
    assert (call.function, call.raw_arguments) == ("echo", '{"a": 1}')

    # arguments sent as an object, a name that never ends, too many calls
    a = CallAssembler()
    a.add(delta(0, "c", "x" * 100_000, {"a": 1}))
    for i in range(1, 300):
        a.add(delta(i, f"c{i}", "echo", "{}"))
    calls = a.calls(set())
    assert len(calls) == MAX_CALLS and a.asked == 300
    assert "300 tool calls" in (a.dropped_note() or "")
    assert calls[0].raw_arguments == '{"a": 1}' and len(calls[0].function) == 128
    assert calls[0].name_size == 100_000

    # arguments kept: at most MAX_ARGUMENTS per call and MAX_ARGUMENTS_TOTAL per response
    a = CallAssembler()
    for i in range(6):
        for _ in range(3):
            a.add(delta(i, f"c{i}", "echo", "x" * 500_000))
    calls = a.calls(set())
    assert [len(c.raw_arguments) for c in calls] == [MAX_ARGUMENTS] * 4 + [2, 2]
    assert all(c.arguments_size == 1_500_000 for c in calls)
    assert a.kept == MAX_ARGUMENTS_TOTAL


def test_arguments_are_bounded_before_and_after_parsing() -> None:
    def check(raw: str, size: int | None = None) -> tuple[Any, str | None]:
        return parse_arguments(ToolCall("c", "f", raw, arguments_size=size or len(raw)))

    assert check('{"a": [1, {"b": null}]}') == ({"a": [1, {"b": None}]}, None)
    assert check("{}", MAX_ARGUMENTS + 1)[1] == (
        f"arguments are {MAX_ARGUMENTS + 1} characters, more than the limit of "
        f"{MAX_ARGUMENTS}; send smaller arguments"
    )
    assert "more than the limit of 4194304" in (check("{}", 10)[1] or "")  # cut by the total
    assert "nested too deeply" in (check("[" * 500_000 + "]" * 500_000)[1] or "")
    assert "nested too deeply" in (check("[" * 40_000 + "]" * 40_000)[1] or "")
    assert "nested too deeply" in (check("[" * 65 + "]" * 65)[1] or "")
    assert check("[" * 64 + "]" * 64)[1] is None
    for raw in ('{"a": NaN}', '{"a": Infinity}', '{"a": 1e400}', "9" * 5000, "{"):
        value, error = check(raw)
        assert value is None and "not valid JSON" in (error or ""), raw


def test_unusable_calls_go_back_to_the_model_in_a_shape_history_accepts() -> None:
    huge = ToolCall("c1", "echo", "x" * MAX_ARGUMENTS, arguments_size=3_000_000, name_size=4)
    named = ToolCall("c2", "<b>\n", "{}", arguments_size=2, name_size=4)
    message = assistant_message("", [huge, named])
    fn1, fn2 = (c["function"] for c in message["tool_calls"])
    assert json.loads(fn1["arguments"]) == {
        "_truncated": "3000000 characters of arguments left out"
    }
    assert fn2["name"] == INVALID_NAME
    assert "3000000 characters" in huge.shown_arguments() and len(huge.shown_arguments()) < 2100
    assert named.shown_name() == "<b>\\u000a"
    history = [
        {"role": "user", "content": "hi"},
        message,
        {"role": "tool", "tool_call_id": "c1", "content": "Error: too big"},
        {"role": "tool", "tool_call_id": "c2", "content": "Error: unknown"},
    ]
    ChatRequest.model_validate({"message": "next", "history": history})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


GIF = b"GIF89a" + b"\0" * 20
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 20
WEBP = b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 20


def test_media_types_sizes_and_budget() -> None:
    blocks = [
        ImageContent(type="image", data=b64(GIF), mime_type="image/gif"),
        ImageContent(type="image", data=b64(JPEG), mime_type="image/jpg"),  # alias
        ImageContent(type="image", data=b64(WEBP), mime_type="IMAGE/WEBP; q=1"),
        ImageContent(type="image", data=b64(GIF), mime_type="image/png"),  # mislabelled
        AudioContent(type="audio", data=b64(GIF), mime_type="image/gif"),  # not a sound
        ImageContent(type="image", data=b64(GIF), mime_type="x" * 500),
    ]
    items = result_content(CallToolResult(content=blocks))  # type: ignore[arg-type]
    assert items is not None
    assert [i.get("mimeType") for i in items] == [
        "image/gif",
        "image/jpeg",
        "image/webp",
        "image/png",
        "image/gif",
        "unknown type",
    ]
    assert [("data" in i) for i in items] == [True, True, True, False, False, False]
    assert "not a PNG image" in items[3]["omitted"]

    # the per-result budget: 3 pictures of 1.5 MB, only 2 fit in 4 MB
    big = png(1200, 1200)
    assert 1.3e6 < len(big) < 2e6
    pics = [ImageContent(type="image", data=b64(big), mime_type="image/png")] * 3
    items = result_content(CallToolResult(content=pics))  # type: ignore[arg-type]
    assert items is not None and [("data" in i) for i in items] == [True, True, False]
    assert human_size(MEDIA_MAX_TOTAL) in items[2]["omitted"]

    many = [ImageContent(type="image", data=b64(GIF), mime_type="image/gif")] * 150
    items = result_content(CallToolResult(content=many))  # type: ignore[arg-type]
    assert items is not None and len(items) == CONTENT_MAX_ITEMS + 1
    assert items[-1] == {"type": "text", "text": "[50 more content blocks left out]"}

    assert result_content(CallToolResult(content=[TextContent(type="text", text="hi")])) is None
    assert [human_size(n) for n in (0, 1023, 1024, 12_500, 3 * 1024 * 1024)] == [
        "0 bytes",
        "1023 bytes",
        "1 KB",
        "12 KB",
        "3.0 MB",
    ]


def test_model_text_names_media_that_structured_content_hides() -> None:
    image = ImageContent(type="image", data=b64(GIF), mime_type="image/gif")
    res = CallToolResult(content=[image], structured_content={"n": 1})
    assert result_text(res) == '{"n": 1}'
    assert model_text(res) == f'{{"n": 1}}\n[image: image/gif, {len(GIF)} bytes]'
    plain = CallToolResult(content=[TextContent(type="text", text="t"), image])
    assert model_text(plain) == result_text(plain) == f"t\n[image: image/gif, {len(GIF)} bytes]"
