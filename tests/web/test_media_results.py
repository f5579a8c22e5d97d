"""Issue #11, web.py end to end: images, audio and embedded resources in tool results reach
the page as a bounded `content` list (only image and audio types safe to show), on the direct
call and on both chat routes, while the model gets a short text stand-in; the reference
server's picture over stdio too.

web.py is a process with tests/media_mcp.py (conftest.media_web) and the scripted LLM. What the
page makes of that list: test_page_media.py; absurd model output: test_model_output.py.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.fake_llm import Calls, FakeLLM, Reply
from tests.media_mcp import BIG_PNG, PNG, wav
from tests.servers import Service
from tests.stack import Stack
from tests.web.helpers import ROUTES, turn
from tests.web_helpers import EVERYTHING, chat_stream, need_node


@pytest.fixture(scope="module")
def web(media_web: Service) -> Service:
    """web.py as a process with tests/media_mcp.py, approval off (conftest.media_web)."""
    return media_web


# ------------------------------------------------------------------ 3. images and audio


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def call_tool(
    web: Service, server: str, name: str, args: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = {"server": server, "name": name, "args": args or {}}
    r = httpx.post(f"{web.url}/api/call-tool", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_call_tool_passes_images_and_audio_through(web: Service) -> None:
    body = call_tool(web, "media", "picture")
    assert body["isError"] is False and body["durationMs"] >= 0
    stand_in = f"[image: image/png, {len(PNG)} bytes]"
    assert body["result"] == f"Here is the picture:\n{stand_in}\nNice, isn't it?"
    assert body["content"] == [
        {"type": "text", "text": "Here is the picture:"},
        {"type": "image", "mimeType": "image/png", "bytes": len(PNG), "data": b64(PNG)},
        {"type": "text", "text": "Nice, isn't it?"},
    ]

    sound = wav()
    body = call_tool(web, "media", "sound")
    assert body["result"] == f"[audio: audio/wav, {round(len(sound) / 1024)} KB]"
    assert body["content"] == [
        {"type": "audio", "mimeType": "audio/wav", "bytes": len(sound), "data": b64(sound)}
    ]

    # text-only results keep their old shape: no `content`
    plain = call_tool(web, "media", "echo", {"text": "hi"})
    assert plain == {"result": "echo: hi", "isError": False, "durationMs": plain["durationMs"]}


def test_unsafe_or_oversized_media_is_described_not_passed(web: Service) -> None:
    body = call_tool(web, "media", "unsafe")
    items = body["content"]
    assert len(items) == 4 and all("data" not in i for i in items), items
    assert [i["type"] for i in items] == ["image"] * 4
    assert "image/svg+xml is not shown" in items[0]["omitted"]
    assert "is not a PNG" in items[1]["omitted"]
    assert "not valid base64" in items[2]["omitted"]
    assert "text/html is not shown" in items[3]["omitted"]
    assert body["result"].startswith("[image: image/svg+xml, ")

    body = call_tool(web, "media", "big_picture")
    [item] = body["content"]
    assert "data" not in item and "larger than" in item["omitted"]
    assert item["bytes"] == len(BIG_PNG)
    assert body["result"] == f"[image: image/png, {len(BIG_PNG) / 1024 / 1024:.1f} MB]"


def test_embedded_resources_and_links(web: Service) -> None:
    body = call_tool(web, "media", "resources")
    text, picture, blob, link = body["content"]
    assert text == {
        "type": "resource",
        "uri": "memo://note",
        "mimeType": "text/plain",
        "text": "a note",
    }
    assert picture == {
        "type": "resource",
        "uri": "file:///pic.png",
        "mimeType": "image/png",
        "bytes": len(PNG),
        "data": b64(PNG),
    }
    assert blob["uri"] == "file:///data.bin" and "data" not in blob and blob["omitted"]
    assert link == {"type": "resource_link", "uri": "https://example.com/x", "name": "x"}
    assert body["result"].splitlines()[0] == "a note"
    assert f"[resource: file:///pic.png, image/png, {len(PNG)} bytes]" in body["result"]


def test_structured_result_keeps_its_json_and_the_model_hears_of_the_picture(
    web: Service, fake: FakeLLM
) -> None:
    body = call_tool(web, "media", "chart")
    assert json.loads(body["result"]) == {"points": 3}  # unchanged for existing clients
    assert body["content"][0]["data"] == b64(PNG)

    q = "draw the chart"
    fake.script(q, Calls(("chart", {})), Reply("Here it is."))
    events = chat_stream(web, {"message": q})
    result = next(d for k, d in events if k == "tool_result")
    assert json.loads(result["result"]) == {"points": 3}
    assert result["content"][0]["mimeType"] == "image/png"
    [tool_msg] = [m for m in fake.requests_for(q)[-1]["messages"] if m["role"] == "tool"]
    assert tool_msg["content"] == f'{{"points": 3}}\n[image: image/png, {len(PNG)} bytes]'


@pytest.mark.parametrize("route", ROUTES)
def test_chat_tool_results_carry_media_and_the_model_gets_a_stand_in(
    web: Service, fake: FakeLLM, route: str
) -> None:
    q = f"show me the picture ({route})"
    fake.script(q, Calls(("picture", {})), Reply("There it is."))
    status, body = turn(web, route, q)
    assert status == "ok", body
    stand_in = f"Here is the picture:\n[image: image/png, {len(PNG)} bytes]\nNice, isn't it?"
    [tool_msg] = [m for m in fake.requests_for(q)[-1]["messages"] if m["role"] == "tool"]
    assert tool_msg["content"] == stand_in, "no base64 for the model"
    assert body["toolCalls"][0]["result"] == stand_in
    assert "content" not in body["toolCalls"][0], "/api/chat keeps its shape"
    assert b64(PNG) not in json.dumps(body["messages"]), "no base64 in the history"
    if route == "stream":
        result = next(d for k, d in body["_events"] if k == "tool_result")
        assert result["result"] == stand_in
        assert result["content"][1] == {
            "type": "image",
            "mimeType": "image/png",
            "bytes": len(PNG),
            "data": b64(PNG),
        }


@pytest.mark.node
def test_reference_server_image_over_stdio(fake: FakeLLM, tmp_path: Any) -> None:
    need_node()
    with Stack(tmp_path) as s:
        web = s.web(
            {"everything": {"command": "node", "args": [str(EVERYTHING / "index.js"), "stdio"]}},
            {"OPENAI_API_KEY": "k", "OPENAI_API_BASE": fake.base_url},
        )
        body = call_tool(web, "everything", "get-tiny-image")
        [image] = [i for i in body["content"] if i["type"] == "image"]
        data = base64.b64decode(image["data"])
        assert image["mimeType"] == "image/png" and data.startswith(b"\x89PNG")
        assert image["bytes"] == len(data)
        assert f"[image: image/png, {round(len(data) / 1024)} KB]" in body["result"]

        q = "tiny image please"
        fake.script(q, Calls(("get-tiny-image", {})), Reply("Tiny."))
        events = chat_stream(web, {"message": q, "approval": "auto"})
        result = next(d for k, d in events if k == "tool_result")
        assert any(i.get("data") == image["data"] for i in result["content"])
        assert events[-1][0] == "done"
