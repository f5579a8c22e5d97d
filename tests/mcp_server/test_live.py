"""Issue 13, live inventory over MCP: a real api.py and main.py; a change made through the API
reaches the clients that subscribed, over /mcp with the handshake (resources/subscribe), over
/sse, and over /mcp at 2026-07-28 (subscriptions/listen); unsubscribed clients hear nothing;
restock, edit, archive and import each notify; an API restart loses nothing (the follower
resumes from its last seq); a restarted main.py tells a re-subscribing client what changed
since the seq it last saw."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.subscriptions import ResourcesListChanged, ResourceUpdated

from tests.mcp_helpers import Kind, connect
from tests.servers import start
from tests.stack import Stack, stack_fixture

pytestmark = pytest.mark.anyio
TOKEN = "live-token"
STAFF = {"Authorization": f"Bearer {TOKEN}"}
WAIT = 20  # seconds: a generous bound for a notification, never a speed assertion


@stack_fixture
def live(s: Stack) -> None:
    s.mcp(s.api(env={"ADMIN_TOKEN": TOKEN}))


class Heard:
    """What a handshake-era client was notified of."""

    def __init__(self) -> None:
        self.updated: list[str] = []
        self.list_changed = 0
        self.seqs: list[int] = []  # the feed seq each update carried (_meta "shop/seq")
        self.changed = anyio.Event()

    async def __call__(self, message: Any) -> None:
        method = getattr(message, "method", None)
        if method == "notifications/resources/updated":
            self.updated.append(str(message.params.uri))
            self.seqs += [(message.params.meta or {}).get("shop/seq", -1)]
        elif method == "notifications/resources/list_changed":
            self.list_changed += 1
        else:
            return
        self.changed.set()

    async def until(self, done: Callable[[], bool]) -> None:
        with anyio.fail_after(WAIT):
            while not done():
                self.changed = anyio.Event()
                if done():
                    return
                await self.changed.wait()


@asynccontextmanager
async def subscribed(kind: Kind, url: str, *uris: str) -> AsyncIterator[tuple[Client, Heard]]:
    heard = Heard()
    extra = {"mode": "legacy"} if kind == "sse" else {}  # subscribe is handshake-era only
    async with connect(kind, url, message_handler=heard, **extra) as client:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            for uri in uris:
                await client.subscribe_resource(uri)
        yield client, heard


async def _buy(api: str, product: int, quantity: int = 1) -> None:
    body = {"customerName": "Live", "items": [{"productId": product, "quantity": quantity}]}
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{api}/api/purchase", json=body)
    assert r.status_code == 200, r.text


async def _staff(api: str, method: str, path: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api, headers=STAFF) as http:
        return await http.request(method, path, **kw)


@pytest.mark.parametrize("kind", ["legacy", "sse"])
async def test_handshake_era_subscribers_hear_purchases(live: Stack, kind: Kind) -> None:
    api, mcp = live["api"].url, live["mcp"].url
    async with (
        subscribed(kind, mcp, "shop://products/2") as (client, heard),
        subscribed(kind, mcp) as (_, deaf),
    ):
        resources = client.server_capabilities.resources
        assert resources is not None and resources.subscribe is True
        await _buy(api, 2)
        await heard.until(lambda: "shop://products/2" in heard.updated)
        text = (await client.read_resource("shop://products/2")).contents[0].text
        assert '"stock":' in text.replace(" ", "")
        await _buy(api, 3)  # not subscribed to 3
        await _buy(api, 2)
        await heard.until(lambda: heard.updated.count("shop://products/2") >= 2)
        assert "shop://products/3" not in heard.updated
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.unsubscribe_resource("shop://products/2")
            await client.subscribe_resource("shop://inventory")
        seen = heard.updated.count("shop://products/2")
        await _buy(api, 2)
        await heard.until(lambda: "shop://inventory" in heard.updated)
        assert heard.updated.count("shop://products/2") == seen  # unsubscribed: nothing
    assert deaf.updated == []


async def test_modern_listeners_hear_changes_and_list_changes(live: Stack) -> None:
    api, mcp = live["api"].url, live["mcp"].url
    async with connect("modern", mcp) as client:
        async with client.listen(
            resources_list_changed=True,
            resource_subscriptions=["shop://products/1", "shop://inventory"],
        ) as sub:
            await _buy(api, 1)
            created = await _staff(
                api, "POST", "/api/products", json={"name": "Lamp", "price": 5, "stock": 2}
            )
            assert created.status_code == 201
            wanted = {
                ResourceUpdated(uri="shop://products/1"),
                ResourceUpdated(uri="shop://inventory"),
                ResourcesListChanged(),
            }
            with anyio.fail_after(WAIT):
                async for event in sub:
                    wanted.discard(event)
                    if not wanted:
                        break
        inventory = (await client.read_resource("shop://inventory")).contents[0].text
        assert '"productId":5' in inventory.replace(" ", "")


async def test_staff_changes_notify_and_a_burst_is_coalesced(live: Stack) -> None:
    api, mcp = live["api"].url, live["mcp"].url
    async with subscribed("legacy", mcp, "shop://products/4", "shop://inventory") as (_, heard):
        for _ in range(20):  # a flash restock: one burst
            assert (await _staff(api, "PATCH", "/api/inventory/4", json={"delta": 1})).is_success
        await heard.until(lambda: "shop://products/4" in heard.updated)
        assert heard.updated.count("shop://products/4") < 20
        csv = {"content": "sku,name,price\nI-1,Imp,2\n", "headers": {"Content-Type": "text/csv"}}
        p4 = heard.updated.count("shop://products/4")
        assert (await _staff(api, "PATCH", "/api/products/4", json={"price": 1})).is_success
        await heard.until(lambda: heard.updated.count("shop://products/4") > p4)
        assert (await _staff(api, "POST", "/api/products/import", **csv)).is_success
        await heard.until(lambda: heard.list_changed == 1)  # a product was created
        p4 = heard.updated.count("shop://products/4")
        assert (await _staff(api, "DELETE", "/api/products/4")).is_success
        await heard.until(
            lambda: heard.list_changed == 2 and heard.updated.count("shop://products/4") > p4
        )


async def test_api_restart_loses_no_change(live: Stack) -> None:
    """While api.py is down the follower retries; afterwards it resumes from its last seq, so
    a change made right after the restart (before any new subscription) still arrives."""
    async with subscribed("legacy", live["mcp"].url, "shop://products/3") as (_, heard):
        await _buy(live["api"].url, 3)
        await heard.until(lambda: "shop://products/3" in heard.updated)
        heard.updated.clear()
        api = live.restart("api")
        await _buy(api.url, 3)
        await heard.until(lambda: "shop://products/3" in heard.updated)


async def test_main_restart_announces_what_changed_while_it_was_down(live: Stack) -> None:
    """The client keeps the feed seq (`_meta["shop/seq"]` of subscribe answers and updates);
    re-subscribing to a restarted main.py with `_meta["shop/after"]` tells it what it missed,
    and only that: an unchanged URI is not announced until it really changes."""
    api, old = live["api"].url, live["mcp"]
    seen: list[int] = []
    async with subscribed("legacy", old.url) as (client, heard):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            answer = await client.subscribe_resource("shop://products/2")
        assert answer.meta is not None
        seen.append(answer.meta["shop/seq"])
        await _buy(api, 2)
        await heard.until(lambda: "shop://products/2" in heard.updated)
        seen.append(max(heard.seqs))
    assert seen[1] > seen[0]
    old.stop()
    await _buy(api, 2)  # main.py is down: nobody is told now
    new = live.add("mcp", start(old.args, port=old.port, env=old.env))
    async with subscribed("legacy", new.url) as (client, heard):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            for uri in ("shop://products/5", "shop://products/2"):
                await client.subscribe_resource(uri, meta={"shop/after": seen[1]})
        await heard.until(lambda: "shop://products/2" in heard.updated)
        assert min(heard.seqs) > seen[1]
        await _buy(api, 5)
        await heard.until(lambda: "shop://products/5" in heard.updated)
        assert heard.updated.count("shop://products/5") == 1  # not announced by the hint


MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "listen-test", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


class RawListen:
    """A `subscriptions/listen` stream over raw HTTP, to send and see `_meta` (Client.listen
    hides both)."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next(self) -> dict[str, Any]:
        """The next JSON-RPC frame (its params)."""
        with anyio.fail_after(WAIT):
            async for line in self.lines:
                if line.startswith("data: ") and line[6:].strip():
                    return json.loads(line[6:])
        raise AssertionError("the listen stream ended")

    async def updates(self, count: int) -> list[tuple[str, int]]:
        """The next `count` resource updates as (uri, shop/seq)."""
        out: list[tuple[str, int]] = []
        while len(out) < count:
            frame = await self.next()
            if frame.get("method") == "notifications/resources/updated":
                out.append((frame["params"]["uri"], frame["params"]["_meta"]["shop/seq"]))
        return out


