"""Numbers JSON cannot carry, in any request body: Python's JSON parser (which FastAPI uses)
takes `NaN`, `Infinity`, `-Infinity` and `1e400` (an overflow to infinity), and a 422 that
echoed such an input back failed to encode: a 500 from api.py's purchase route, which needs no
token, and from web.py's routes (found trying the services as a new user would). Each is a 422
naming the field now, and nothing changes. The same for strings holding a lone surrogate
(`"\\ud800"`: valid JSON, but no UTF-8 can encode it), which also dropped web.py's whole session
to an MCP server when sent as a tool argument. In process: the app's own error handling is the
point."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from mcp.server.mcpserver import MCPServer

from tests.inproc import api_app, web_app

TOKEN = "staff-token-for-number-tests"
NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]
LONE_SURROGATE = '"\\ud800"'  # JSON text of a string that no UTF-8 can encode
JSON = {"Content-Type": "application/json"}


def body(template: str, number: str) -> bytes:
    return template.replace("X", number).encode()


def assert_named_422(r: Any, field: str) -> None:
    assert r.status_code == 422, (r.status_code, r.text[:300])
    detail = json.loads(r.text)["detail"]  # valid JSON: no bare NaN or Infinity in it
    assert field in json.dumps(detail), detail


BUY_X = '{"customerName": "A", "items": [{"productId": 1, "quantity": X}]}'
BUY_ID_X = '{"customerName": "A", "items": [{"productId": X, "quantity": 1}]}'
API_BODIES = [  # method, path, body (X: the number), the field the error must name
    ("POST", "/api/purchase", BUY_X, "quantity"),
    ("POST", "/api/purchase", BUY_ID_X, "productId"),
    ("POST", "/api/purchase/quote", BUY_X, "quantity"),
    ("POST", "/api/products", '{"name": "Lamp", "price": X}', "price"),
    ("PATCH", "/api/products/1", '{"price": X}', "price"),
    ("PATCH", "/api/inventory/1", '{"quantity": X}', "quantity"),
]


def test_api_refuses_numbers_json_cannot_carry(tmp_path: Path) -> None:
    with api_app(tmp_path / "shop.db", admin_token=TOKEN) as api:
        auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        before = api.get("/api/inventory").json(), api.get("/api/products").json()
        for method, path, template, field in API_BODIES:
            for number in NUMBERS:
                r = api.request(method, path, content=body(template, number), headers=auth)
                assert_named_422(r, field)
        assert (api.get("/api/inventory").json(), api.get("/api/products").json()) == before
        assert api.get("/api/orders").json() == []


WEB_BODIES = [
    ("/api/call-tool", '{"server": X, "name": "t", "args": {}}', "server"),
    ("/api/chat", '{"message": X}', "message"),
    ("/api/chat/stream", '{"message": X}', "message"),
    ("/api/chat/approve", '{"approvalId": "a", "approved": X}', "approved"),
    ("/api/chat/elicitation", '{"elicitationId": X, "action": "accept"}', "elicitationId"),
    ("/api/chat/stop", '{"turnId": X}', "turnId"),
    ("/api/prompts/get", '{"server": "s", "name": "p", "arguments": {"budget": X}}', "budget"),
    ("/api/resources/read", '{"server": X, "uri": "shop://products"}', "server"),
]


def test_api_refuses_lone_surrogates(tmp_path: Path) -> None:
    with api_app(tmp_path / "shop.db", admin_token=TOKEN) as api:
        auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        before = api.get("/api/inventory").json(), api.get("/api/products").json()
        for method, path, template, field in API_BODIES:
            assert_named_422(api.request(method, path, content=body(template, LONE_SURROGATE),
                                         headers=auth), field)  # fmt: skip
        name = '{"customerName": X, "items": [{"productId": 1, "quantity": 1}]}'
        r = api.post("/api/purchase", content=body(name, LONE_SURROGATE), headers=auth)
        assert r.status_code == 400 and "customer name is not valid Unicode" in r.text, r.text
        assert (api.get("/api/inventory").json(), api.get("/api/products").json()) == before
        assert api.get("/api/orders").json() == []


@pytest.mark.parametrize(("path", "template", "field"), WEB_BODIES)
def test_web_refuses_lone_surrogates(tmp_path: Path, path: str, template: str, field: str) -> None:
    with web_app(tmp_path, {}) as web:
        r = web.post(path, content=body(template, LONE_SURROGATE), headers=JSON)
        assert_named_422(r, field)


@pytest.mark.parametrize(("path", "template", "field"), WEB_BODIES)
def test_web_refuses_numbers_json_cannot_carry(
    tmp_path: Path, path: str, template: str, field: str
) -> None:
    with web_app(tmp_path, {}) as web:
        for number in NUMBERS:
            r = web.post(
                path, content=body(template, number), headers={"Content-Type": "application/json"}
            )
            assert_named_422(r, field)


def test_tool_arguments_json_cannot_carry_never_reach_the_server(tmp_path: Path) -> None:
    """`args` of /api/call-tool are any JSON object: a NaN there passed the schema check (a
    float) and reached the server as null ("input_value=None"). Refused first, by path."""
    server: MCPServer[None] = MCPServer("numbers")
    seen: list[Any] = []

    @server.tool(description="Take a list of numbers.")
    async def total(values: list[float]) -> float:
        seen.append(values)
        return sum(values)

    with web_app(tmp_path, in_memory={"numbers": server}) as web:
        for number in NUMBERS:
            call = '{"server": "numbers", "name": "total", "args": {"values": [1, X]}}'
            r = web.post("/api/call-tool", content=body(call, number), headers=JSON)
            assert r.status_code == 422, r.text
            assert "values[1]: must be a finite number" in r.json()["detail"]
        ok = web.post(
            "/api/call-tool",
            json={"server": "numbers", "name": "total", "args": {"values": [1, 2.5]}},
        )
        assert ok.status_code == 200 and ok.json()["result"] == "3.5", ok.text
    assert seen == [[1, 2.5]]


def test_tool_arguments_utf8_cannot_carry_never_reach_the_server(tmp_path: Path) -> None:
    """A lone surrogate in a tool argument (from a client, or a model's output) is refused by
    path before the call: sent, the SDK could not encode it and web.py dropped its session to
    that server, failing every other chat's calls until it reconnected."""
    server: MCPServer[None] = MCPServer("texts")
    seen: list[Any] = []

    @server.tool(description="Echo a text.")
    async def echo(text: str, tags: dict[str, str] | None = None) -> str:
        seen.append(text)
        return text

    with web_app(tmp_path, in_memory={"texts": server}) as web:
        for args, where in (
            ('{"text": X}', "text: must be valid Unicode text"),
            ('{"text": "a", "tags": {"k": X}}', "tags.k: must be valid Unicode text"),
            ('{"text": "a", "tags": {X: "v"}}', "names must be valid Unicode text"),
        ):
            call = '{"server": "texts", "name": "echo", "args": ' + args + "}"
            r = web.post("/api/call-tool", content=body(call, LONE_SURROGATE), headers=JSON)
            assert r.status_code == 422, r.text
            assert where in r.json()["detail"], r.text
        ok = web.post("/api/call-tool", json={"server": "texts", "name": "echo",
                                               "args": {"text": "fine \U0001f600"}})  # fmt: skip
        assert ok.status_code == 200 and ok.json()["result"] == "fine \U0001f600", ok.text
    assert seen == ["fine \U0001f600"]


DEEP = "[" * 20_000 + "]" * 20_000  # deeper than Python's JSON parser follows (40 KB)
BUY = '{"customerName": "A", "items": [{"productId": 1, "quantity": 1}]}'


def _unreadable_bodies_say_why(client: Any, path: str) -> None:
    """Found from outside: a valid JSON body sent as text/plain got "Input should be a valid
    dictionary or object" (nothing about the content type), and a deeply nested one 400
    "There was an error parsing the body" (nothing about why)."""
    r = client.post(path, content=BUY.encode(), headers={"Content-Type": "text/plain"})
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == ["body"]
    assert "send the body as JSON, with Content-Type: application/json" in error["msg"]
    assert "'text/plain'" in error["msg"], error
    r = client.post(path, content=DEEP.encode(), headers=JSON)
    assert r.status_code == 400, r.text
    assert "body: not JSON the service can read (it nests deeper" in r.json()["detail"], r.text
    long = '{"customerName": "A", "items": [{"productId": 1, "quantity": ' + "9" * 5000 + "}]}"
    r = client.post(path, content=long.encode(), headers=JSON)  # Python's words, found outside
    assert r.status_code == 400, r.text
    assert r.json()["detail"].endswith("(a number has more than 4300 digits)"), r.text
    zipped = gzip.compress(BUY.encode())  # found from outside: "UnicodeDecodeError: 'utf-8'..."
    r = client.post(path, content=zipped, headers={**JSON, "Content-Encoding": "gzip"})
    assert r.status_code == 415, r.text
    assert r.json()["detail"] == (
        "Content-Encoding: gzip is not accepted: send the body uncompressed"
    )
    assert client.get("/no/such/route").json() == {"detail": "Not Found"}  # others as before


def test_api_says_why_it_cannot_read_a_body(tmp_path: Path) -> None:
    with api_app(tmp_path / "shop.db") as api:
        before = api.get("/api/inventory").json()
        _unreadable_bodies_say_why(api, "/api/purchase")
        assert api.get("/api/inventory").json() == before
        assert api.get("/api/orders").json() == []


def test_web_says_why_it_cannot_read_a_body(tmp_path: Path) -> None:
    with web_app(tmp_path, {}) as web:
        _unreadable_bodies_say_why(web, "/api/call-tool")
