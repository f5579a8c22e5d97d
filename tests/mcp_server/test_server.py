"""main.py's tools, resources and prompts as MCP clients meet them, through the SDK's own
client: listing, the seed tools (the tutorial's answers), the new tools, progress and logging,
and errors that carry the API's words.

Checked in memory for the "modern" and "legacy" clients (main.py's server object, its API in
process too), and over a real main.py (with its real api.py: conftest.real) for "sse", the
transport. Each of the two serves the whole module; tests that buy things use distinct
products so the seed stock numbers other tests assert on stay true whatever the order. The
real process's HTTP side (banner, resumption, Host/Origin, CORS): test_server_http.py.
"""

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mcp.types import LoggingMessageNotificationParams, ResourceTemplateReference

from models import MAX_OFFSET, MAX_PRICE
from tests.inproc import in_memory, shop_in_process
from tests.mcp_helpers import KINDS, NEW_TOOLS, READ_ONLY, SEED_TOOLS, Kind, connect, text_of
from tests.stack import Stack

pytestmark = pytest.mark.anyio


@dataclass
class Shop:
    """main.py as one kind of client meets it, and the API behind it."""

    api: httpx.Client
    url: str | None = None  # a real main.py's base URL; None: main.py's server in memory

    def connect(self, kind: Kind, **kw: Any) -> Any:
        if self.url is None:
            return in_memory(kind, **kw)
        return connect(kind, self.url, **kw)

    def api_json(self, path: str, **params: Any) -> Any:
        r = self.api.get(f"/api{path}", params=params)
        r.raise_for_status()
        return r.json()


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    with shop_in_process(tmp_path_factory.mktemp("in-process") / "shop.db") as api:
        yield Shop(api)


@pytest.fixture(scope="module")
def over_http(real: Stack) -> Iterator[Shop]:
    with httpx.Client(base_url=real["api"].url, timeout=10) as api:
        yield Shop(api, real["mcp"].url)
    # whatever the test sent, main.py is still serving afterwards
    assert real["mcp"].proc.poll() is None, real["mcp"].log()[-2000:]
    assert httpx.get(f"{real['mcp'].url}/healthz", timeout=10).status_code == 200


@pytest.fixture
def shop(request: pytest.FixtureRequest, kind: Kind) -> Shop:
    """In memory for the modern and legacy clients; SSE is a transport: the real main.py."""
    return request.getfixturevalue("over_http" if kind == "sse" else "in_process")


# --- listing ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_list_tools_is_fully_described(shop: Shop, kind: Kind) -> None:
    async with shop.connect(kind) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert list(tools) == [*SEED_TOOLS, *NEW_TOOLS]
    for name, description in SEED_TOOLS.items():
        assert tools[name].description == description
    for name, tool in tools.items():
        assert tool.description and tool.annotations and tool.annotations.title, name
        assert tool.output_schema and tool.output_schema["type"] == "object", name
        for field, schema in tool.input_schema.get("properties", {}).items():
            assert schema.get("description"), f"{name}.{field} has no description"
        expected_ro = name in READ_ONLY
        assert tool.annotations.read_only_hint is expected_ro, name
    purchase = tools["create_purchase"]
    assert purchase.annotations is not None
    assert purchase.annotations.idempotent_hint is False
    assert purchase.annotations.destructive_hint is False
    schema = purchase.input_schema
    assert set(schema["required"]) == {"customerName", "items"}
    assert schema["properties"]["items"]["maxItems"] == 100
    assert schema["properties"]["items"]["minItems"] == 1
    assert "idempotencyKey" in schema["properties"]
    item = json.dumps(schema)
    assert '"maximum": 10000' in item and '"minimum": 1' in item
    limit = tools["get_products"].input_schema["properties"]["limit"]
    assert limit["minimum"] == 1 and limit["maximum"] == 1000
    # every bound the API enforces is in the schema a client reads (offset, prices, budget
    # were open-ended, and a model's 1e12 came back as the API's 422 about a query parameter)
    for tool, field, bound in [
        ("get_products", "offset", MAX_OFFSET),
        ("search_products", "offset", MAX_OFFSET),
        ("search_products", "minPrice", MAX_PRICE),
        ("search_products", "maxPrice", MAX_PRICE),
        ("recommend_products", "budget", MAX_PRICE),
    ]:
        assert f'"maximum": {bound}' in json.dumps(tools[tool].input_schema["properties"][field])


