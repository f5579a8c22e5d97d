"""What the web.py tests share: the shop's tool names, the no-LLM sentence and short calls
that work on a web.py process (a Service) and on an in-process app alike (both have `url`)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.inproc import InProcessWeb
from tests.servers import Service

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
