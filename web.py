"""The web chat: the page in public/ plus a thin JSON/SSE API over the MCP sessions and the LLM.

Run: `uv run python web.py` (127.0.0.1:8002; `--host/--port` or WEB_HOST/WEB_PORT). The seed's
routes keep their shapes (`/api/tools`, `/api/call-tool`, `/api/chat`); new are `/api/servers`,
`/api/config`, `/api/chat/stream` (Server-Sent Events), `/api/chat/approve`,
`/api/chat/elicitation` (answers to a server's question), `/api/chat/stop`, the servers' MCP
prompts (`/api/prompts`, `/api/prompts/get`) and resources (`/api/resources`,
`/api/resources/read`; a chat message may carry `attachments`), `/api/events` (the page's
live stock stream: chat/live.py, chat/events.py) and `/healthz`.
The machinery behind the routes lives in `product_mcp/chat/`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from models import MAX_BODY_BYTES
from product_mcp.chat.arguments import validate_arguments
from product_mcp.chat.bodies import (
    ApprovalAnswer,
    CallToolRequest,
    ChatTurn,
    ElicitationAnswer,
    PromptRequest,
    ResourceRequest,
    StopRequest,
)
from product_mcp.chat.catalog import (
    attachment_messages,
    get_prompt,
    list_prompts,
    list_resources,
    read_text,
)
from product_mcp.chat.elicitation import CallRoute
from product_mcp.chat.history import HistoryMessage
from product_mcp.chat.media import result_content
from product_mcp.chat.names import build_table, reverse
from product_mcp.chat.results import result_text
from product_mcp.chat.services import ChatServices, services
from product_mcp.chat.stream import stream_turn
from product_mcp.core import mcp_compat
from product_mcp.core.config import Settings, load_settings
from product_mcp.core.errors import (
    LLMError,
    ProductMcpError,
    ServerUnavailable,
    UnknownTool,
    error_response,
    http_error_response,
    validation_response,
)
from product_mcp.core.logs import setup_logging
from product_mcp.core.middleware import (
    LOOPBACK,
    LOOPBACK_HOSTS,
    BodyLimit,
    PerClientLimit,
    SameOriginWrites,
)
from product_mcp.core.protocol import HeaderTimeoutProtocol
from product_mcp.core.serve import asyncio_named, port_arg, port_given, serve
from product_mcp.core.slow_readers import SlowReaderCutoff
from product_mcp.core.streams import until_disconnected

PUBLIC = Path(__file__).resolve().parent / "public"
# The routes that reach the LLM or an MCP server: WEB_CALLS_PER_CLIENT at once per client.
CALLS_LIMITED_PER_CLIENT = frozenset(
    {"/api/chat", "/api/chat/stream", "/api/call-tool", "/api/prompts/get", "/api/resources/read"}
)
SUMMARY = [
    "MCP_CONFIG_PATH",
    "OPENAI_API_KEY",
    "OPENAI_API_BASE",
    "LLM_MODEL",
    "MAX_TOOL_ROUNDS",
    "TOOL_APPROVAL",
    "TOOL_CALL_TIMEOUT",
    "MCP_PING_INTERVAL",
    "LLM_TIMEOUT",
    "LLM_MAX_RETRIES",
    "CORS_ORIGINS",
    "MAX_CONNECTIONS",
]

Chat = Annotated[ChatServices, Depends(services)]
router = APIRouter()


@router.get("/healthz")
async def healthz(chat: Chat) -> dict[str, Any]:
    servers = chat.manager.servers()
    connected = sum(s["status"] == "connected" for s in servers)
    return {
        "status": "ok",
        "servers": {"total": len(servers), "connected": connected},
        "llm": chat.llm.configured,
    }


@router.get("/api/config")
async def api_config(chat: Chat) -> dict[str, Any]:
    return chat.public_config()


@router.get("/api/servers")
async def api_servers(chat: Chat) -> dict[str, Any]:
    return {"servers": chat.manager.servers(), "errors": [str(e) for e in chat.config.errors]}


@router.get("/api/tools")
async def api_tools(chat: Chat) -> dict[str, Any]:
    entries = chat.manager.tools()
    names = reverse(build_table(entries))
    return {
        "tools": [
            {
                "server": e.server,
                "name": e.name,
                "title": e.tool.title,
                "description": e.tool.description or "No description",
                "input_schema": e.input_schema,
                "output_schema": e.tool.output_schema,  # the page picks a result view by it
                "read_only": e.read_only,
                "function": names[(e.server, e.name)],
            }
            for e in entries
        ]
    }


@router.get("/api/events")
async def api_events(request: Request, chat: Chat) -> Response:
    """Server-Sent Events for open pages: `live` (a server's stock subscription up or down)
    and `stock` (changed stock lines, with an id), each server's state first. Heartbeats when
    idle. A page that names the last id it saw (`Last-Event-ID` or `?after=`) first gets the
    stock it missed (chat/events.py)."""
    return chat.events.open(request)


@router.get("/api/prompts")
async def api_prompts(chat: Chat) -> dict[str, Any]:
    """Every connected server's MCP prompts, for the page's prompt picker."""
    return await list_prompts(chat.manager)


@router.post("/api/prompts/get")
async def api_prompts_get(req: PromptRequest, chat: Chat) -> dict[str, Any]:
    """One prompt filled in with its arguments: its messages as text for the message box."""
    return await get_prompt(chat.manager, req.server, req.name, req.arguments)


@router.get("/api/resources")
async def api_resources(chat: Chat) -> dict[str, Any]:
    """Every connected server's MCP resources (and resource templates), to attach to a message."""
    return await list_resources(chat.manager)


@router.post("/api/resources/read")
async def api_resources_read(req: ResourceRequest, chat: Chat) -> dict[str, Any]:
    return await read_text(chat.manager, req.server, req.uri)


@router.post("/api/call-tool")
async def api_call_tool(req: CallToolRequest, chat: Chat) -> Response:
    """Run one tool from the page's form; argument errors are 422 before the server sees them."""
    manager = chat.manager
    conn = manager.connections.get(req.server)
    if conn is None:
        raise UnknownTool(f"Unknown MCP server '{req.server}'")
    entry = manager.find(req.server, req.name)
    if entry is None and conn.status != "connected" and await conn.ensure_connected():
        entry = manager.find(req.server, req.name)
    if entry is None:
        if conn.status != "connected":
            why = f": {conn.last_error}" if conn.last_error else ""
            raise ServerUnavailable(
                f"MCP server '{req.server}' is not connected ({conn.status}){why}"
            )
        if req.name in conn.task_only:
            raise ProductMcpError(
                f"'{req.name}' on MCP server '{req.server}' runs only as an MCP task, "
                "which this chat does not support",
                422,
            )
        raise UnknownTool(f"MCP server '{req.server}' has no tool '{req.name}'")
    problem = validate_arguments(entry, req.args)
    if problem:
        raise ProductMcpError(problem, 422)
    if req.approval == "ask" and not entry.read_only and not req.confirmed:
        return JSONResponse(
            {
                "detail": f"'{req.name}' may change data; confirm it first",
                "needsConfirmation": True,
                "server": req.server,
                "name": req.name,
                "arguments": req.args,
            },
            status_code=409,
        )
    # No page listens here: a server's pure yes/no question is accepted for a call the user
    # let run (confirmed, or no approval asked); any other question is cancelled.
    route = CallRoute(tool=req.name, let_run=True)
    start = time.monotonic()
    result = await manager.call_tool(req.server, req.name, req.args, route=route)
    body: dict[str, Any] = {
        "result": result_text(result),
        "isError": result.is_error,
        "durationMs": round((time.monotonic() - start) * 1000),
    }
    content = result_content(result)  # pictures, sounds, resources: only when there are any
    if content is not None:
        body["content"] = content
    return JSONResponse(body)


async def _attached(req: ChatTurn, chat: ChatServices) -> list[HistoryMessage]:
    """The attached resources' text, read now (a refusal is a 4xx before any stream): the model
    gets it right before the message, and the turn's answer hands it back as `attached` for the
    page to keep in its history, so later turns still see it."""
    if not req.attachments:
        return []
    return await attachment_messages(chat.manager, req.attachments)


@router.post("/api/chat")
async def api_chat(req: ChatTurn, chat: Chat, request: Request) -> Response:
    """Script-friendly: one JSON answer, tools run without asking (the seed's behaviour). A
    client that goes away ends the turn (it ran on, holding its place under the per-client
    limit and the model's stream; found from outside)."""
    if req.approval == "ask":  # it bought at once: nobody can be asked in one JSON answer
        raise ProductMcpError(
            "approval 'ask' needs a page to ask in: use POST /api/chat/stream "
            "(POST /api/chat runs tools without asking)",
            422,
        )
    answer: list[Response] = []

    async def run() -> None:
        attached = await _attached(req, chat)
        result = await chat.engine.run(req.message, req.history, attached=attached)
        answer.append(JSONResponse(result.as_dict()))

    await until_disconnected(request.receive, run)
    return answer[0] if answer else Response(status_code=499)


@router.post("/api/chat/stream")
async def api_chat_stream(req: ChatTurn, chat: Chat) -> Response:
    if chat.engine.client is None:
        raise LLMError(chat.public_config()["llmMessage"], 503)
    attached = await _attached(req, chat)
    ask = (req.approval or chat.settings.TOOL_APPROVAL) == "ask"
    approvals = chat.approvals if ask else None
    stall = chat.settings.WEB_SEND_TIMEOUT
    return stream_turn(chat.engine, req, approvals, chat.turns, attached, stall)


@router.post("/api/chat/stop")
async def api_chat_stop(req: StopRequest, chat: Chat) -> Response:
    """End a streaming reply: the model's stream and in-flight tool calls are cancelled; the
    stream still ends with `done` (stopped: true) carrying what was said."""
    if not chat.turns.stop(req.turnId):
        raise ProductMcpError("No reply in progress with that id (already finished)", 404)
    return JSONResponse({"ok": True})


@router.post("/api/chat/elicitation")
async def api_chat_elicitation(answer: ElicitationAnswer, chat: Chat) -> Response:
    chat.elicitations.answer(answer.elicitationId, answer.action, answer.content)
    return JSONResponse({"ok": True, "action": answer.action})


@router.post("/api/chat/approve")
async def api_chat_approve(answer: ApprovalAnswer, chat: Chat) -> Response:
    if not chat.approvals.resolve(answer.approvalId, answer.approved):
        raise ProductMcpError("No pending approval with that id (already answered or expired)", 404)
    return JSONResponse({"ok": True, "approved": answer.approved})


def create_app(settings: Settings | None = None, chat: ChatServices | None = None) -> FastAPI:
    """The chat app; `chat` lets tests bring their own MCP manager."""
    settings = settings or load_settings()
    chat = chat or ChatServices.from_settings(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        HeaderTimeoutProtocol.on_shutdown.append(chat.events.close_soon)
        try:
            with asyncio_named():
                async with chat.manager:
                    yield
        finally:
            HeaderTimeoutProtocol.on_shutdown.remove(chat.events.close_soon)
            chat.events.close_soon()
            await chat.engine.aclose()

    app = FastAPI(title="product-mcp web chat", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.chat = chat
    app.include_router(router)
    app.add_exception_handler(ProductMcpError, error_response)
    app.add_exception_handler(RequestValidationError, validation_response)
    app.add_exception_handler(HTTPException, http_error_response)
    # Innermost, so the 413 still gets the CORS and security headers. MAX_BODY_BYTES fits the
    # largest chat request the history limits allow (models.py).
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(
        PerClientLimit, limit=settings.WEB_CALLS_PER_CLIENT, paths=CALLS_LIMITED_PER_CLIENT
    )
    # Around it: a page that stopped reading held its place (and its reply) for as long as
    # it kept the socket open (found in review); dropped, it gives both back.
    app.add_middleware(SlowReaderCutoff, timeout=settings.WEB_SEND_TIMEOUT)
    if settings.WEB_HOST in LOOPBACK:
        # Bound to loopback: refuse other Host names so DNS rebinding cannot reach the API.
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(LOOPBACK_HOSTS))
    origins = Settings.split(settings.CORS_ORIGINS)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["content-type"],
        )
    app.add_middleware(SameOriginWrites, cors_origins=origins)
    app.mount("/", StaticFiles(directory=PUBLIC, html=True), name="public")
    return app


def main() -> None:
    mcp_compat.check()
    settings = load_settings()
    parser = argparse.ArgumentParser(description="product-mcp web chat")
    parser.add_argument("--host", default=settings.WEB_HOST)
    parser.add_argument("--port", type=port_arg, default=None, help="default: WEB_PORT")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--access-log", action="store_true", help="log one line per request")
    ns = parser.parse_args()
    ns.port, moved_by = port_given(ns.port, settings.WEB_PORT, "--port", "WEB_PORT")
    settings = settings.model_copy(update={"WEB_HOST": ns.host, "WEB_PORT": ns.port})
    setup_logging(ns.log_level.upper())  # plain and bounded (core/logs.py says why)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    serve(
        create_app(settings),
        ns.host,
        ns.port,
        moved_by,
        banner="product-mcp web chat\n" + settings.summary(["WEB_HOST", "WEB_PORT", *SUMMARY]),
        log_level=ns.log_level,
        access_log=ns.access_log,
        **settings.server_limits(),
    )


if __name__ == "__main__":
    main()
