"""What servers offer besides tools: their prompts (the page's prompt picker) and resources
(attached to a chat message), fetched through the live sessions when the page asks.

Why on demand and not kept like the tool list: the page asks for them when it loads and when
the tools change, and they are small; a server that is slow or fails to list them must not
hide the others, so each server gets LIST_WAIT seconds, all at once, and a failure is named
in `errors`. Everything passed on is bounded (count, text length); an attachment is text only.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types.jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND
from pydantic import BaseModel, Field

from models import ATTACHMENT_MAX_CHARS, ATTACHMENT_MAX_URI, MESSAGE_MAX_CHARS
from product_mcp.chat.connection import ServerConnection
from product_mcp.chat.history import HistoryMessage
from product_mcp.chat.manager import McpManager
from product_mcp.chat.results import describe_error
from product_mcp.core.errors import ProductMcpError, ToolCallError, ToolTimeout, UnknownTool

LIST_WAIT = 5.0  # seconds a server may take to list its prompts or resources
GET_WAIT = 10.0  # seconds for one prompts/get or resources/read
MAX_PAGES = 10  # pages of a listing followed
MAX_ITEMS = 500  # prompts / resources / templates kept per server
MAX_TEXT = 1000  # characters of a name, title or description passed on
MAX_ARGUMENTS = 50  # arguments of one prompt
MAX_MESSAGES = 50  # messages of one prompt passed on
RESOURCE_NOT_FOUND = -32002  # the spec's code; many servers send -32602 and say it in words
NOT_FOUND_WORDS = ("not found", "unknown resource", "does not exist", "no such")


class Attachment(BaseModel):
    """A resource attached to a chat message."""

    server: str = Field(min_length=1, max_length=200)
    uri: str = Field(min_length=1, max_length=ATTACHMENT_MAX_URI)


def _text(value: Any) -> str | None:
    return value[:MAX_TEXT] if isinstance(value, str) else None


async def _pages(fetch: Callable[..., Awaitable[Any]], attr: str) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await fetch(cursor=cursor)
        items.extend(getattr(page, attr))
        cursor = page.next_cursor
        if not cursor or len(items) >= MAX_ITEMS:
            break
    return items[:MAX_ITEMS]


Lister = Callable[[str, Client], Awaitable[dict[str, list[dict[str, Any]]]]]


async def _every_server(manager: McpManager, capability: str, lister: Lister) -> dict[str, Any]:
    """`lister` on each connected server that declares `capability`, concurrently; the lists
    joined in config order, with the servers that failed in `errors`."""
    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    errors: list[dict[str, str]] = []

    async def one(conn: ServerConnection) -> None:
        try:
            with anyio.fail_after(LIST_WAIT):
                client = await conn.session()
                if getattr(client.server_capabilities, capability, None) is None:
                    return
                found[conn.name] = await lister(conn.name, client)
        except TimeoutError:
            errors.append({"server": conn.name, "error": f"no answer within {LIST_WAIT:g}s"})
        except Exception as e:
            errors.append({"server": conn.name, "error": describe_error(e)[:MAX_TEXT]})

    async with anyio.create_task_group() as tg:
        for conn in manager.connections.values():
            if conn.status == "connected":
                tg.start_soon(one, conn)
    out: dict[str, Any] = {}
    for name in manager.connections:
        for key, items in found.get(name, {}).items():
            out.setdefault(key, []).extend(items)
    out["errors"] = errors
    return out


async def list_prompts(manager: McpManager) -> dict[str, Any]:
    """`{"prompts": [{server, name, title, description, arguments}], "errors": [...]}`; each
    argument `{name, title, description, required}` (the page labels a field by its title)."""

    async def lister(server: str, client: Client) -> dict[str, list[dict[str, Any]]]:
        prompts = await _pages(client.list_prompts, "prompts")
        return {
            "prompts": [
                {
                    "server": server,
                    "name": p.name,
                    "title": _text(p.title),
                    "description": _text(p.description),
                    "arguments": [
                        {
                            "name": a.name,
                            "title": _text(getattr(a, "title", None)),
                            "description": _text(a.description),
                            "required": bool(a.required),
                        }
                        for a in (p.arguments or [])[:MAX_ARGUMENTS]
                    ],
                }
                for p in prompts
            ]
        }

    return {"prompts": [], **await _every_server(manager, "prompts", lister)}


async def list_resources(manager: McpManager) -> dict[str, Any]:
    """`{"resources": [{server, uri, name, title, description, mimeType}], "templates":
    [{server, uriTemplate, ...}], "errors": [...]}`."""

    def about(server: str, r: Any) -> dict[str, Any]:
        return {
            "server": server,
            "name": _text(r.name),
            "title": _text(r.title),
            "description": _text(r.description),
            "mimeType": _text(r.mime_type),
        }

    async def lister(server: str, client: Client) -> dict[str, list[dict[str, Any]]]:
        resources = await _pages(client.list_resources, "resources")
        templates = await _pages(client.list_resource_templates, "resource_templates")
        return {
            "resources": [{**about(server, r), "uri": str(r.uri)} for r in resources],
            "templates": [{**about(server, t), "uriTemplate": t.uri_template} for t in templates],
        }

    return {"resources": [], "templates": [], **await _every_server(manager, "resources", lister)}


async def _client(manager: McpManager, server: str) -> Client:
    conn = manager.connections.get(server)
    if conn is None:
        raise UnknownTool(f"Unknown MCP server '{server}'")
    return await conn.session()  # ServerUnavailable (503) when it is down


def _refused(e: MCPError, server: str, what: str) -> ProductMcpError:
    """A server's error answer as the status a page can act on."""
    if e.code == METHOD_NOT_FOUND:
        return ProductMcpError(f"MCP server '{server}' does not offer {what}s", 404)
    said = e.message.lower()
    gone = e.code == RESOURCE_NOT_FOUND or any(w in said for w in NOT_FOUND_WORDS)
    status = 404 if gone else 422 if e.code == INVALID_PARAMS else 502
    return ProductMcpError(f"MCP server '{server}' refused {what}: {e.message[:MAX_TEXT]}", status)