async def test_resources_prompts_and_capabilities(in_process: Shop) -> None:
    shop = in_process
    async with shop.connect("legacy") as client:
        caps = client.session.server_capabilities
        assert caps is not None and caps.logging is not None and caps.tools is not None
        resources = (await client.list_resources()).resources
        assert [str(r.uri) for r in resources] == ["shop://products", "shop://inventory"]
        assert all(r.description for r in resources)
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["shop://products/{id}"]
        assert all(t.description for t in templates)

        read = await client.read_resource("shop://products")
        assert json.loads(read.contents[0].text) == shop.api_json("/products")  # type: ignore[union-attr]
        read = await client.read_resource("shop://products/4")
        product = json.loads(read.contents[0].text)  # type: ignore[union-attr]
        assert product["name"] == "Huawei MateBook X Pro"
        assert product["stock"] == 150
        for missing in ("999", "0", "9" * 30, "²"):  # one sentence, the API's, whatever the id
            with pytest.raises(Exception, match=f"^Product ID {missing} does not exist$"):
                await client.read_resource(f"shop://products/{missing}")

        ref = ResourceTemplateReference(type="ref/resource", uri="shop://products/{id}")
        done = await client.complete(ref, {"name": "id", "value": "Pro"})
        assert done.completion.values == ["2"]
        done = await client.complete(ref, {"name": "id", "value": ""})
        assert done.completion.values == ["1", "2", "3", "4"]

        prompts = (await client.list_prompts()).prompts
        assert [p.name for p in prompts] == ["shopping_assistant"]
        # each argument says what it is for (the page's prompt form showed bare names)
        args = {a.name: a for a in prompts[0].arguments or []}
        assert set(args) == {"customerName", "need", "budget"}
        assert all(a.description for a in args.values()), args
        assert prompts[0].description
        got = await client.get_prompt(
            "shopping_assistant", {"customerName": "Ann", "need": "earbuds"}
        )
        text = got.messages[0].content.text  # type: ignore[union-attr]
        assert "Ann" in text and "earbuds" in text and "create_purchase" in text


# --- the seed tools answer what the tutorial's did ----------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_seed_read_tools_same_results(shop: Shop, kind: Kind) -> None:
    async with shop.connect(kind) as client:
        for tool, path in [("get_products", "/products"), ("get_inventory", "/inventory")]:
            expected = shop.api_json(path)
            result = await client.call_tool(tool, {})
            assert not result.is_error, text_of(result)
            # The seed's answer: one JSON text block per entry, as FastMCP 1.x rendered a list.
            assert [json.loads(c.text) for c in result.content] == expected  # type: ignore[union-attr]
            assert result.structured_content == {"result": expected}
        assert len(expected) == 4
        result = await client.call_tool("get_orders", {})
        assert not result.is_error
        assert result.structured_content == {"result": shop.api_json("/orders")}


async def test_list_tools_page(in_process: Shop) -> None:
    async with in_process.connect("modern") as client:
        result = await client.call_tool("get_products", {"limit": 2, "offset": 1})
        assert [p["id"] for p in result.structured_content["result"]] == [2, 3]  # type: ignore[index]
        result = await client.call_tool("get_inventory", {"limit": 1, "offset": 3})
        assert [p["productId"] for p in result.structured_content["result"]] == [4]  # type: ignore[index]


@pytest.mark.parametrize("kind", KINDS)
async def test_create_purchase_then_orders(shop: Shop, kind: Kind) -> None:
    customer = f"Buyer {kind}"
    async with shop.connect(kind) as client:
        before = {i["productId"]: i["quantity"] for i in shop.api_json("/inventory")}
        result = await client.call_tool(
            "create_purchase",
            {"customerName": customer, "items": [{"productId": 3, "quantity": 2}]},
        )
        assert not result.is_error, text_of(result)
        order = result.structured_content
        assert order is not None
        assert order["customerName"] == customer and order["totalAmount"] == 598.0
        assert json.loads(text_of(result)) == order
        after = {i["productId"]: i["quantity"] for i in shop.api_json("/inventory")}
        assert after[3] == before[3] - 2

        result = await client.call_tool("get_orders", {"customer": customer})
        assert [o["id"] for o in result.structured_content["result"]] == [order["id"]]  # type: ignore[index]
        result = await client.call_tool("get_orders", {"since": "2000-01-01", "limit": 1})
        assert len(result.structured_content["result"]) == 1  # type: ignore[index]


