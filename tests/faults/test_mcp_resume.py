"""Issue 7: stream resumption that loses nothing. A tool call's stream is cut while the tool
is still running (a delaying proxy holds the API's answer), once or twice, with the old
stream dropped or still held, or after the answer: resumed with Last-Event-ID, every event
arrives exactly once and the answer last. The event store's replay is also raced directly.
Protocol abuse: test_mcp_abuse.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from mcp.server.streamable_http import EventMessage
from mcp.types import JSONRPCNotification, JSONRPCResponse

from product_mcp.mcp_server.event_store import InMemoryEventStore
from tests.mcp_helpers import open_session, rpc, session_headers, sse_events
from tests.servers import Service
from tests.slow_api import SlowApi
from tests.stack import Stack

pytestmark = pytest.mark.anyio

SLOW = 1.5  # seconds the proxy holds back /api/analytics answers


@pytest.fixture(scope="module")
def slow(
    api: Service, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, SlowApi]]:
    """main.py whose analytics calls take SLOW seconds (everything else is forwarded at once)."""
    with Stack(tmp_path_factory.mktemp("slow")) as s:
        proxy = s.slow_api(api, {"/api/analytics": SLOW})
        yield s.mcp(proxy.url), proxy


# --- resumability -------------------------------------------------------------------------

CALL = rpc(
    "tools/call",
    {"name": "analyze_sales", "arguments": {"groupBy": "day"}, "_meta": {"progressToken": "p"}},
    id=77,
)


def _collect_until_answer(
    events: Iterator[dict[str, Any]],
    into: list[dict[str, Any]],
    stop_after_progress: int | None = None,
) -> bool:
    """Append events to `into` until the call's answer (True) or a cut point (False).

    Takes the event iterator, not the response: closing a half-read iterator makes httpx drop
    the connection, and the "still held" case needs it to stay open."""
    for event in events:
        into.append(event)
        data = event.get("data") or {}
        if data.get("id") == 77:
            return True
        if (
            stop_after_progress is not None
            and data.get("method") == "notifications/progress"
            and data["params"]["progress"] == stop_after_progress
        ):
            return False
    return False


def _check_exactly_once(events: list[dict[str, Any]]) -> None:
    messages = [e["data"] for e in events if e.get("data")]
    ids = [e["id"] for e in events if e.get("data")]
    assert len(ids) == len(set(ids)), f"an event was repeated: {ids}"
    progress = [
        m["params"]["progress"] for m in messages if m.get("method") == "notifications/progress"
    ]
    assert progress == [0, 1, 2, 3], f"a progress event was lost or repeated: {progress}"
    answers = [m for m in messages if m.get("id") == 77]
    assert len(answers) == 1 and answers[0]["result"]["isError"] is False, answers
    assert answers[0]["result"]["structuredContent"]["groupBy"] == "day"
    assert messages[-1] is answers[0], "the answer must come last"


def _session(http: httpx.Client, url: str) -> dict[str, str]:
    return session_headers(open_session(http, url))


@pytest.mark.parametrize("drop_first", [True, False], ids=["dropped", "still-held"])
def test_cut_mid_call_resumes_exactly_once(slow: tuple[Service, SlowApi], drop_first: bool) -> None:
    """Cut after the first progress event while the API is still answering, resume by id.

    dropped: the client closes the POST, then resumes. still-held: it resumes while the server
    still holds the old stream open (a dead connection the server has not noticed yet), which
    the SDK alone answered with the replay and then an ended stream: the rest was lost.
    """
    server, proxy = slow
    url = f"{server.url}/mcp"
    with httpx.Client(timeout=20) as http:
        headers = _session(http, url)
        seen: list[dict[str, Any]] = []
        started = proxy.finished
        post = http.stream("POST", url, json=CALL, headers=headers)
        held = sse_events(post.__enter__())  # kept referenced: the connection stays open
        try:
            assert not _collect_until_answer(held, seen, stop_after_progress=0)
            assert proxy.finished == started, "the tool must still be running at the cut"
            if drop_first:
                post.__exit__(None, None, None)
            with http.stream(
                "GET", url, headers={**headers, "Last-Event-ID": seen[-1]["id"]}
            ) as again:
                assert again.status_code == 200
                assert _collect_until_answer(sse_events(again), seen), (
                    "the resumed stream ended early"
                )
        finally:
            if not drop_first:
                post.__exit__(None, None, None)
        http.delete(url, headers=headers)
    _check_exactly_once(seen)


def test_resume_twice(slow: tuple[Service, SlowApi]) -> None:
    """Cut the POST, resume, cut the resumed stream too, resume again: still exactly once."""
    server, _ = slow
    url = f"{server.url}/mcp"
    with httpx.Client(timeout=20) as http:
        headers = _session(http, url)
        seen: list[dict[str, Any]] = []
        with http.stream("POST", url, json=CALL, headers=headers) as resp:
            assert not _collect_until_answer(sse_events(resp), seen, stop_after_progress=0)
        with http.stream("GET", url, headers={**headers, "Last-Event-ID": seen[-1]["id"]}) as r:
            assert not _collect_until_answer(sse_events(r), seen, stop_after_progress=1)
        with http.stream("GET", url, headers={**headers, "Last-Event-ID": seen[-1]["id"]}) as r:
            assert _collect_until_answer(sse_events(r), seen)
        http.delete(url, headers=headers)
    _check_exactly_once(seen)


def test_resume_after_the_answer_replays_the_rest(slow: tuple[Service, SlowApi]) -> None:
    """Cut, wait until the call has finished unheard, resume: the rest arrives from the store."""
    server, proxy = slow
    url = f"{server.url}/mcp"
    with httpx.Client(timeout=20) as http:
        headers = _session(http, url)
        seen: list[dict[str, Any]] = []
        done = proxy.finished
        with http.stream("POST", url, json=CALL, headers=headers) as resp:
            assert not _collect_until_answer(sse_events(resp), seen, stop_after_progress=0)
        deadline = time.monotonic() + 10
        while proxy.finished == done and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        with http.stream("GET", url, headers={**headers, "Last-Event-ID": seen[-1]["id"]}) as r:
            assert _collect_until_answer(sse_events(r), seen)
        http.delete(url, headers=headers)
    _check_exactly_once(seen)


# --- the store itself, with events racing the replay --------------------------------------


def _progress(n: int) -> JSONRPCNotification:
    return JSONRPCNotification(
        jsonrpc="2.0", method="notifications/progress", params={"progressToken": 1, "progress": n}
    )


async def test_store_replay_follows_a_running_request_until_its_answer() -> None:
    store = InMemoryEventStore(follow_timeout=5)
    prime = await store.store_event("7", None)
    await store.store_event("7", _progress(0))
    got: list[EventMessage] = []

    async def slow_send(event: EventMessage) -> None:
        await anyio.sleep(0.02)  # a slow socket: the tool goes on meanwhile
        got.append(event)

    async def tool() -> None:
        for n in range(1, 6):
            await anyio.sleep(0.01)
            await store.store_event("7", _progress(n))
            await store.store_event("other", _progress(100 + n))
        await store.store_event("7", JSONRPCResponse(jsonrpc="2.0", id=7, result={}))
        await store.store_event("7", _progress(99))  # never after the answer

    async with anyio.create_task_group() as tg:
        tg.start_soon(tool)
        assert await store.replay_events_after(prime, slow_send) == "7"
    kinds = [getattr(e.message, "params", {"progress": "answer"})["progress"] for e in got]
    assert kinds == [0, 1, 2, 3, 4, 5, "answer"]
    assert len({e.event_id for e in got}) == len(got)


async def _discard(_: EventMessage) -> None:
    pass


async def test_store_follow_gives_up_when_quiet() -> None:
    store = InMemoryEventStore(follow_timeout=0.2)
    first = await store.store_event("7", _progress(0))
    t0 = time.monotonic()
    assert await store.replay_events_after(first, _discard) == "7"
    assert 0.15 < time.monotonic() - t0 < 2
    # the standalone GET stream is never followed: it has no answer to wait for (a store
    # that would follow for 30 s returns at once)
    store = InMemoryEventStore(follow_timeout=30)
    g = await store.store_event("_GET_stream", _progress(1))
    t0 = time.monotonic()
    assert await store.replay_events_after(g, _discard) == "_GET_stream"
    assert time.monotonic() - t0 < 15
