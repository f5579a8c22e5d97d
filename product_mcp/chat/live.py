"""Live stock for the page: one upstream `shop://inventory` subscription per MCP server.

Why here and not in the page: main.py already turns api.py's change feed into
`notifications/resources/updated` for sessions that `resources/subscribe`d. web.py's session
to each server that advertises `resources.subscribe` (and lists `shop://inventory`)
subscribes once; each notification marks the server dirty and its reader re-reads the JSON
resource once (notifications that arrive during a read cause one more read, not one each),
compares it with what it last saw and publishes only the changed lines to every open page
(chat/events.py): `stock {"server", "items": [{"productId", "quantity"}]}`. `live {"server",
"on"}` says whether a server's subscription is up; a page that opens its stream gets every
server's live state first; one that reconnects also gets the stock it missed (events.py).
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from mcp import Client
from mcp.shared.exceptions import MCPDeprecationWarning

from product_mcp.chat.events import Event, PageEvents
from product_mcp.chat.results import describe_error

if TYPE_CHECKING:
    from product_mcp.chat.connection import ServerConnection

log = logging.getLogger("web.live")
INVENTORY_URI = "shop://inventory"
MAX_ITEMS = 10_000  # stock lines kept per server (main.py's resource sends at most 1000)


@dataclass
class _Server:
    client: Client | None = None  # the session subscribed, while it is up
    dirty: anyio.Event = field(default_factory=anyio.Event)
    stock: dict[int, int] = field(default_factory=dict)


class StockWatch:
    """The upstream subscriptions and their fan-out to the page streams."""

    def __init__(self, events: PageEvents) -> None:
        self.events = events
        self.events.opening = self.snapshot
        self.events.catch_up = self.catch_up
        self._servers: dict[str, _Server] = {}
        self.reads = 0  # resource reads made (tests check coalescing)

    def live(self, server: str) -> bool:
        state = self._servers.get(server)
        return state is not None and state.client is not None

    def snapshot(self) -> list[Event]:
        """What a new page stream starts with: each server's live state. (Not the stock: a
        page's own results are newer than what was last heard whenever a server's
        notifications stall, and a page drawn from its history re-reads by asking again.)"""
        return [
            ("live", {"server": name, "on": state.client is not None})
            for name, state in self._servers.items()
        ]

    def catch_up(self, missed: list[Event] | None) -> list[Event]:
        """For a page that reconnected: the stock events it missed merged into one per server,
        or (None: it missed more than web.py kept, or it was another web.py) every live
        server's whole stock as last heard."""
        merged: dict[str, dict[int, int]] = {}
        if missed is None:
            for name, state in self._servers.items():
                if state.client is not None and state.stock:
                    merged[name] = dict(state.stock)
        for kind, data in missed or []:
            if kind == "stock":
                lines = merged.setdefault(data["server"], {})
                lines.update({i["productId"]: i["quantity"] for i in data["items"]})
        return [("stock", {"server": name, "items": _items(s)}) for name, s in merged.items()]

    # --- called by ServerConnection ----------------------------------------------------------

    async def connected(self, conn: ServerConnection, client: Client) -> None:
        """A new session to `conn`: subscribe if it offers live inventory (errors logged)."""
        name = conn.name
        caps = client.server_capabilities.resources
        if caps is None or not caps.subscribe:
            return
        try:
            with anyio.fail_after(conn.connect_timeout):
                listed = await client.list_resources()
                if not any(str(r.uri) == INVENTORY_URI for r in listed.resources):
                    return
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", MCPDeprecationWarning)
                    await client.subscribe_resource(INVENTORY_URI)
        except Exception as e:
            log.warning("%s: could not subscribe to %s: %s", name, INVENTORY_URI, describe_error(e))
            return
        state = self._servers.setdefault(name, _Server())
        state.client = client
        state.dirty.set()  # read now: changes made while it was down
        log.info("%s: live stock on", name)
        self.events.publish("live", {"server": name, "on": True})

    def updated(self, name: str, uri: str) -> None:
        state = self._servers.get(name)
        if uri == INVENTORY_URI and state is not None and state.client is not None:
            state.dirty.set()

    def disconnected(self, name: str) -> None:
        state = self._servers.get(name)
        if state is not None and state.client is not None:
            state.client = None
            self.events.publish("live", {"server": name, "on": False})

    # --- the reader, one task per server (McpManager runs it) ----------------------------------

    async def follow(self, conn: ServerConnection) -> None:
        state = self._servers.setdefault(conn.name, _Server())
        while True:
            await state.dirty.wait()
            state.dirty = anyio.Event()
            client = state.client
            if client is None:
                continue
            try:
                with anyio.fail_after(conn.connect_timeout):
                    result = await client.read_resource(INVENTORY_URI)
                self.reads += 1
                fresh = _parse(result.contents[0].text if result.contents else "")
            except Exception as e:
                log.info("%s: re-reading stock failed: %s", conn.name, describe_error(e))
                continue
            changed = {p: q for p, q in fresh.items() if state.stock.get(p) != q}
            state.stock = fresh
            if changed:
                stock = {"server": conn.name, "items": _items(changed)}
                self.events.publish("stock", stock, keep=True)


def _items(stock: dict[int, int]) -> list[dict[str, int]]:
    return [{"productId": p, "quantity": q} for p, q in stock.items()]


def _parse(text: Any) -> dict[int, int]:
    """`[{"productId", "quantity"}, ...]` as {id: quantity}; anything else is skipped."""
    rows = json.loads(text) if isinstance(text, str) else []
    out: dict[int, int] = {}
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        pid, qty = row.get("productId"), row.get("quantity")
        if type(pid) is int and type(qty) is int and len(out) < MAX_ITEMS:
            out[pid] = qty
    return out
