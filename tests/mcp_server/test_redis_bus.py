"""Issue 13, with REDIS_URL: an event published on the SubscriptionBus of one main.py (a tool's
`ctx.notify_resource_updated`) reaches the `subscriptions/listen` streams and the handshake-era
subscribers of every replica exactly once, while a change-feed update (which every replica
follows itself) is still heard once, not once per replica.

Two main.py processes (tests/bus_replica.py: main.py plus an `announce` tool) share one Redis
key prefix; no balancer is needed: each client talks to the replica it names.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import redis
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp.shared.subscriptions import ResourcesListChanged, ResourceUpdated, ServerEvent

from tests.databases import REDIS
from tests.mcp_helpers import connect
from tests.mcp_server.test_live import Heard
from tests.servers import Service, free_port, start, start_api

pytestmark = pytest.mark.anyio
QUIET = 1.5  # seconds to wait for a duplicate that must not come
CUSTOM = "shop://custom/1"  # a URI only the tool announces


@pytest.fixture
def replicas(tmp_path: Path, prefix: str) -> Iterator[tuple[Service, Service, Service, str]]:
    api = start_api(tmp_path / "shop.db")
    env = {"PRODUCT_API_URL": f"{api.url}/api", "REDIS_URL": REDIS, "REDIS_PREFIX": prefix}
    started: list[Service] = [api]
    try:
        for tag in ("a1", "b1"):
            port = free_port()
            flags = ["--host", "127.0.0.1", "--port", str(port)]
            svc = start(
                ["-m", "tests.bus_replica", *flags], port=port, env={**env, "MCP_REPLICA_TAG": tag}
            )
            started.append(svc)
        _wait_subscribed(f"{prefix}subscriptions", 2)
        yield started[1], started[2], api, prefix
    finally:
        for svc in reversed(started):
            svc.stop()


def _wait_subscribed(channel: str, count: int) -> None:
    """Both replicas' relays listen on the channel (else a publish now would reach nobody)."""
    r = redis.Redis.from_url(REDIS)
    deadline = time.monotonic() + 20
    while dict(r.pubsub_numsub(channel)).get(channel.encode(), 0) < count:
        assert time.monotonic() < deadline, f"fewer than {count} replicas on {channel}"
        time.sleep(0.1)


class Events(list[ServerEvent]):
    """What one listen stream heard, and a wait for more."""

    def __init__(self) -> None:
        super().__init__()
        self.more = anyio.Event()

    def hear(self, event: ServerEvent) -> None:
        self.append(event)
        self.more.set()

    async def until(self, wanted: ServerEvent) -> None:
        with anyio.fail_after(20):
            while wanted not in self:
                self.more = anyio.Event()
                await self.more.wait()


@asynccontextmanager
async def listening(client: Client, *uris: str) -> AsyncIterator[Events]:
    """A listen stream whose events are collected in the background."""
    heard = Events()
    listen = client.listen(resources_list_changed=True, resource_subscriptions=uris)
    async with listen as sub, anyio.create_task_group() as tg:

        async def collect() -> None:
            async for event in sub:
                heard.hear(event)

        tg.start_soon(collect)
        yield heard
        tg.cancel_scope.cancel()


async def test_a_tool_event_reaches_every_replica_once(
    replicas: tuple[Service, Service, Service, str],
) -> None:
    a, b, api, _ = replicas
    async with (
        connect("modern", a.url) as on_a,
        connect("modern", b.url) as on_b,
        connect("legacy", b.url, message_handler=(legacy := Heard())) as legacy_b,
        listening(on_a, CUSTOM, "shop://products/1") as heard_a,
        listening(on_b, CUSTOM, "shop://products/1") as heard_b,
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await legacy_b.subscribe_resource(CUSTOM)
        result = await on_a.call_tool("announce", {"uri": CUSTOM, "list_changed": True})
        assert not result.is_error
        update, listed = ResourceUpdated(uri=CUSTOM), ResourcesListChanged()
        await heard_b.until(update)
        await heard_b.until(listed)
        await legacy.until(lambda: CUSTOM in legacy.updated and legacy.list_changed == 1)
        # A change-feed update: each replica tells its own listeners, not through Redis.
        body = {"customerName": "Bus", "items": [{"productId": 1, "quantity": 1}]}
        async with httpx.AsyncClient() as http:
            assert (await http.post(f"{api.url}/api/purchase", json=body)).is_success
        bought = ResourceUpdated(uri="shop://products/1")
        await heard_b.until(bought)
        await heard_a.until(bought)
        await anyio.sleep(QUIET)
    for heard in (heard_a, heard_b):
        assert heard.count(update) == 1 and heard.count(listed) == 1, heard
        assert heard.count(bought) == 1, heard
    assert legacy.updated.count(CUSTOM) == 1 and legacy.list_changed == 1