async def test_idempotency_key_prevents_a_double_order(in_process: Shop) -> None:
    args = {
        "customerName": "Retry Rita",
        "items": [{"productId": 1, "quantity": 1}],
        "idempotencyKey": "rita-0001",
    }
    async with in_process.connect("modern") as client:
        first = await client.call_tool("create_purchase", args)
        again = await client.call_tool("create_purchase", args)
        assert not first.is_error and not again.is_error
        assert first.structured_content["id"] == again.structured_content["id"]  # type: ignore[index]
        clash = await client.call_tool(
            "create_purchase", {**args, "items": [{"productId": 1, "quantity": 2}]}
        )
        assert clash.is_error
        assert "Failed to create purchase order (409)" in text_of(clash)
    assert len(in_process.api_json("/orders", customer="Retry Rita")) == 1


async def test_a_name_is_bounded_once_trimmed_as_the_api_has_it(in_process: Shop) -> None:
    """Found from outside: 150 spaces, "a", 150 spaces: POST /api/purchase trims and takes it
    (its bound is "1..200 once trimmed"), create_purchase refused it as over 200 characters."""
    padded = " " * 150 + "Padded Pat" + " " * 150
    async with in_process.connect("modern") as client:
        r = await client.call_tool(
            "create_purchase", {"customerName": padded, "items": [{"productId": 3, "quantity": 1}]}
        )
        assert not r.is_error, text_of(r)
        assert r.structured_content["customerName"] == "Padded Pat"  # type: ignore[index]
        blank = await client.call_tool(
            "create_purchase", {"customerName": "   ", "items": [{"productId": 3, "quantity": 1}]}
        )
        assert blank.is_error


# --- the new tools ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_new_tools(shop: Shop, kind: Kind) -> None:
    async with shop.connect(kind) as client:
        result = await client.call_tool("get_product", {"productId": 4})
        assert not result.is_error
        sc = result.structured_content
        assert sc is not None and sc["name"] == "Huawei MateBook X Pro" and sc["stock"] == 150
        assert json.loads(text_of(result)) == sc

        result = await client.call_tool("search_products", {"query": "earbuds"})
        assert not result.is_error
        found = result.structured_content["result"]  # type: ignore[index]
        assert found[0]["id"] == 2
        result = await client.call_tool(
            "search_products", {"query": "battery", "maxPrice": 500, "inStockOnly": True}
        )
        assert all(p["price"] <= 500 for p in result.structured_content["result"])  # type: ignore[index]

        result = await client.call_tool(
            "recommend_products", {"preferences": "noise cancellation", "budget": 1000}
        )
        assert not result.is_error, text_of(result)
        recs = result.structured_content["result"]  # type: ignore[index]
        assert recs and recs[0]["product"]["id"] == 2 and recs[0]["reason"]
        assert all(r["product"]["price"] <= 1000 for r in recs)

        result = await client.call_tool("analyze_sales", {"groupBy": "customer", "top": 50})
        assert not result.is_error, text_of(result)
        report = result.structured_content
        assert report is not None and report["groupBy"] == "customer"
        assert report == shop.api_json("/analytics/sales", group_by="customer", top=50)


async def test_analyze_sales_reports_progress(in_process: Shop, over_http: Shop) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    for kind in KINDS:
        seen.clear()
        shop = over_http if kind == "sse" else in_process
        async with shop.connect(kind) as client:
            result = await client.call_tool(
                "analyze_sales", {"groupBy": "product"}, progress_callback=on_progress
            )
        assert not result.is_error
        assert [p for p, _, _ in seen] == [0, 1, 2, 3], kind
        assert all(t == 3 for _, t, _ in seen) and seen[-1][2] == "Done"


@pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")
async def test_logging_set_level_filters_notifications(in_process: Shop) -> None:
    logs: list[LoggingMessageNotificationParams] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        logs.append(params)

    async with in_process.connect("legacy", logging_callback=on_log) as client:
        # a client that never chose a level hears info and above, not the debug chatter
        await client.call_tool("analyze_sales", {"groupBy": "day"})
        assert [m.level for m in logs] == ["info"]
        assert re.fullmatch(r"Sales report: \d+ orders in \d+ groups? by day", str(logs[0].data))
        logs.clear()
        await client.set_logging_level("debug")
        await client.call_tool("analyze_sales", {"groupBy": "day"})
        assert [m.level for m in logs] == ["debug", "info"]
        assert logs[0].logger == "product-mcp"
        logs.clear()
        await client.set_logging_level("warning")
        await client.call_tool("analyze_sales", {"groupBy": "day"})
        assert logs == []


