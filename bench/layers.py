"""Rows 1-3: one get_products call through each layer (direct API, every MCP transport and
mode, web.py's call-tool and a whole chat turn), so each layer's cost shows as a ratio to the
direct call."""

from __future__ import annotations

import functools
import time
from contextlib import AsyncExitStack

import httpx

from bench.clients import direct_products, mcp_client, tool
from bench.measure import Bench, Spec
from bench.stats import pct

LLM_MESSAGE = "bench: what do you sell?"  # the message bench/llm.py has a script for
VARIANTS = [  # key, label, client kind, server
    ("mcp_modern", "MCP 2026-07-28 (no session), /mcp", "modern", "mcp"),
    ("mcp_legacy", "MCP 2025-11-25 session, /mcp (quick replies in JSON)", "legacy", "mcp"),
    ("mcp_sse", "MCP over SSE transport, /sse", "sse", "mcp"),
    ("mcp_json_legacy", "MCP session, --json-response", "legacy", "json"),
    ("mcp_json_modern", "MCP 2026-07-28, --json-response", "modern", "json"),
    ("mcp_stateless", "MCP --stateless (handshake client)", "legacy", "stateless"),
]


async def layers(b: Bench, http: httpx.AsyncClient, api_url: str) -> None:
    """1-3: one call through each layer, sequentially (the paths take turns, see interleaved)."""
    await interleaved_layers(b, http, api_url)
    await sse_per_call(b)
    await chat_turn(b, http)


async def interleaved_layers(b: Bench, http: httpx.AsyncClient, api_url: str) -> None:
    """Direct, each MCP variant and web.py's call-tool, taking turns."""
    direct = direct_products(http, api_url)
    specs: list[Spec] = [("direct_1", "direct GET /api/products (1 client)", direct, ["api"], "")]
    body = {"server": "product-mcp", "name": "get_products", "args": {}}
    web_url = b.procs["web"].url

    async def call_tool() -> None:
        r = await http.post(f"{web_url}/api/call-tool", json=body)
        r.raise_for_status()
        if r.json()["isError"]:
            raise RuntimeError(r.text)

    async with AsyncExitStack() as stack:
        for key, label, kind, server in VARIANTS:
            client = await stack.enter_async_context(mcp_client(kind, b.procs[server].url))
            call = functools.partial(tool, client, "get_products")
            note = f"protocol {client.protocol_version}"
            specs.append((key, label, call, [server, "api"], note))
        web = ["web", "mcp", "api"]
        specs.append(("web_call_tool", "web.py POST /api/call-tool", call_tool, web, ""))
        await b.interleaved(specs)


async def sse_per_call(b: Bench) -> None:
    """The tutorial's web client: a new SSE connection for every call."""
    mcp_url = b.procs["mcp"].url

    async def new_sse_session() -> None:
        async with mcp_client("sse", mcp_url) as client:
            await tool(client, "get_products")

    await b.latency(
        "mcp_sse_per_call",
        "MCP new SSE connection per call (tutorial)",
        new_sse_session,
        ["mcp", "api"],
        n=b.sizes.per_connection_calls,
        warmup=2,
    )


async def chat_turn(b: Bench, http: httpx.AsyncClient) -> None:
    """3b. a chat turn: LLM asks for get_products, then answers; LLM time measured alone."""
    chat = {"message": LLM_MESSAGE, "history": []}
    web_url = b.procs["web"].url

    async def one_turn() -> None:
        r = await http.post(f"{web_url}/api/chat", json=chat)
        r.raise_for_status()
        if len(r.json().get("toolCalls", [])) != 1:
            raise RuntimeError(f"chat turn did not call the tool: {r.text[:300]}")

    turn = await b.latency(
        "chat_turn",
        "web.py POST /api/chat (1 tool round)",
        one_turn,
        ["web", "mcp", "api", "llm"],
        n=b.sizes.chat_turns,
        warmup=3,
    )
    llm_ms = await llm_alone(b, http, b.procs["llm"].url, web_url)
    turn.note = (
        f"2 LLM requests alone {llm_ms:.2f} ms; web overhead p50 {turn.p50_ms - llm_ms:.2f} ms"
    )
    b.checks["chat_web_overhead_p50_ms"] = round(turn.p50_ms - llm_ms, 2)  # type: ignore[operator]


async def llm_alone(b: Bench, http: httpx.AsyncClient, llm_url: str, web_url: str) -> float:
    """p50 of the turn's two streamed LLM requests sent straight to the fake, summed."""
    tools = (await http.get(f"{web_url}/api/tools")).json()["tools"]
    functions = [
        {
            "type": "function",
            "function": {
                "name": t["function"],
                "description": f"[{t['server']}] {t['description']}",
                "parameters": t["input_schema"],
            },
        }
        for t in tools
    ]
    products = (await http.get(f"{b.procs['api'].url}/api/products?limit=50")).text
    system = {"role": "system", "content": "You are a shopping assistant." * 20}
    user = {"role": "user", "content": LLM_MESSAGE}
    first = {"model": "fake-model", "stream": True, "messages": [system, user], "tools": functions}
    call = {"id": "c1", "type": "function", "function": {"name": "get_products", "arguments": ""}}
    second = {
        **first,
        "messages": [
            system,
            user,
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": products},
        ],
    }
    totals: list[float] = []
    for i in range(b.sizes.chat_turns + 3):
        t = time.perf_counter()
        for body in (first, second):
            async with http.stream("POST", f"{llm_url}/chat/completions", json=body) as r:
                async for _ in r.aiter_bytes():
                    pass
        if i >= 3:
            totals.append(time.perf_counter() - t)
    return pct(totals, 50)
