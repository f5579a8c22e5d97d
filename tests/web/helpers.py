"""What the web.py tests share: the shop's tool names, the no-LLM sentence and short calls
that work on a web.py process (a Service) and on an in-process app alike (both have `url`),
among them one chat turn on either chat route."""

from __future__ import annotations

from typing import Any

import httpx

from tests.inproc import InProcessWeb
from tests.servers import Service
from tests.web_helpers import chat_stream

NO_LLM = "No LLM configured: set OPENAI_API_KEY (and OPENAI_API_BASE for other providers) in .env"
SHOP_TOOLS = {
    "get_products",
    "get_inventory",
    "get_orders",
    "create_purchase",
    "get_product",
    "search_products",
    "recommend_products",
    "analyze_sales",
}
Web = Service | InProcessWeb


def post(web: Web, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(f"{web.url}{path}", json=body, timeout=kw.pop("timeout", 30), **kw)


def chat(web: Web, message: str, history: list[dict[str, Any]] | None = None) -> httpx.Response:
    return post(web, "/api/chat", {"message": message, "history": history or []})


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == "tool"]


# The two chat routes a turn can take: POST /api/chat and POST /api/chat/stream.
ROUTES = ["chat", "stream"]


def turn(
    web: Web, route: str, message: str, history: list[dict[str, Any]] | None = None
) -> tuple[str, dict[str, Any]]:
    """One chat turn on `route`: ("ok", body) or ("error", {"status", "message"}); a stream's
    body is its `done` event's, with every event under "_events"."""
    body = {"message": message, "history": history or []}
    if route == "chat":
        r = httpx.post(f"{web.url}/api/chat", json=body, timeout=60)
        if r.status_code == 200:
            return "ok", r.json()
        try:
            message = r.json()["detail"]
        except ValueError:
            message = r.text
        return "error", {"status": r.status_code, "message": message}
    events = chat_stream(web, body)
    kind, data = events[-1]
    assert kind in ("done", "error"), events[-3:]
    if kind == "error":
        return "error", data
    data["_events"] = events
    return "ok", data