@pytest.mark.parametrize("level", ["debug", "info", None])
async def test_a_2026_client_hears_the_log_level_it_asks_for(
    in_process: Shop, level: str | None
) -> None:
    """Found from outside: on 2026-07-28 a client asks for log lines per request (`log_level`,
    sent in each request's `_meta`), and main.py still filtered on a session level no such
    client can set (info): `log_level="debug"` got no debug line. Asked for nothing, it hears
    nothing (the protocol's rule)."""
    logs: list[LoggingMessageNotificationParams] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        logs.append(params)

    kw: dict[str, Any] = {"logging_callback": on_log} | ({"log_level": level} if level else {})
    async with in_process.connect("modern", **kw) as client:
        assert client.protocol_version == "2026-07-28"
        await client.call_tool("analyze_sales", {"groupBy": "day"})
    want = {"debug": ["debug", "info"], "info": ["info"], None: []}[level]
    assert [m.level for m in logs] == want


# --- errors carry the API's words ---------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_api_errors_become_tool_errors(shop: Shop, kind: Kind) -> None:
    async with shop.connect(kind) as client:
        result = await client.call_tool(
            "create_purchase",
            {"customerName": "Greedy", "items": [{"productId": 2, "quantity": 51}]},
        )
        assert result.is_error
        assert (
            "Failed to create purchase order (400): "
            "Insufficient stock for Pro Wireless Bluetooth Earbuds. Available: 50"
        ) in text_of(result)

        result = await client.call_tool(
            "create_purchase", {"customerName": "X", "items": [{"productId": 999, "quantity": 1}]}
        )
        assert result.is_error
        assert "Failed to create purchase order (404): Product ID 999 does not exist" in text_of(
            result
        )

        result = await client.call_tool("get_product", {"productId": 999})
        assert result.is_error
        assert "Failed to call product service (404): Product ID 999 does not exist" in text_of(
            result
        )

        # The API's 422 names the field too.
        result = await client.call_tool("get_orders", {"since": "2025-13-45"})
        assert result.is_error and "since" in text_of(result)


async def test_an_argument_the_tool_does_not_take_is_refused(in_process: Shop) -> None:
    """Ignored, a model asking get_products for a "category" would believe it had filtered."""
    async with in_process.connect("modern") as client:
        result = await client.call_tool("get_products", {"category": "laptops", "limit": 2})
        assert result.is_error
        assert text_of(result) == (
            "Invalid argument for get_products: category (it takes limit, offset)"
        )
        assert not (await client.call_tool("get_products", {"limit": 2})).is_error


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (
            {"customerName": "A", "items": [{"productId": 1, "quantity": 0}]},
            "items[0].quantity: input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"customerName": "A", "items": [{"productId": "x", "quantity": 1}]},
            "items[0].productId: must be a JSON integer, not a string or boolean (got 'x')",
        ),
        ({"customerName": "A", "items": []}, "items: list should have at least 1 item"),
        ({"customerName": "", "items": [{"productId": 1, "quantity": 1}]}, "customerName: "),
        ({"items": [{"productId": 1, "quantity": 1}]}, "customerName: field required"),
        (
            {"customerName": "A", "items": [{"productId": 1, "quantity": 1, "price": 0}]},
            "items[0].price: extra inputs are not permitted (got 0)",
        ),
    ],
)
async def test_bad_arguments_name_the_field(
    in_process: Shop, args: dict[str, Any], problem: str
) -> None:
    """One sentence per field, not pydantic's report (its model name, its links)."""
    async with in_process.connect("modern") as client:
        result = await client.call_tool("create_purchase", args)
    assert result.is_error
    text = text_of(result)
    assert text.startswith("Invalid arguments for create_purchase: ") and problem in text, text
    assert "pydantic" not in text and "toolArguments" not in text


@pytest.mark.parametrize("key", ["é", "\u2028", "a\u0001b", "lf\nx", "k\n", "k ", " k", "tab\tin"])
async def test_an_idempotency_key_no_header_can_carry_is_refused_by_name(
    in_process: Shop, key: str
) -> None:
    """The key travels to the API as a header: one with other than visible ASCII (or with
    spaces around it) got "invalid JSON from the API", "Illegal header value" or the API's
    400 "Invalid HTTP request received" (found from outside). Now it is an argument error."""
    customer = f"Key {uuid.uuid4().hex[:6]}"
    args = {"customerName": customer, "items": [{"productId": 1, "quantity": 1}]}
    async with in_process.connect("modern") as client:
        result = await client.call_tool("create_purchase", {**args, "idempotencyKey": key})
        assert result.is_error and "idempotencyKey" in text_of(result), text_of(result)
        assert "visible ASCII" in text_of(result), text_of(result)
        ok = await client.call_tool(
            "create_purchase", {**args, "idempotencyKey": f"a b:{customer}"}
        )
        assert not ok.is_error, text_of(ok)  # inner spaces and punctuation are fine
    assert len(in_process.api_json("/orders", customer=customer)) == 1