def _check_prompt(server: str, name: str, arguments: dict[str, str], prompts: list[Any]) -> None:
    prompt = next((p for p in prompts if p.name == name), None)
    if prompt is None:
        names = ", ".join(p.name for p in prompts[:50]) or "none"
        raise ProductMcpError(
            f"MCP server '{server}' has no prompt '{name[:200]}' (available: {names})", 404
        )
    declared = {a.name: a for a in prompt.arguments or []}
    unknown = [k for k in arguments if k not in declared]
    if unknown:
        known = ", ".join(declared) or "none"
        raise ProductMcpError(
            f"prompt '{name}' has no argument '{unknown[0][:200]}' (arguments: {known})", 422
        )
    missing = [k for k, a in declared.items() if a.required and not arguments.get(k)]
    if missing:
        raise ProductMcpError(f"prompt '{name}' needs {', '.join(missing)}", 422)


def _failed(e: Exception, server: str, what: str) -> ProductMcpError:
    return ToolCallError(f"Getting {what} from MCP server '{server}' failed: {describe_error(e)}")


async def get_prompt(
    manager: McpManager, server: str, name: str, arguments: dict[str, str]
) -> dict[str, Any]:
    """The prompt's messages as text (text parts and text resources; pictures are left out).
    The arguments are checked against the prompt's listing first: servers differ in how (and
    whether) they say that one is missing."""
    client = await _client(manager, server)
    try:
        with anyio.fail_after(GET_WAIT):
            _check_prompt(server, name, arguments, await _pages(client.list_prompts, "prompts"))
            result = await client.get_prompt(name, arguments)
    except TimeoutError as e:
        raise ToolTimeout(f"MCP server '{server}' did not answer within {GET_WAIT:g}s") from e
    except MCPError as e:
        raise _refused(e, server, f"prompt '{name}'") from e
    except ProductMcpError:
        raise
    except Exception as e:
        raise _failed(e, server, f"prompt '{name}'") from e
    messages = []
    for m in result.messages[:MAX_MESSAGES]:
        block = m.content
        text = getattr(block, "text", None)
        if text is None and getattr(block, "type", "") == "resource":
            text = getattr(block.resource, "text", None)
        if isinstance(text, str):
            messages.append({"role": m.role, "text": text[:MESSAGE_MAX_CHARS]})
    return {"description": _text(result.description), "messages": messages}