@asynccontextmanager
async def raw_listen(
    mcp: str, uris: list[str], after: int | None = None
) -> AsyncIterator[RawListen]:
    meta: dict[str, Any] = dict(MODERN_META)
    if after is not None:
        meta["shop/after"] = after
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "subscriptions/listen",
        "params": {"notifications": {"resourceSubscriptions": uris}, "_meta": meta},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "Mcp-Protocol-Version": "2026-07-28",
        "Mcp-Method": "subscriptions/listen",
    }
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as http,
        http.stream("POST", f"{mcp}/mcp", json=body, headers=headers) as r,
    ):
        assert r.status_code == 200, await r.aread()
        yield RawListen(r)


async def _ack(mcp: str, uris: list[str]) -> dict[str, Any]:
    async with raw_listen(mcp, uris) as stream:
        return await stream.next()


async def test_listen_stream_catches_up_from_the_last_seq_it_saw(live: Stack) -> None:
    """2026-07-28: the ack and each update carry `_meta["shop/seq"]`; a new stream asked with
    `_meta["shop/after"]` first hears each subscribed URI changed since (once, with its seq),
    and not the ones that did not change."""
    api, mcp = live["api"].url, live["mcp"].url
    uris = ["shop://products/2", "shop://products/1"]
    with anyio.fail_after(WAIT):
        for _ in range(1000):  # until main.py has read the feed's head
            if "shop/seq" in (await _ack(mcp, uris))["params"]["_meta"]:
                break
            await anyio.sleep(0.1)
    async with raw_listen(mcp, uris) as stream:
        ack = await stream.next()
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        start = ack["params"]["_meta"]["shop/seq"]
        await _buy(api, 2)
        [(uri, seen)] = await stream.updates(1)
        assert uri == "shop://products/2" and seen > start
    await _buy(api, 2, 2)  # no stream open: missed
    async with raw_listen(mcp, uris, after=seen) as stream:
        ack = await stream.next()
        assert ack["params"]["_meta"]["shop/seq"] == seen  # not past what it has yet to hear
        [(uri, caught)] = await stream.updates(1)
        assert uri == "shop://products/2" and caught > seen
        await _buy(api, 1)
        [(uri, later)] = await stream.updates(1)
        assert uri == "shop://products/1" and later > caught  # 1 was not announced before
    async with raw_listen(mcp, uris, after=later) as stream:  # nothing missed: nothing said
        await stream.next()
        await _buy(api, 3)
        await _buy(api, 2)
        assert await stream.updates(1) == [("shop://products/2", later + 2)]


