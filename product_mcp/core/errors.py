"""One error tree for the whole project: an HTTP status plus a sentence a person can act on.

Why one base: the API's exception handler, the MCP tools' `isError` results and web.py's JSON
errors all map from `ProductMcpError` the same way (`{"detail": message}` with `status`), so a
new error anywhere needs no new plumbing. The MCP-facing errors also subclass the SDK's
`ToolError`: that is the one exception whose message the SDK passes to the client.
"""

from __future__ import annotations

from mcp.server.mcpserver.exceptions import ToolError


class ProductMcpError(Exception):
    """Base: `status` is the HTTP status to answer with, `message` the user-facing sentence."""

    status: int = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    @property
    def detail(self) -> str:
        """The API's historical name for the message (FastAPI's `{"detail": ...}`)."""
        return self.message

    @property
    def status_code(self) -> int:
        return self.status


# --- the shop (api.py) -------------------------------------------------------------------


class ShopError(ProductMcpError):
    """A request the shop refuses (400 by default)."""

    status = 400


class NotFound(ShopError):
    status = 404


class Conflict(ShopError):
    status = 409


# --- the MCP server (main.py) -------------------------------------------------------------


class ApiError(ProductMcpError, ToolError):
    """The product API failed or refused; the message quotes it for the model to read.

    `status` is the API's HTTP status, or 502 when it could not be reached at all.
    """

    status = 502


# --- the web chat (web.py) ----------------------------------------------------------------


class ToolCallError(ProductMcpError):
    """A call could not produce a tool result; the message is meant for people and models."""

    status = 502


class ServerUnavailable(ToolCallError):
    status = 503


class ToolTimeout(ToolCallError):
    status = 504


class UnknownTool(ToolCallError):
    status = 404


class LLMError(ProductMcpError):
    """The model could not be reached or refused; the message is shown to the user."""

    status = 502
