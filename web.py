"""The web chat: the page in public/ plus a thin JSON/SSE API over McpManager and ChatEngine.

Run: `uv run python web.py` (127.0.0.1:8002; `--host/--port` or WEB_HOST/WEB_PORT). The seed's
routes keep their shapes (`/api/tools`, `/api/call-tool`, `/api/chat`); new are `/api/servers`,
`/api/config`, `/api/chat/stream` (Server-Sent Events), `/api/chat/approve` and `/healthz`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import settings as registry
from body_limit import BodyLimit
from chat import (
    HISTORY_LIMITS,
    MAX_BODY_BYTES,
    NO_LLM_MESSAGE,
    Approvals,
    ChatEngine,
    ChatRequest,
    LLMError,
    validate_arguments,
)
from mcp_config import load_config
from mcp_manager import McpManager, ToolCallError, describe_error, result_text
from tool_names import build_table, reverse
from web_settings import LOOPBACK, WEB_SETTINGS, WebSettings

log = logging.getLogger("web")
PUBLIC = Path(__file__).resolve().parent / "public"
SECURITY_HEADERS = {
    # Defence in depth: the page never needs inline script, eval or third-party assets.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        "form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class CallToolRequest(BaseModel):
    server: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    args: dict[str, Any] = Field(default_factory=dict)


class ApprovalAnswer(BaseModel):
    approvalId: str = Field(min_length=1, max_length=100)
    approved: bool


class SameOriginWrites:
    """CORS is off by default, but a cross-site form POST is still "simple": refuse it; and
    add the security headers to every response. Plain ASGI: a `@app.middleware("http")`
    function runs each request through an extra task and memory streams (web.py's CPU per
    /api/call-tool went from 3.9 to 3.0 ms without it, bench/run.py)."""

    def __init__(self, app: ASGIApp, cors_origins: list[str]) -> None:
        self.app = app
        self.cors_origins = cors_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and origin:
            own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            if origin != own and origin not in self.cors_origins:
                refused = JSONResponse({"detail": f"origin {origin} not allowed"}, status_code=403)
                return await refused(scope, receive, _secured(send))
        await self.app(scope, receive, _secured(send))


def _secured(send: Send) -> Send:
    async def secured(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for k, v in SECURITY_HEADERS.items():
                headers.setdefault(k, v)
        await send(message)

    return secured


def _sse(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(settings: WebSettings | None = None) -> FastAPI:
    settings = settings or WebSettings.from_env()
    config = load_config(settings.mcp_config_path)
    for err in config.errors:
        log.warning("%s", err)
    manager = McpManager(
        config, call_timeout=settings.tool_call_timeout, ping_interval=settings.mcp_ping_interval
    )
    engine = ChatEngine(manager, settings.llm)
    approvals = Approvals()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with manager:
            yield

    app = FastAPI(title="product-mcp web chat", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.manager = manager
    app.state.engine = engine

    # ------------------------------------------------------------ security middleware

    # Innermost, so the 413 still gets the CORS and security headers. MAX_BODY_BYTES fits the
    # largest chat request the history limits allow (chat.py).
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    if settings.host in LOOPBACK:
        # Bound to loopback: refuse other Host names so DNS rebinding cannot reach the API.
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["content-type"],
        )

    app.add_middleware(SameOriginWrites, cors_origins=settings.cors_origins)

    # ------------------------------------------------------------ routes

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        servers = manager.servers()
        return {
            "status": "ok",
            "servers": {
                "total": len(servers),
                "connected": sum(s["status"] == "connected" for s in servers),
            },
            "llm": settings.llm.configured,
        }

    @app.get("/api/config")
    async def api_config() -> dict[str, Any]:
        return {
            "llmConfigured": settings.llm.configured,
            "llmMessage": None if settings.llm.configured else NO_LLM_MESSAGE,
            "model": settings.llm.model,
            "toolApproval": settings.tool_approval,
            "maxToolRounds": settings.llm.max_tool_rounds,
            "historyLimits": HISTORY_LIMITS,
            "configPath": config.path,
            "configErrors": [str(e) for e in config.errors],
        }

    @app.get("/api/servers")
    async def api_servers() -> dict[str, Any]:
        return {"servers": manager.servers(), "errors": [str(e) for e in config.errors]}

    @app.get("/api/tools")
    async def api_tools() -> dict[str, Any]:
        entries = manager.tools()
        names = reverse(build_table(entries))
        return {
            "tools": [
                {
                    "server": e.server,
                    "name": e.name,
                    "title": e.tool.title,
                    "description": e.tool.description or "No description",
                    "input_schema": e.input_schema,
                    "read_only": e.read_only,
                    "function": names[(e.server, e.name)],
                }
                for e in entries
            ]
        }

    @app.post("/api/call-tool")
    async def api_call_tool(req: CallToolRequest) -> Response:
        conn = manager.connections.get(req.server)
        if conn is None:
            return JSONResponse({"detail": f"Unknown MCP server '{req.server}'"}, status_code=404)
        entry = manager.find(req.server, req.name)
        if entry is None and conn.status != "connected" and await conn.ensure_connected():
            entry = manager.find(req.server, req.name)
        if entry is None:
            if conn.status != "connected":
                why = f": {conn.last_error}" if conn.last_error else ""
                detail = f"MCP server '{req.server}' is not connected ({conn.status}){why}"
                return JSONResponse({"detail": detail}, status_code=503)
            detail = f"MCP server '{req.server}' has no tool '{req.name}'"
            return JSONResponse({"detail": detail}, status_code=404)
        problem = validate_arguments(entry, req.args)
        if problem:
            return JSONResponse({"detail": problem}, status_code=422)
        start = time.monotonic()
        try:
            result = await manager.call_tool(req.server, req.name, req.args)
        except ToolCallError as e:
            return JSONResponse({"detail": str(e)}, status_code=e.status_code)
        return JSONResponse(
            {
                "result": result_text(result),
                "isError": result.is_error,
                "durationMs": round((time.monotonic() - start) * 1000),
            }
        )

    @app.post("/api/chat")
    async def api_chat(req: ChatRequest) -> Response:
        """Script-friendly: one JSON answer, tools run without asking (the seed's behaviour)."""
        try:
            result = await engine.run(req.message, req.history)
        except LLMError as e:
            return JSONResponse({"detail": e.message}, status_code=e.status_code)
        return JSONResponse(result.as_dict())

    @app.post("/api/chat/stream")
    async def api_chat_stream(req: ChatRequest) -> Response:
        if engine.client is None:
            return JSONResponse({"detail": NO_LLM_MESSAGE}, status_code=503)
        ask = (req.approval or settings.tool_approval) == "ask"
        queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()

        async def emit(kind: str, data: dict[str, Any]) -> None:
            await queue.put((kind, data))

        async def worker() -> None:
            try:
                result = await engine.run(
                    req.message, req.history, emit=emit, approvals=approvals if ask else None
                )
                await emit("done", result.as_dict())
            except LLMError as e:
                await emit("error", {"message": e.message, "status": e.status_code})
            except Exception as e:
                log.exception("chat failed")
                await emit(
                    "error", {"message": f"Internal error: {describe_error(e)}", "status": 500}
                )
            finally:
                await queue.put(None)

        async def body() -> AsyncIterator[str]:
            task = asyncio.create_task(worker())
            try:
                while True:
                    try:
                        item = await asyncio.wait_for(queue.get(), timeout=15)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if item is None:
                        break
                    yield _sse(*item)
            finally:
                task.cancel()  # the page went away: stop the model and drop pending approvals

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.post("/api/chat/approve")
    async def api_chat_approve(answer: ApprovalAnswer) -> Response:
        if not approvals.resolve(answer.approvalId, answer.approved):
            return JSONResponse(
                {"detail": "No pending approval with that id (already answered or expired)"},
                status_code=404,
            )
        return JSONResponse({"ok": True, "approved": answer.approved})

    app.mount("/", StaticFiles(directory=PUBLIC, html=True), name="public")
    return app


def main() -> None:
    settings = WebSettings.from_env()
    parser = argparse.ArgumentParser(description="product-mcp web chat")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--access-log", action="store_true", help="log one line per request")
    ns = parser.parse_args()
    settings = dataclasses.replace(settings, host=ns.host, port=ns.port)
    logging.basicConfig(level=ns.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    print("product-mcp web chat", flush=True)
    print(registry.summary(WEB_SETTINGS, {"WEB_HOST": ns.host, "WEB_PORT": ns.port}), flush=True)
    uvicorn.run(
        create_app(settings),
        host=ns.host,
        port=ns.port,
        log_level=ns.log_level,
        access_log=ns.access_log,
    )


if __name__ == "__main__":
    main()
