"""One hostile MCP client must not hurt anyone else (issue #11): request ids, the handshake,
and a purchase cancelled too late.

Each test reproduces a failure seen from outside against the previous main.py; the process and
its transports are the point, so everything runs against real api.py and main.py processes.
Sessions, memory and connections a client hoards: test_mcp_hostile_resources.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.mcp_helpers import ACCEPT, INIT, open_session, rpc, session_headers, sse_events
from tests.servers import Service
from tests.stack import Stack

BUY = {"name": "create_purchase"}
GRACE = 0.5  # MCP_HANDSHAKE_GRACE of the `impatient` main.py


def purchase(customer: str, rid: Any) -> dict[str, Any]:
    args = {"customerName": customer, "items": [{"productId": 3, "quantity": 1}]}
    return rpc("tools/call", {**BUY, "arguments": args}, id=rid)


def orders_of(api: Service, customer: str) -> list[dict[str, Any]]:
    return httpx.get(f"{api.url}/api/orders", params={"customer": customer}).json()


@pytest.fixture(scope="module")
def mcp(api: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Stack(tmp_path_factory.mktemp("mcp")) as s:
        yield s.mcp(api)


@pytest.fixture(scope="module")
def impatient(api: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """main.py that waits only 0.5 s for a late `notifications/initialized` (not 10 s)."""
    with Stack(tmp_path_factory.mktemp("impatient")) as s:
        yield s.mcp(api, env={"MCP_HANDSHAKE_GRACE": str(GRACE)})


@pytest.fixture(scope="module")
def slow_buy(api: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """main.py whose purchases take 1.5 s to come back from the API."""
    with Stack(tmp_path_factory.mktemp("slow-buy")) as s:
        yield s.mcp(s.slow_api(api, {"/api/purchase": 1.5}).url)


# --- ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rid", "why"),
    [
        ("x" * 1_000_000, "at most 256 characters"),
        ("x" * 257, "at most 256 characters"),
        (1.5, "a string or an integer"),
        (None, "a string or an integer"),
        (True, "a string or an integer"),
        (2**60, "at most 53 bits"),
    ],
)
def test_absurd_ids_are_refused_on_both_transports(mcp: Service, rid: Any, why: str) -> None:
    with httpx.Client(timeout=30) as http:
        sid = open_session(http, f"{mcp.url}/mcp")
        ping = {"jsonrpc": "2.0", "method": "ping", "id": rid}  # rpc() drops a None id
        r = http.post(f"{mcp.url}/mcp", json=ping, headers=session_headers(sid))
        assert r.status_code == 400, r.text[:200]
        error = r.json()["error"]
        assert error["code"] == -32600 and why in error["message"]
        assert len(r.content) < 1000  # the id is not echoed back
        with sse_session(mcp) as (post, _events):
            r = post(ping)
            assert r.status_code == 400 and r.json()["error"]["code"] == -32600


def test_an_id_of_256_characters_still_works(mcp: Service) -> None:
    with httpx.Client(timeout=30) as http:
        sid = open_session(http, f"{mcp.url}/mcp")
        r = http.post(
            f"{mcp.url}/mcp", json=rpc("ping", id="x" * 256), headers=session_headers(sid)
        )
        assert r.status_code == 200 and '"result"' in r.text


def _post_in_thread(url: str, body: dict[str, Any], hdrs: dict[str, str]) -> dict[str, Any]:
    box: dict[str, Any] = {}

    def run() -> None:
        with httpx.Client(timeout=30) as http:
            r = http.post(url, json=body, headers=hdrs)
            box["status"], box["text"] = r.status_code, r.text

    box["thread"] = threading.Thread(target=run)
    box["thread"].start()
    return box


def test_reused_id_in_flight_is_refused_and_the_first_keeps_its_answer(
    api: Service, slow_buy: Service
) -> None:
    with httpx.Client(timeout=30) as http:
        sid = open_session(http, f"{slow_buy.url}/mcp")
        alice = _post_in_thread(
            f"{slow_buy.url}/mcp", purchase("Alice Reuse", 7), session_headers(sid)
        )
        time.sleep(0.5)  # Alice's purchase is at the API now
        bob = http.post(
            f"{slow_buy.url}/mcp", json=purchase("Bob Reuse", 7), headers=session_headers(sid)
        )
        assert bob.status_code == 400
        assert "already in use" in bob.json()["error"]["message"]
        alice["thread"].join(30)
    assert alice["status"] == 200 and "Alice Reuse" in alice["text"]
    assert "Bob Reuse" not in alice["text"]
    assert len(orders_of(api, "Alice Reuse")) == 1
    assert orders_of(api, "Bob Reuse") == []  # refused without being run


def test_an_id_is_free_again_once_its_answer_has_arrived(mcp: Service) -> None:
    """Found from outside: a client that sent id 1 again only after reading the answer to
    its last id 1 was told, at random (40 % of calls), that id 1 was "in use by a request in
    progress": the guard freed the id only after the response had gone out."""
    with httpx.Client(timeout=30) as http:
        sid = open_session(http, f"{mcp.url}/mcp")
        for n in range(30):
            call = rpc("tools/call", {"name": "get_products", "arguments": {"limit": n % 2}})
            r = http.post(f"{mcp.url}/mcp", json=call, headers=session_headers(sid))
            assert r.status_code == 200 and "in use" not in r.text, (n, r.text)


