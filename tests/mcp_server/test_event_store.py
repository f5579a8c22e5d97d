"""event_store.InMemoryEventStore against the SDK's EventStore contract, in-process."""

from __future__ import annotations

import pytest
from mcp.server.streamable_http import EventMessage, EventStore
from mcp.types import JSONRPCNotification

from product_mcp.mcp_server.event_store import InMemoryEventStore, SessionEventStore

pytestmark = pytest.mark.anyio


def note(n: int) -> JSONRPCNotification:
    return JSONRPCNotification(jsonrpc="2.0", method="notifications/progress", params={"n": n})


async def replay(store: EventStore, after: str) -> tuple[str | None, list[EventMessage]]:
    got: list[EventMessage] = []

    async def send(event: EventMessage) -> None:
        got.append(event)

    return await store.replay_events_after(after, send), got


async def test_replays_only_later_events_of_the_same_stream() -> None:
    store = InMemoryEventStore()
    assert store  # the SDK tests `if event_store:`; an empty store must still be truthy
    prime = await store.store_event("a", None)
    a1 = await store.store_event("a", note(1))
    await store.store_event("b", note(100))
    a2 = await store.store_event("a", note(2))
    a3 = await store.store_event("a", note(3))

    stream, events = await replay(store, a1)
    assert stream == "a"
    assert [e.event_id for e in events] == [a2, a3]
    assert [e.message.params["n"] for e in events] == [2, 3]  # type: ignore[union-attr]

    stream, events = await replay(store, prime)  # priming events are never sent
    assert [e.event_id for e in events] == [a1, a2, a3]
    assert (await replay(store, a3)) == ("a", [])


async def test_unknown_or_foreign_ids_replay_nothing() -> None:
    store = InMemoryEventStore()
    await store.store_event("a", note(1))
    assert await replay(store, "nope") == (None, [])
    other = InMemoryEventStore()  # another process: ids carry a per-process epoch
    assert await replay(other, await store.store_event("a", note(2))) == (None, [])


async def test_bounded_oldest_events_evicted() -> None:
    store = InMemoryEventStore(max_events=3)
    ids = [await store.store_event("a" if i % 2 else "b", note(i)) for i in range(6)]
    assert store.size == 3
    assert await replay(store, ids[0]) == (None, [])  # evicted
    stream, events = await replay(store, ids[3])
    assert stream == "a" and [e.event_id for e in events] == [ids[5]]
    assert len(set(ids)) == 6
    with pytest.raises(ValueError):
        InMemoryEventStore(max_events=0)


async def test_sessions_never_see_each_others_streams() -> None:
    shared = InMemoryEventStore()
    alice, bob = SessionEventStore(shared, "alice"), SessionEventStore(shared, "bob")
    a0 = await alice.store_event("7", None)
    await bob.store_event("7", note(100))  # same request id, other session
    await alice.store_event("7", note(1))

    stream, events = await replay(alice, a0)
    assert stream == "7"  # the SDK gets its own stream id back
    assert [e.message.params["n"] for e in events] == [1]  # type: ignore[union-attr]
    assert await replay(bob, a0) == (None, [])  # alice's id is unknown to bob


async def test_forgetting_a_session_frees_its_events_only() -> None:
    shared = InMemoryEventStore(max_events=4)
    alice, bob = SessionEventStore(shared, "alice"), SessionEventStore(shared, "bob")
    a = [await alice.store_event("1", note(i)) for i in range(2)]
    b = await bob.store_event("1", note(9))
    shared.forget("alice/")
    assert shared.size == 1
    assert await replay(alice, a[0]) == (None, [])
    # Tombstones do not count against the bound: bob keeps four live events.
    more = [await bob.store_event("1", note(i)) for i in range(3)]
    assert shared.size == 4
    stream, events = await replay(bob, b)
    assert stream == "1"
    assert [e.event_id for e in events] == more