async def read_text(manager: McpManager, server: str, uri: str) -> dict[str, Any]:
    """A text resource: `{"text", "mimeType"}`; binary ones and oversized text are refused
    with a sentence (422)."""
    client = await _client(manager, server)
    try:
        with anyio.fail_after(GET_WAIT):
            result = await client.read_resource(uri)
    except TimeoutError as e:
        raise ToolTimeout(f"MCP server '{server}' did not answer within {GET_WAIT:g}s") from e
    except MCPError as e:
        raise _refused(e, server, f"resource '{uri[:200]}'") from e
    except Exception as e:  # the session broke, a reply that is not a valid result...
        raise _failed(e, server, f"resource '{uri[:200]}'") from e
    if not result.contents:
        raise ProductMcpError(f"'{uri[:200]}' on MCP server '{server}' is empty", 422)
    texts, mime = [], None
    for part in result.contents:
        mime = mime or part.mime_type
        text = getattr(part, "text", None)
        if not isinstance(text, str):
            if len(getattr(part, "blob", None) or "") > BLOB_MAX_CHARS:  # not decoded: too long
                raise ProductMcpError(
                    f"'{uri[:200]}' on MCP server '{server}' is more text than an attachment "
                    f"can be ({ATTACHMENT_MAX_CHARS:,} characters at most)",
                    422,
                )
            text = _blob_text(part)
        if text is None:
            kind = part.mime_type or "binary data"
            what = "UTF-8 text" if _textual(part.mime_type) else "text"
            raise ProductMcpError(
                f"'{uri[:200]}' on MCP server '{server}' is not {what} ({kind}); "
                "only text resources can be attached",
                422,
            )
        texts.append(text)
    text = "\n".join(texts)
    if len(text) > ATTACHMENT_MAX_CHARS:
        raise ProductMcpError(
            f"'{uri[:200]}' on MCP server '{server}' is {len(text):,} characters of text; "
            f"an attachment can be at most {ATTACHMENT_MAX_CHARS:,}",
            422,
        )
    return {"text": text, "mimeType": mime}


# base64 of the most UTF-8 an attachment's characters can be (4 bytes each): a longer blob's
# text is over the limit, and is refused before it is decoded (review).
BLOB_MAX_CHARS = 4 * (4 * ATTACHMENT_MAX_CHARS + 2) // 3


def _textual(mime: str | None) -> bool:
    kind = (mime or "").split(";")[0].strip().lower()
    return kind.startswith("text/") or kind.endswith(("/json", "+json", "/xml", "+xml"))


def _blob_text(part: Any) -> str | None:
    """A text resource sent as a blob (server-everything sends text/plain so), read as UTF-8
    text; None for any other blob, or bytes that are not UTF-8. (Its size is bounded by the
    transport's largest message; past the attachment limit it is refused by its length.)"""
    blob = getattr(part, "blob", None)
    if not isinstance(blob, str) or not _textual(part.mime_type):
        return None
    try:
        return base64.b64decode(blob, validate=True).decode("utf-8-sig")
    except (ValueError, UnicodeDecodeError):
        return None


async def attachment_messages(
    manager: McpManager, attached: list[Attachment]
) -> list[HistoryMessage]:
    """The attached resources' text as user messages placed right before the user's message
    (read before the turn starts, so a refusal is a plain 4xx, not a broken stream)."""
    messages: list[HistoryMessage] = []
    seen: set[tuple[str, str]] = set()
    for a in attached:
        if (a.server, a.uri) in seen:
            continue
        seen.add((a.server, a.uri))
        doc = await read_text(manager, a.server, a.uri)
        mime = f' mimeType="{doc["mimeType"]}"' if doc["mimeType"] else ""
        text = "\n".join(
            [
                "The user attached this MCP resource to their next message:",
                f'<attachment server="{a.server}" uri="{a.uri}"{mime}>',
                doc["text"],
                "</attachment>",
            ]
        )
        messages.append(HistoryMessage(role="user", content=text))
    return messages