# --- the SSE transport -------------------------------------------------------------------


@contextmanager
def sse_session(server: Service, initialized: bool = True) -> Iterator[tuple[Any, list[Any]]]:
    """An initialized SSE session: (post(message) -> response, events seen so far)."""
    events: list[dict[str, Any]] = []
    ready = threading.Event()
    endpoint: list[str] = []
    stop = threading.Event()

    def read() -> None:
        try:
            listen()
        except httpx.TransportError:
            if not stop.is_set():  # the server stopping after the session ended is no news
                raise

    def listen() -> None:
        with (
            httpx.Client(timeout=60) as http,
            http.stream("GET", f"{server.url}/sse") as stream,
        ):
            kind, data = "message", []
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    if kind == "endpoint":
                        endpoint.append(data[0])
                        ready.set()
                    else:
                        events.append(json.loads("\n".join(data)))
                    kind, data = "message", []
                if stop.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert ready.wait(10)
    url = server.url + endpoint[0]
    http = httpx.Client(timeout=30)

    def post(message: dict[str, Any]) -> httpx.Response:
        return http.post(url, json=message)

    assert post(INIT).status_code == 202
    if initialized:
        assert post(rpc("notifications/initialized", id=None)).status_code == 202
    try:
        yield post, events
    finally:
        stop.set()
        http.close()


def answers(events: list[Any], rid: Any, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events if isinstance(e, dict) and e.get("id") == rid]
        if any("result" in e for e in found):
            return found
        time.sleep(0.05)
    return [e for e in events if isinstance(e, dict) and e.get("id") == rid]


def test_reused_id_on_sse_is_refused(api: Service, slow_buy: Service) -> None:
    with sse_session(slow_buy) as (post, events):
        assert post(purchase("Alice Sse", 9)).status_code == 202
        time.sleep(0.5)
        bob = post(purchase("Bob Sse", 9))
        assert bob.status_code == 400 and "already in use" in bob.json()["error"]["message"]
        got = answers(events, 9)
    assert len(got) == 1 and "Alice Sse" in json.dumps(got[0])
    assert len(orders_of(api, "Alice Sse")) == 1 and orders_of(api, "Bob Sse") == []


def test_cancelled_requests_on_sse_do_not_count_as_unanswered(
    api: Service, slow_buy: Service
) -> None:
    """A cancelled request gets no answer (MCP: the receiver should not send one), so the
    guard must stop waiting for it: a client that cancelled 32 calls was refused everything
    after (429 "32 requests of this session are unanswered") while reading its stream."""
    with sse_session(slow_buy) as (post, events):
        for n in range(40):
            assert post(purchase(f"Cancel Sse {n}", 100 + n)).status_code == 202
            cancel = rpc("notifications/cancelled", {"requestId": 100 + n}, id=None)
            assert post(cancel).status_code == 202
        r = post(rpc("ping", id=999))
        assert r.status_code == 202, r.text
        assert any("result" in e for e in answers(events, 999))
        # a cancelled id is not free at once: the server may still be running its request
        again = post(purchase("Cancel Sse again", 100))
        assert again.status_code == 400 and "already in use" in again.json()["error"]["message"]


# --- the handshake -----------------------------------------------------------------------