@pytest.mark.parametrize("read_up_to", [5, None])
async def test_catch_up_and_a_lagging_follower_announce_a_change_once(
    read_up_to: int | None,
) -> None:
    """A listen stream catching up from seq 3 reads api.py's feed up to seq 5, while main.py's
    own follower, behind under load, delivers seq 5 only now: the stream heard products/2
    twice (seen in a full run). What the catch-up covered is said once; newer news still is.
    `None`: the client's bookmark is already 5 (its last stream heard it from another replica)
    and the catch-up finds nothing: the follower's late 5 is still not news."""
    from mcp.types import SubscriptionsListenRequestParams

    from product_mcp.mcp_server.bus import FeedUpdated
    from product_mcp.mcp_server.listen import _STREAM, _Stream, _StreamBus
    from product_mcp.mcp_server.live import Changes

    reading = anyio.Event()
    release = anyio.Event()

    class LaggingLive:
        after = 3

        async def changes_after(self, after: int) -> Changes:
            reading.set()
            await release.wait()
            if read_up_to is None:
                return Changes()  # nothing after the client's bookmark
            changes = Changes(head=read_up_to)
            changes.add(read_up_to, {"kind": "purchased", "productId": 2})
            return changes

    class LocalBus:
        def __init__(self) -> None:
            self.listeners: list[Any] = []

        def subscribe(self, listener: Any) -> Any:
            self.listeners.append(listener)
            return lambda: None

    bus = LocalBus()
    heard: list[tuple[str, int | None]] = []
    said = anyio.Event()
    params = SubscriptionsListenRequestParams.model_validate(
        {"notifications": {"resourceSubscriptions": ["shop://products/2"]}}
    )
    token = _STREAM.set(_Stream(params, after=3 if read_up_to else 5))
    try:
        _StreamBus(bus, LaggingLive()).subscribe(  # type: ignore[arg-type]
            lambda e: (heard.append((str(e.uri), e.seq)), said.set())
        )
    finally:
        _STREAM.reset(token)
    await reading.wait()
    [follower] = bus.listeners
    follower(FeedUpdated(uri="shop://products/2", seq=5))  # the lagging follower's copy
    release.set()
    if read_up_to is None:
        follower(FeedUpdated(uri="shop://products/2", seq=6))  # news
        with anyio.fail_after(5):
            await said.wait()
        assert heard == [("shop://products/2", 6)]
        return
    with anyio.fail_after(5):
        await said.wait()
    follower(FeedUpdated(uri="shop://products/2", seq=5))  # still late: already said
    follower(FeedUpdated(uri="shop://products/2", seq=6))  # news
    assert heard == [("shop://products/2", 5), ("shop://products/2", 6)]


