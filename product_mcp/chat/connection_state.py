"""The state one MCP server's connection keeps, shared by the parts that act on it.

connection.py's ServerConnection is assembled from mixins, one per concern (server messages,
opening a session, the supervise/reconnect loop, the call path); each is short enough to read
on its own, and this base holds what they share: the status the page shows, the live client,
the calls in flight and the signal stream that wakes the supervisor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import anyio
from mcp import Client
from mcp.types import Implementation, Tool

from product_mcp.chat.elicitation import CallRoute, Elicitations
from product_mcp.chat.keepalive import KeepAliveTransport
from product_mcp.chat.mcp_config import ServerConfig

if TYPE_CHECKING:
    from product_mcp.chat.live import StockWatch

Status = Literal["connecting", "connected", "failed"]


class Signals:
    """What wakes the supervisor: at most one pending signal of each kind, oldest first.

    It was a memory stream without a bound, one item per signal: a server's flood of 300
    `notifications/tools/list_changed` queued 300 whole `tools/list` reloads, run one after
    another for minutes (found from outside). A signal already pending is not queued again, so
    a reload running while more notifications come is followed by one more reload, at most.
    A generation is kept per kind: the newest (a "dead" for an older session is ignored).
    """

    def __init__(self) -> None:
        self._pending: dict[str, int] = {}  # kind -> generation, in the order first sent
        self._ready = anyio.Event()

    def send_nowait(self, kind: str, generation: int) -> bool:
        """Queue `kind` unless it is pending already (then only its generation may grow);
        whether it was queued."""
        if kind in self._pending:
            self._pending[kind] = max(self._pending[kind], generation)
            return False
        self._pending[kind] = generation
        self._ready.set()
        return True

    async def receive(self) -> tuple[str, int]:
        while not self._pending:
            self._ready = anyio.Event()
            await self._ready.wait()
        kind = next(iter(self._pending))
        return kind, self._pending.pop(kind)


class ConnectionState:
    """What one server's connection knows; no I/O here."""

    def __init__(
        self,
        config: ServerConfig,
        *,
        connect_timeout: float = 10.0,
        ping_interval: float = 15.0,
        reconnect_max: float = 30.0,
        ready_wait: float = 5.0,
        elicitations: Elicitations | None = None,
    ) -> None:
        self.config = config
        self.elicitations = elicitations or Elicitations()
        self._routes: list[CallRoute] = []  # calls in flight, oldest first
        self._keyed: dict[str, CallRoute] = {}  # the same, by the id sent in their `_meta`
        self.connect_timeout = connect_timeout
        # A whole handshake (connect, initialize, tools/list: a few round trips, each of which
        # may take up to connect_timeout) before it is abandoned and tried again.
        self.handshake_timeout = 2 * connect_timeout
        self.ping_interval = ping_interval
        self.reconnect_max = reconnect_max
        self.ready_wait = ready_wait
        self.status: Status = "connecting"
        self.last_error: str | None = None
        self.tools: list[Tool] = []
        self.task_only: list[str] = []  # tools that run only as MCP tasks: not offered
        self.problems: list[str] = []  # what is wrong with its tool list, in words
        self.server_info: Implementation | None = None
        self.connected_at: float | None = None
        self.attempts = 0
        self._client: Client | None = None
        self.watch: StockWatch | None = None  # live stock for the page (chat/live.py)
        self._http_error: str | None = None
        self.replies: KeepAliveTransport | None = None  # the HTTP session's (keepalive.py)
        # A stdio server's stdout lines that are not JSON-RPC: the first, and how many
        self._noise = ""
        self._noise_lines = 0
        self._generation = 0
        self._calls_on: dict[int, int] = {}  # tool calls in flight, by session generation
        self._call_ended = anyio.Event()
        self._changed = anyio.Event()
        self._settled = anyio.Event()
        self._signals = Signals()

    @property
    def name(self) -> str:
        return self.config.name

    def snapshot(self) -> dict[str, Any]:
        cfg = self.config
        info: dict[str, Any] = {
            "name": cfg.name,
            "transport": cfg.transport,
            "url": cfg.url,
            "command": cfg.target() if cfg.transport == "stdio" else None,
            "status": self.status,
            "error": self.last_error,
            "tools": len(self.tools) if self.status == "connected" else 0,
            "attempts": self.attempts,
            "connectedAt": self.connected_at,
            "available": self.status == "connected",
            "knownTools": [t.name for t in self.tools],
            "taskOnlyTools": self.task_only,
            # tools left out: past the bounds in models.py, or a second of one name
            "problems": self.problems,
        }
        if self.server_info is not None:
            info["serverInfo"] = {
                "name": self.server_info.name,
                "version": self.server_info.version,
            }
        return info

    def _set_status(self, status: Status) -> None:
        self.status = status
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _signal(self, kind: str, generation: int | None = None) -> bool:
        """Wake the supervisor (coalesced: False if such a signal was pending already)."""
        return self._signals.send_nowait(
            kind, self._generation if generation is None else generation
        )

    async def wait_settled(self) -> None:
        await self._settled.wait()
