"""Opening one MCP client session over stdio, SSE or streamable HTTP.

Kept apart from the supervise loop because the transport details (our own HTTP client for
error statuses and keep-alive, the SSE event size, a stdio server's stderr captured to explain
its crash) are many and change for reasons of their own.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import IO, Any

import anyio
import httpx2
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation

from product_mcp.chat.keepalive import KeepAliveTransport
from product_mcp.chat.mcp_config import ServerConfig
from product_mcp.chat.server_messages import ServerMessages
from product_mcp.core.aiohttp_transports import Httpx2Transport, PeerBounds

CLIENT_INFO = Implementation(name="product-mcp-web", version="0.1.0")
MAX_EVENT_BYTES = 32 * 1024 * 1024  # largest tool result (one SSE event) taken from a server
# A pooled connection is dropped before uvicorn's default 5 s keep-alive timer closes it on the
# server's side: reusing one the server is closing loses the request (a tools/call cannot
# safely be sent twice).
KEEPALIVE_EXPIRY = 4.0


def _stderr_file() -> IO[str]:
    return tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")


def _tail(f: IO[str], lines: int = 3, chars: int = 400) -> str:
    try:
        f.flush()
        f.seek(0)
        text = f.read()
    except (OSError, ValueError):
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])[-chars:]


class SessionOpener(ServerMessages):
    """Opens a session with this connection's transport, settings and callbacks."""

    @asynccontextmanager
    async def _open_client(self, errlog: IO[str] | None) -> AsyncIterator[Client]:
        cfg = self.config
        async with AsyncExitStack() as stack:
            transport: Any
            if cfg.transport == "http":
                assert cfg.url is not None
                # Our own client (not create_mcp_http_client) for the response hook: the SDK
                # reports a refused request as "Server returned an error response" without
                # the status, which is what a user needs to fix (401 → missing token); and
                # for the transport that keeps a tool call's connection (chat/keepalive.py),
                # over aiohttp, a server's replies held to bounds (core/aiohttp_transports.py).
                self.replies = KeepAliveTransport(
                    Httpx2Transport(
                        limits=httpx2.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
                        bounds=PeerBounds(body=MAX_EVENT_BYTES, line=MAX_EVENT_BYTES),
                        refuse_in_body=True,
                    ),
                    on_stream_end=lambda: self._signal("probe"),
                )
                http = await stack.enter_async_context(
                    httpx2.AsyncClient(
                        headers=cfg.headers or None,
                        timeout=httpx2.Timeout(self.connect_timeout, read=300.0),
                        transport=self.replies,
                        event_hooks={"response": [self._note_response]},
                    )
                )
                # The SDK drops the whole session on an SSE event over 1 MiB, and a tool
                # result of 1 MB arrives twice (text and structuredContent); chat.py caps what
                # reaches the model. (The SDK's SSE client has no such setting.)
                transport = streamable_http_client(
                    cfg.url, http_client=http, max_sse_event_size=MAX_EVENT_BYTES
                )
            elif cfg.transport == "sse":
                assert cfg.url is not None
                transport = sse_client(
                    cfg.url, headers=cfg.headers or None, timeout=self.connect_timeout
                )
            else:
                assert cfg.command is not None
                missing = await _missing_file(cfg)
                if missing:  # the spawn's own error names no file
                    raise FileNotFoundError(missing)
                params = StdioServerParameters(
                    command=cfg.command, args=cfg.args, env=cfg.env or None, cwd=cfg.cwd
                )
                transport = stdio_client(params, errlog=errlog or sys.stderr)
            # "legacy" = the initialize handshake: a real session (so a restarted server is
            # noticed as "Session not found"), pings, and list_changed notifications on every
            # transport, including servers that predate the 2026 protocol.
            client = Client(
                transport,
                mode="legacy",
                cache=None,
                read_timeout_seconds=self.connect_timeout,
                **self.client_callbacks(),
            )
            yield await stack.enter_async_context(client)

    def client_callbacks(self) -> dict[str, Any]:
        """What every session of this connection is opened with (declares elicitation)."""
        return {
            "message_handler": self._on_message,
            "elicitation_callback": self._on_elicit,
            "client_info": CLIENT_INFO,
        }

    async def _note_response(self, response: httpx2.Response) -> None:
        if response.status_code >= 400:
            self._http_error = f"HTTP {response.status_code} {response.reason_phrase}".strip()


async def _missing_file(cfg: ServerConfig) -> str | None:
    """What a stdio entry names that is not there, in words: a missing `cwd` was reported
    as "command not found", a missing command as a bare "[Errno 2]" (found from outside)."""
    assert cfg.command is not None
    if cfg.cwd is not None and not await anyio.Path(cfg.cwd).is_dir():
        return f"cwd is not a folder on this machine: {cfg.cwd}"
    command = cfg.command
    if os.sep in command:
        found = await anyio.Path(cfg.cwd or ".", command).is_file()
    else:
        path = (cfg.env or {}).get("PATH", os.environ.get("PATH"))
        found = await anyio.to_thread.run_sync(lambda: shutil.which(command, path=path))
    return None if found else f"command not found: {command}"