async def test_the_follower_does_not_take_a_resent_event_for_news() -> None:
    """An event at or before the last seq handled (the feed re-sending it) marks nothing:
    it was told already."""
    from product_mcp.mcp_server.bus import ShopBus
    from product_mcp.mcp_server.live import Live

    live = Live(object(), ShopBus())
    live.after = 7
    live.handle({"seq": 7, "kind": "purchased", "productId": 2})
    live.handle({"seq": 5, "kind": "purchased", "productId": 3})
    assert live._pending == set() and live.after == 7
    live.handle({"seq": 8, "kind": "purchased", "productId": 2})
    assert live._pending == {"shop://products/2", "shop://inventory"} and live.after == 8
    if live._flush is not None:
        live._flush.cancel()


async def test_a_feed_answer_without_its_head_header_is_said_in_words(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A proxy between main.py and api.py that drops `X-Change-Head` leaves the follower no
    seq to start from: the log says which header is missing (not `KeyError: 'x-change-head'`),
    and the follower keeps asking."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from product_mcp.mcp_server.bus import ShopBus
    from product_mcp.mcp_server.live import Live
    from tests.servers import ThreadServer

    asked: list[int] = []
    again = threading.Event()  # the server runs in its own thread

    async def changes(_request: Any) -> JSONResponse:
        asked.append(1)
        if len(asked) >= 2:
            again.set()
        return JSONResponse({"changes": []})  # what a header-stripping proxy passes on

    live = Live(object(), ShopBus())
    with ThreadServer(Starlette(routes=[Route("/api/changes", changes)])) as api:
        caplog.set_level("INFO", logger="mcp.live")
        live.start(f"{api.url}/api")
        try:
            assert await anyio.to_thread.run_sync(again.wait, WAIT)
        finally:
            await live.stop()
    said = [r.getMessage() for r in caplog.records if r.name == "mcp.live"]
    assert "change feed unavailable (the API's answer has no X-Change-Head header)" in said[0]
    assert live.after is None


async def test_a_listen_names_at_most_the_subscription_limit(live: Stack) -> None:
    """Found from outside: a listen stream could name any number of URIs (150,000 in a 3.7 MB
    body), and every event rebuilt the set of them for every stream on the event loop: 20 such
    streams held an unrelated /healthz for 3.6 s and main.py's memory grew by 1.2 GB. A listen
    names at most MCP_MAX_SUBSCRIPTIONS URIs (as resources/subscribe), each of MAX_URI_CHARS."""
    from mcp.shared.exceptions import MCPError

    mcp = live["mcp"].url
    async with connect("modern", mcp) as client:
        many = [f"shop://products/{i}" for i in range(1001)]
        with pytest.raises(MCPError) as refused:
            async with client.listen(resource_subscriptions=many):
                pass
        assert refused.value.error.code == -32602
        assert "at most 1000" in refused.value.error.message
        with pytest.raises(MCPError) as refused:
            async with client.listen(resource_subscriptions=["shop://" + "x" * 3000]):
                pass
        assert "at most 2048 characters" in refused.value.error.message
        async with client.listen(resource_subscriptions=many[:1000]) as sub:  # the limit is fine
            await _buy(live["api"].url, 2)
            with anyio.fail_after(WAIT):
                async for event in sub:
                    if event == ResourceUpdated(uri="shop://products/2"):
                        break