def test_no_purchase_before_initialized_on_mcp(api: Service, impatient: Service) -> None:
    mcp = impatient
    with httpx.Client(timeout=30) as http:
        r = http.post(f"{mcp.url}/mcp", json=INIT, headers={"Accept": ACCEPT})
        sid = r.headers["mcp-session-id"]
        started = time.monotonic()
        r = http.post(
            f"{mcp.url}/mcp", json=purchase("Early Bird", 2), headers=session_headers(sid)
        )
        assert "not initialized" in r.text and "-32600" in r.text
        # refused after MCP_HANDSHAKE_GRACE (not the default 10 s)
        assert GRACE <= time.monotonic() - started < 8, time.monotonic() - started
        ping = http.post(f"{mcp.url}/mcp", json=rpc("ping", id=3), headers=session_headers(sid))
        assert '"result"' in ping.text  # ping is always allowed
    assert orders_of(api, "Early Bird") == []


def test_no_purchase_before_initialized_on_sse(api: Service, impatient: Service) -> None:
    with sse_session(impatient, initialized=False) as (post, events):
        assert post(purchase("Early Sse", 4)).status_code == 202
        # refused after the handshake grace (MCP_HANDSHAKE_GRACE), so wait well past it
        deadline = time.monotonic() + 40
        while not [e for e in events if isinstance(e, dict) and e.get("id") == 4]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        answer = next(e for e in events if isinstance(e, dict) and e.get("id") == 4)
    assert answer["error"]["code"] == -32600
    assert orders_of(api, "Early Sse") == []


# --- cancellation of a purchase ------------------------------------------------------------


def test_a_cancel_after_the_purchase_was_sent_reports_the_order(
    api: Service, slow_buy: Service
) -> None:
    """The cancel cannot un-send a purchase: the order is placed, and the client is told so
    ("cancel arrived too late: order N was placed") instead of a silent -32800."""
    seen: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as http:
        sid = open_session(http, f"{slow_buy.url}/mcp")

        def buy() -> None:
            with http.stream(
                "POST",
                f"{slow_buy.url}/mcp",
                json=purchase("Late Cancel", 11),
                headers=session_headers(sid),
            ) as r:
                seen.extend(e["data"] for e in sse_events(r) if e.get("data"))

        buyer = threading.Thread(target=buy)
        buyer.start()
        time.sleep(0.5)  # the purchase is at the API now
        cancel = rpc(
            "notifications/cancelled", {"requestId": 11, "reason": "changed my mind"}, id=None
        )
        assert (
            http.post(f"{slow_buy.url}/mcp", json=cancel, headers=session_headers(sid)).status_code
            == 202
        )
        buyer.join(30)
    placed = orders_of(api, "Late Cancel")
    assert len(placed) == 1
    notes = [m["params"]["data"] for m in seen if m.get("method") == "notifications/message"]
    assert any(
        f"cancel arrived too late: order {placed[0]['id']} was placed" in n for n in notes
    ), seen
    # The transport still closes the request with -32800, after the truth was told.
    assert [m.get("id") for m in seen if "id" in m] in ([], [11])


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_a_call_whose_session_is_deleted_under_it_is_told_so(
    api: Service, slow_buy: Service, version: str
) -> None:
    """Found from outside: a purchase running when its client DELETEd the session got a 200
    stream that ended with no answer at all (2025-06-18: an empty body; 2025-11-25: only the
    priming event, and resuming it was a 404), though the order was placed. Its stream now
    ends with an error saying the session ended and the call may have completed."""
    with httpx.Client(timeout=30) as http:
        sid = open_session(http, f"{slow_buy.url}/mcp")
        headers = {**session_headers(sid), "Mcp-Protocol-Version": version}
        customer = f"Deleted Dora {version}"
        call = _post_in_thread(f"{slow_buy.url}/mcp", purchase(customer, 9), headers)
        time.sleep(0.5)  # the purchase is at the API now
        assert http.delete(f"{slow_buy.url}/mcp", headers=headers).status_code == 200
        call["thread"].join(30)
        assert call["status"] == 200, call["text"]
        events = sse_events(httpx.Response(200, text=call["text"]))
        said = [e["data"] for e in events if e.get("data")]
        assert len(said) == 1 and said[0]["id"] == 9, call["text"]
        message = said[0]["error"]["message"]
        assert "Session ended while this request was in flight" in message, said
        assert "may have completed" in message, said
