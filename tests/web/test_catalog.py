"""Issue 14: the servers' MCP prompts (GET /api/prompts, POST /api/prompts/get) and resources
(GET /api/resources, POST /api/resources/read, and `attachments` on a chat message, whose text
the model gets with that message). web.py runs in process with main.py's server and a small
`docs` server in memory (a picture, an oversized text), and the scripted LLM."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import AssistantMessage, UserMessage
from mcp.types import ImageContent

from models import ATTACHMENT_MAX_CHARS
from tests.fake_llm import FakeLLM, Reply
from tests.inproc import InProcessWeb
from tests.web_helpers import chat_stream

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 16


def docs_server() -> MCPServer[None]:
    docs: MCPServer[None] = MCPServer("docs")

    @docs.resource("docs://note", name="note", mime_type="text/plain")
    def note() -> str:
        return "Returns are free within 30 days."

    @docs.resource("docs://logo", name="logo", mime_type="image/png")
    def logo() -> bytes:
        return PNG

    @docs.resource("docs://readme", name="readme", mime_type="text/markdown")
    def readme() -> bytes:  # text sent as a blob (server-everything's blob resources)
        return "# Zoë's notes".encode()

    @docs.resource("docs://latin", name="latin", mime_type="text/plain")
    def latin() -> bytes:
        return "Zoë".encode("latin-1")

    @docs.resource("docs://bigblob", name="bigblob", mime_type="text/plain")
    def bigblob() -> bytes:  # refused before it is decoded (review)
        return b"x" * (4 * ATTACHMENT_MAX_CHARS + 10)

    @docs.resource("docs://big", name="big", mime_type="text/plain")
    def big() -> str:
        return "x" * (ATTACHMENT_MAX_CHARS + 1)

    @docs.prompt(name="review", description="Review a product")
    def review(product: str) -> list[Any]:
        return [
            UserMessage(f"Review {product} for me."),
            UserMessage(content=ImageContent(type="image", data="AAAA", mime_type="image/png")),
            AssistantMessage("Sure."),
        ]

    return docs


@pytest.fixture(scope="module")
def web_servers() -> dict[str, Any]:
    """The `docs` server beside main.py, both in memory (conftest.web)."""
    return {"docs": docs_server()}


# ------------------------------------------------------------------ prompts


def test_prompts_are_listed_with_their_arguments(web: InProcessWeb) -> None:
    body = web.get("/api/prompts").json()
    assert body["errors"] == []
    got = {(p["server"], p["name"]): p for p in body["prompts"]}
    shop = got["shop", "shopping_assistant"]
    assert shop["title"] == "Shopping assistant" and "assistant" in shop["description"]
    assert [a["name"] for a in shop["arguments"]] == ["customerName", "need", "budget"]
    assert not any(a["required"] for a in shop["arguments"])
    assert got["docs", "review"]["arguments"] == [
        {"name": "product", "title": None, "description": None, "required": True}
    ]


def test_a_prompt_filled_in_is_text_for_the_message_box(web: InProcessWeb) -> None:
    body = {"server": "shop", "name": "shopping_assistant", "arguments": {"customerName": "Ann"}}
    r = web.post("/api/prompts/get", json={**body, "arguments": {**body["arguments"],
                                                                  "need": "earbuds"}})  # fmt: skip
    assert r.status_code == 200, r.text
    [message] = r.json()["messages"]
    assert message["role"] == "user"
    assert "The customer is Ann" in message["text"] and "earbuds" in message["text"]
    r = web.post("/api/prompts/get", json={"server": "docs", "name": "review",
                                           "arguments": {"product": "Watch"}})  # fmt: skip
    assert r.json()["messages"] == [  # the picture is left out: text only
        {"role": "user", "text": "Review Watch for me."},
        {"role": "assistant", "text": "Sure."},
    ]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"server": "nope", "name": "x"}, 404, "Unknown MCP server 'nope'"),
        ({"server": "shop", "name": "nope"}, 404, "has no prompt 'nope' (available: shopping"),
        (
            {"server": "shop", "name": "shopping_assistant", "arguments": {"colour": "red"}},
            422,
            "has no argument 'colour' (arguments: customerName, need, budget)",
        ),
        ({"server": "docs", "name": "review"}, 422, "prompt 'review' needs product"),
        ({"server": "shop", "name": "shopping_assistant", "arguments": {"need": 5}}, 422, "need"),
        ({"server": "shop", "name": ""}, 422, "name"),
        ({"server": "shop", "name": "x", "arguments": {f"a{i}": "" for i in range(51)}}, 422, ""),
    ],
)
def test_prompt_requests_are_checked(
    web: InProcessWeb, body: dict[str, Any], status: int, needle: str
) -> None:
    r = web.post("/api/prompts/get", json=body)
    assert r.status_code == status, r.text
    assert needle in json.dumps(r.json()["detail"])


# ------------------------------------------------------------------ resources


def test_resources_and_templates_are_listed(web: InProcessWeb) -> None:
    body = web.get("/api/resources").json()
    assert body["errors"] == []
    uris = {(r["server"], r["uri"]): r for r in body["resources"]}
    assert uris["shop", "shop://products"]["mimeType"] == "application/json"
    assert uris["docs", "docs://note"]["name"] == "note"
    templates = {t["uriTemplate"] for t in body["templates"]}
    assert "shop://products/{id}" in templates


def test_text_sent_as_a_blob_is_read_as_text(web: InProcessWeb) -> None:
    """Found from outside: server-everything sends text/plain resources as base64 blobs, and
    web.py refused them: "is not text (text/plain)"."""
    r = web.post("/api/resources/read", json={"server": "docs", "uri": "docs://readme"})
    assert r.status_code == 200, r.text
    assert r.json() == {"text": "# Zoë's notes", "mimeType": "text/markdown"}


@pytest.mark.parametrize(
    ("uri", "status", "needle"),
    [
        ("docs://logo", 422, "is not text (image/png); only text resources can be attached"),
        ("docs://latin", 422, "is not UTF-8 text (text/plain); only text resources can be"),
        ("docs://bigblob", 422, "is more text than an attachment can be (50,000 characters"),
        ("docs://big", 422, f"an attachment can be at most {ATTACHMENT_MAX_CHARS:,}"),
        ("shop://products/999", 404, "999"),
        ("docs://nothing-here", 404, "docs://nothing-here"),
    ],
)
def test_only_text_resources_within_bounds_are_read(
    web: InProcessWeb, uri: str, status: int, needle: str
) -> None:
    server = uri.split(":")[0]
    r = web.post("/api/resources/read", json={"server": server, "uri": uri})
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


def test_an_attached_resource_reaches_the_model(web: InProcessWeb, fake: FakeLLM) -> None:
    q = "Is product 1 in stock?"
    fake.script(q, Reply("Yes."))
    attached = [{"server": "shop", "uri": "shop://products/1"},
                {"server": "docs", "uri": "docs://note"}]  # fmt: skip
    events = chat_stream(web, {"message": q, "attachments": attached})
    done = events[-1][1]
    assert events[-1][0] == "done" and done["response"] == "Yes."
    assert done["messages"] == [{"role": "assistant", "content": "Yes."}]  # history stays lean
    [request] = fake.requests_for(q)
    *_, product, note, question = request["messages"]
    assert question == {"role": "user", "content": q}
    assert product["role"] == "user"
    assert '<attachment server="shop" uri="shop://products/1"' in product["content"]
    text = product["content"].split("\n")[2]
    assert json.loads(text)["id"] == 1 and "stock" in text
    assert "Returns are free within 30 days." in note["content"]
    # The page keeps them before its message, so a follow-up still has them.
    assert done["attached"] == [product, note]
    follow = "And product 2?"
    fake.script(follow, Reply("Also yes."))
    history = [*done["attached"], question, *done["messages"]]
    events = chat_stream(web, {"message": follow, "history": history})
    assert events[-1][1]["attached"] == []
    [request] = fake.requests_for(follow)
    assert request["messages"][1:] == [*history, {"role": "user", "content": follow}]


@pytest.mark.parametrize(
    ("attachments", "status", "needle"),
    [
        ([{"server": "docs", "uri": "docs://logo"}], 422, "only text resources can be attached"),
        ([{"server": "docs", "uri": "docs://note"}] * 6, 422, "at most 5"),
        ([{"server": "gone", "uri": "x://y"}], 404, "Unknown MCP server 'gone'"),
    ],
)
def test_a_refused_attachment_is_a_sentence_before_any_stream(
    web: InProcessWeb, fake: FakeLLM, attachments: list[dict[str, str]], status: int, needle: str
) -> None:
    q = f"Attach {needle}"
    for path in ("/api/chat/stream", "/api/chat"):
        r = web.post(path, json={"message": q, "attachments": attachments})
        assert r.status_code == status, r.text
        assert needle in json.dumps(r.json()["detail"])
    assert fake.requests_for(q) == []
