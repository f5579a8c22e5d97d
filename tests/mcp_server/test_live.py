"""Issue 13, live inventory over MCP: a real api.py and main.py; a change made through the API
reaches the clients that subscribed, over /mcp with the handshake (resources/subscribe), over
/sse, and over /mcp at 2026-07-28 (subscriptions/listen); unsubscribed clients hear nothing;
restock, edit, archive and import each notify; an API restart loses nothing (the follower
resumes from its last seq); a restarted main.py tells a re-subscribing client what changed
since the seq it last saw."""

from __future__ import annotations

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
