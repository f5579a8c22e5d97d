"""Issue 14, main.py: create_purchase asks the client to confirm the API's quote through MCP
elicitation (form mode on sessions, the multi-round-trip form on 2026-07-28) and buys only on
accept; a client without elicitation buys as before. Modern and legacy in memory, SSE over a
real main.py with its real api.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp.types import ElicitResult

from models import CALL_META_KEY, PurchaseRequest
from tests.databases import DATABASES
from tests.inproc import api_app, api_on_fresh_database, in_memory, product_api_to, shop_in_process
from tests.mcp_helpers import KINDS, Kind, connect, text_of

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, None]]:
    with shop_in_process(tmp_path_factory.mktemp("confirm") / "shop.db") as api:
        yield api, None


@pytest.fixture
def shop(request: pytest.FixtureRequest, kind: Kind) -> tuple[httpx.Client, str | None]:
    if kind != "sse":
        return request.getfixturevalue("in_process")
    real = request.getfixturevalue("real")
    return httpx.Client(base_url=real["api"].url, timeout=10), real["mcp"].url


def _client(kind: Kind, url: str | None, **kw: Any) -> Any:
    return in_memory(kind, **kw) if url is None else connect(kind, url, **kw)


def _stock(api: httpx.Client, product_id: int) -> int:
    stock = {i["productId"]: i["quantity"] for i in api.get("/api/inventory").json()}
    return stock[product_id]


class Answers:
    """An elicitation callback that answers `action` and keeps what it was asked."""

    def __init__(self, action: str) -> None:
        self.action = action
        self.asked: list[Any] = []

    async def __call__(self, _ctx: Any, params: Any) -> ElicitResult:
        self.asked.append(params)
        content = {} if self.action == "accept" else None
        return ElicitResult(action=self.action, content=content)  # type: ignore[arg-type]


BUY = {"customerName": "Confirm Test", "items": [{"productId": 4, "quantity": 2}]}


@pytest.mark.parametrize("kind", KINDS)
async def test_accept_shows_the_quote_then_buys(shop: Any, kind: Kind) -> None:
    api, url = shop
    before = _stock(api, 4)
    answers = Answers("accept")
    async with _client(kind, url, elicitation_callback=answers) as client:
        result = await client.call_tool("create_purchase", BUY)
    assert not result.is_error, text_of(result)
    assert len(answers.asked) == 1
    question = answers.asked[0]
    assert "Confirm Test" in question.message
    assert "| Huawei MateBook X Pro (#4) | 1,599.00 USD | 2 | 3,198.00 USD |" in question.message
    assert "**Total: 3,198.00 USD**" in question.message
    assert question.requested_schema["properties"] == {}
    order = result.structured_content
    assert order is not None and order["totalAmount"] == 3198.0 and "status" not in order
    assert set(order) == {"customerName", "items", "id", "totalAmount", "orderDate"}
    assert _stock(api, 4) == before - 2


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("action", "word"), [("decline", "declined"), ("cancel", "cancelled")])
async def test_decline_or_cancel_buys_nothing(
    shop: Any, kind: Kind, action: str, word: str
) -> None:
    api, url = shop
    before, orders = _stock(api, 4), len(api.get("/api/orders").json())
    answers = Answers(action)
    async with _client(kind, url, elicitation_callback=answers) as client:
        result = await client.call_tool("create_purchase", BUY)
    assert not result.is_error
    assert text_of(result).count(f"not bought: {word}") == 1
    assert result.structured_content is not None
    assert result.structured_content["status"] == word
    assert "id" not in result.structured_content
    assert len(answers.asked) == 1
    assert _stock(api, 4) == before
    assert len(api.get("/api/orders").json()) == orders


@pytest.mark.parametrize("kind", KINDS)
async def test_without_elicitation_it_buys_as_before(shop: Any, kind: Kind) -> None:
    api, url = shop
    before = _stock(api, 3)
    body = {"customerName": "No Elicit", "items": [{"productId": 3, "quantity": 1}]}
    async with _client(kind, url) as client:
        result = await client.call_tool("create_purchase", body)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and result.structured_content["id"] >= 1
    assert _stock(api, 3) == before - 1


@pytest.mark.parametrize("kind", KINDS)
async def test_impossible_purchases_are_not_asked(shop: Any, kind: Kind) -> None:
    _api, url = shop
    answers = Answers("accept")
    async with _client(kind, url, elicitation_callback=answers) as client:
        unknown = await client.call_tool(
            "create_purchase", {"customerName": "X", "items": [{"productId": 99, "quantity": 1}]}
        )
        short = await client.call_tool(
            "create_purchase", {"customerName": "X", "items": [{"productId": 2, "quantity": 9999}]}
        )
    assert unknown.is_error and "Product ID 99 does not exist" in text_of(unknown)
    assert short.is_error and "Insufficient stock" in text_of(short)
    assert answers.asked == []


@pytest.mark.parametrize("action", ["accept", "decline"])
async def test_the_question_names_the_call_it_belongs_to(in_process: Any, action: str) -> None:
    """A handshake-era question carries the calling request's correlation id (web.py's
    `product-mcp/call`) and progressToken in its `_meta`, so a client running several calls
    on one session knows whose question it is; the answer still decides the purchase."""
    api, _ = in_process
    before = _stock(api, 4)
    answers = Answers(action)

    async def progress(*_: Any) -> None:
        return None

    async with in_memory("legacy", elicitation_callback=answers) as client:
        result = await client.call_tool(
            "create_purchase", BUY, progress_callback=progress, meta={CALL_META_KEY: "call-7"}
        )
    [question] = answers.asked
    assert question.meta[CALL_META_KEY] == "call-7"
    assert question.meta.get("progress_token") is not None
    assert "**Total: 3,198.00 USD**" in question.message
    assert question.requested_schema["properties"] == {}
    bought = action == "accept"
    assert _stock(api, 4) == before - (2 if bought else 0)
    assert (result.structured_content or {}).get("status") == (None if bought else "declined")


def _quote_fails(app: Any, how: str) -> Any:
    """`app` (api.py's) with POST /api/purchase/quote answering 503, or never answering; every
    other route (the purchase included) works."""

    async def wrapper(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/purchase/quote":
            if how == "never answers":  # what httpx raises when the API is too slow
                raise httpx.ReadTimeout("timed out")
            body = b'{"detail":"Service Unavailable"}'
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return wrapper


@pytest.mark.parametrize("how", ["answers 503", "never answers"])
@pytest.mark.parametrize("kind", ["legacy", "modern"])
async def test_no_quote_means_nothing_bought(tmp_path: Any, kind: Kind, how: str) -> None:
    """Found from outside: with the quote timing out (or a 5xx), create_purchase bought at once
    without asking, though the client had said it can be asked. Only a refusal the purchase
    would repeat (a 4xx: unknown product, no stock) goes ahead unasked."""
    answers = Answers("decline")
    with api_app(tmp_path / "shop.db") as api, product_api_to(_quote_fails(api.app, how)):
        before = _stock(api, 4)
        async with in_memory(kind, elicitation_callback=answers) as client:
            result = await client.call_tool("create_purchase", BUY)
        assert result.is_error, text_of(result)
        text = text_of(result)
        assert "Error requesting purchase quote service" in text or "(503)" in text, text
        assert "Nothing was bought" in text, text
        assert answers.asked == []
        assert _stock(api, 4) == before
        assert api.get("/api/orders", params={"customer": "Confirm Test"}).json() == []


async def test_one_confirmation_buys_once_however_often_it_is_sent(in_process: Any) -> None:
    """Found from outside: on 2026-07-28 the accepted round (its `requestState` and answer)
    sent three times placed three orders: without the caller's idempotencyKey each round made
    a fresh one. The key now comes from the sealed state, so a resend (a client retrying after
    a lost answer) gets the first order; a new purchase of the same items is a new order."""
    api, _ = in_process
    body = {"customerName": "Replay Once", "items": [{"productId": 3, "quantity": 1}]}
    before = _stock(api, 3)
    async with in_memory("modern", elicitation_callback=Answers("accept")) as client:
        session = client.session

        async def confirmed_round() -> tuple[Any, dict[str, Any], str]:
            asked = await session.call_tool("create_purchase", body, allow_input_required=True)
            wire = asked.model_dump(by_alias=True, exclude_none=True)
            accept = {key: {"action": "accept", "content": {}} for key in wire["inputRequests"]}
            return session, accept, wire["requestState"]

        _, accept, state = await confirmed_round()
        ids = []
        for _ in range(3):
            result = await session.call_tool(
                "create_purchase",
                body,
                allow_input_required=True,
                input_responses=accept,
                request_state=state,
            )
            ids.append(result.structured_content["id"])  # type: ignore[index]
        assert len(set(ids)) == 1, ids
        assert _stock(api, 3) == before - 1
        _, accept, state = await confirmed_round()  # the same items again, asked again
        again = await session.call_tool(
            "create_purchase",
            body,
            allow_input_required=True,
            input_responses=accept,
            request_state=state,
        )
    assert again.structured_content["id"] != ids[0]  # type: ignore[index]
    assert _stock(api, 3) == before - 2


@pytest.mark.parametrize("version", ["2024-11-05", "2025-03-26"])
async def test_versions_before_elicitation_are_not_asked(
    in_process: Any, version: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found from outside: a client that negotiated a version without `elicitation/create`
    (it came in 2025-06-18) but declared the capability was sent the request anyway; the SDK
    client answered "Method not found" and every purchase failed with it."""
    import mcp.client.session as client_session

    monkeypatch.setattr(client_session, "LATEST_HANDSHAKE_VERSION", version)
    api, _ = in_process
    before = _stock(api, 2)
    answers = Answers("accept")
    body = {"customerName": f"Old {version}", "items": [{"productId": 2, "quantity": 1}]}
    async with in_memory("legacy", elicitation_callback=answers) as client:
        result = await client.call_tool("create_purchase", body)
    assert not result.is_error, text_of(result)
    assert answers.asked == []
    assert _stock(api, 2) == before - 1


async def test_a_client_that_fails_the_question_buys_nothing_and_hears_why(
    in_process: Any,
) -> None:
    """Found from outside: a client answering `elicitation/create` with an error (its UI
    crashed) had that error passed on as the `tools/call` error (-32603 "client crashed", or
    -32601 for a method that exists). Now it is the tool's error result, in words."""
    from mcp.types import ErrorData

    api, _ = in_process
    before = _stock(api, 4)

    async def crashes(_ctx: Any, _params: Any) -> ErrorData:
        return ErrorData(code=-32603, message="client crashed")

    async with in_memory("legacy", elicitation_callback=crashes) as client:
        result = await client.call_tool("create_purchase", BUY)
    assert result.is_error
    text = text_of(result)
    assert "Nothing was bought" in text and "client crashed" in text, text
    assert _stock(api, 4) == before


async def test_a_price_changed_while_the_user_was_asked_is_not_charged(
    tmp_path: Any,
) -> None:
    """Found from outside: with the question open, staff raised the price from 10 to 9,999;
    the user confirmed "Total: 10.00 USD" and was charged 9,999 (handshake era; 2026-07-28
    asks again when the quote changes). The purchase now carries the total the user saw
    (`expectedTotalAmount`) and the API refuses one that no longer matches: nothing bought."""
    from models import ProductUpdate

    with api_app(tmp_path / "shop.db") as api, product_api_to(api.app):
        shop = api.app.state.shop
        before = _stock(api, 3)

        async def raise_then_accept(_ctx: Any, params: Any) -> ElicitResult:
            assert "**Total: 299.00 USD**" in params.message
            shop.update_product(3, ProductUpdate(price=9999))
            return ElicitResult(action="accept", content={})

        body = {"customerName": "Price Race", "items": [{"productId": 3, "quantity": 1}]}
        async with in_memory("legacy", elicitation_callback=raise_then_accept) as client:
            result = await client.call_tool("create_purchase", body)
        assert result.is_error, text_of(result)
        text = text_of(result)
        assert "9,999.00" in text and "299.00" in text and "nothing was bought" in text, text
        assert _stock(api, 3) == before
        assert api.get("/api/orders", params={"customer": "Price Race"}).json() == []
        # asked again, at the new price, it goes through
        async with in_memory("legacy", elicitation_callback=Answers("accept")) as client:
            again = await client.call_tool("create_purchase", body)
        assert not again.is_error and again.structured_content["totalAmount"] == 9999.0  # type: ignore[index]


@pytest.mark.parametrize("db_kind", DATABASES)
def test_the_api_refuses_a_total_that_is_not_the_expected_one(tmp_path: Any, db_kind: str) -> None:
    """On PostgreSQL too (a purchase carrying a total takes the transaction there, not the
    one-statement purchase, which cannot check it)."""
    with api_on_fresh_database(db_kind, tmp_path, "expected_total") as api:
        body = {"customerName": "Api Total", "items": [{"productId": 1, "quantity": 2}]}
        before = _stock(api, 1)
        r = api.post("/api/purchase", json={**body, "expectedTotalAmount": 2598.01})
        assert r.status_code == 409, r.text
        assert "2,598.00" in r.json()["detail"] and "nothing was bought" in r.json()["detail"]
        assert _stock(api, 1) == before
        r = api.post("/api/purchase", json={**body, "expectedTotalAmount": 2598.004})
        assert r.status_code == 422 and "two decimals" in r.text, r.text  # not 2598.00
        r = api.post("/api/purchase", json={**body, "expectedTotalAmount": 2598})
        assert r.status_code == 200 and r.json()["totalAmount"] == 2598.0
        assert set(r.json()) == {"id", "customerName", "items", "totalAmount", "orderDate"}
    # a large total in cents is whole, though its float times 100 is not (found from outside)
    big = {"customerName": "Big", "items": [{"productId": 1, "quantity": 1}]}
    assert PurchaseRequest.model_validate({**big, "expectedTotalAmount": 134217829.95})


async def test_a_total_shown_for_one_purchase_is_not_sent_with_the_next(in_process: Any) -> None:
    """Found in review: the total a confirmation showed was left set, and a later purchase in
    the same context (a server run in process awaits each call in the caller's task) that
    was never asked sent it: "the total is now 298,701.00, not the 299.00 expected" where the
    answer was "insufficient stock"."""
    async with in_memory("modern", elicitation_callback=Answers("accept")) as client:
        one = {"customerName": "Twice", "items": [{"productId": 3, "quantity": 1}]}
        assert not (await client.call_tool("create_purchase", one)).is_error
        many = {"customerName": "Twice", "items": [{"productId": 3, "quantity": 9999}]}
        result = await client.call_tool("create_purchase", many)
    assert result.is_error and "Insufficient stock" in text_of(result), text_of(result)
