"""The goals the bench checks the measured rows against (issue targets), met or missed.

Apart from the measuring so the list of goals reads in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.measure import Bench

Rows = dict[str, Any]  # measured rows by key
Add = Callable[[str, str, float | None, bool | None, str], None]


def targets(b: Bench) -> list[dict[str, Any]]:
    r = {row.key: row for row in b.rows}
    out: list[dict[str, Any]] = []

    def target(name: str, goal: str, value: float | None, ok: bool | None, unit: str) -> None:
        out.append({"target": name, "goal": goal, "value": value, "unit": unit, "met": ok})

    _overheads(b, r, target)
    _throughput(b, r, target)
    _search(b, r, target)
    _page_and_live(b, r, target)
    _memory(b, target)
    return out


def at_most(v: float | None, limit: float) -> bool:
    return v is not None and v <= limit


def _overheads(b: Bench, r: Rows, target: Add) -> None:
    """What MCP and web.py add to a direct API call."""
    d = b.direct_p50 or float("nan")

    def x(key: str) -> float | None:
        row = r.get(key)
        return None if row is None or row.p50_ms is None else round(row.p50_ms / d, 2)

    v = x("mcp_modern")
    target("MCP call, 2026-07-28, p50 / direct p50", "<= 3", v, v is not None and v <= 3, "x")
    v = x("mcp_legacy")
    target("MCP call, 2025-11-25 session, p50 / direct p50", "<= 4", v, at_most(v, 4), "x")
    v = x("web_call_tool")
    target("web.py /api/call-tool p50 / direct p50", "<= 4", v, v is not None and v <= 4, "x")
    row = r.get("chat_turn")
    v = row.cpu_ms.get("web") if row else None
    target("web.py CPU per chat turn (1 tool round)", "<= 4", v, at_most(v, 4), "ms")


def _throughput(b: Bench, r: Rows, target: Add) -> None:
    """Sessions and purchases per second, with no oversell and no lost purchase."""
    direct8 = r["direct_8"].per_s if "direct_8" in r else None
    mcp8 = r["mcp_sessions_8"].per_s if "mcp_sessions_8" in r else None
    v = round(mcp8 * 100 / direct8, 1) if mcp8 and direct8 else None
    target("8-session MCP throughput / 8-client direct", ">= 40", v, v is not None and v >= 40, "%")
    p = b.checks.get("purchase", {})
    v = r["purchases_32"].per_s if "purchases_32" in r else None
    ok = v is not None and v >= 300 and p.get("oversold") == 0 and p.get("lost") == 0
    target("purchases/s, 32 clients, SQLite, 0 oversell, 0 lost", ">= 300", v, ok, "/s")
    for workers in (1, 4):
        p = b.checks.get(f"purchase_pg_w{workers}", {})
        row = r.get(f"purchases_32_pg_w{workers}")
        v = row.per_s if row else None
        ok = v is not None and v >= 400 and p.get("oversold") == 0 and p.get("lost") == 0
        name = f"purchases/s, 32 clients, PostgreSQL, {workers} API worker(s), 0 oversell, 0 lost"
        target(name, ">= 400", v, ok, "/s")


def _search(b: Bench, r: Rows, target: Add) -> None:
    for key, name in [
        ("search_api_pg", "search p50 (API, PostgreSQL)"),
        ("recommend_api_pg", "recommend p50 (API, PostgreSQL)"),
    ]:
        v = r[key].p50_ms if key in r else None
        target(f"{name}, {b.sizes.products:,} products", "<= 15", v, at_most(v, 15), "ms")
    for key, name in [
        ("search_api", "search p50 (API)"),
        ("recommend_api", "recommend p50 (API)"),
        ("search_mcp", "search_products p50 (MCP tool)"),
        ("recommend_mcp", "recommend_products p50 (MCP tool)"),
    ]:
        v = r[key].p50_ms if key in r else None
        target(f"{name}, {b.sizes.products:,} products", "<= 20", v, at_most(v, 20), "ms")


def _page_and_live(b: Bench, r: Rows, target: Add) -> None:
    v = r["page_first_feedback"].p50_ms if "page_first_feedback" in r else None
    target("page: Send to first visible feedback, p50", "<= 100", v, at_most(v, 100), "ms")
    row = r.get("page_render_message")
    v = row.p50_ms if row else None
    name = f"page: render a new message after {b.sizes.page_turns} turns, p50"
    target(name, "<= 16", v, at_most(v, 16), "ms")
    v = r["live_latency"].p95_ms if "live_latency" in r else None
    target("purchase -> subscribed MCP client notified, p95", "<= 250", v, at_most(v, 250), "ms")
    v = r["live_page_latency"].p95_ms if "live_page_latency" in r else None
    target("purchase -> stock changes in a page, p95", "<= 1000", v, at_most(v, 1000), "ms")


def _memory(b: Bench, target: Add) -> None:
    m = b.memory
    v = m.get("per_session_kib")
    target("RSS per idle Streamable HTTP session", "<= 60", v, v is not None and v <= 60, "KiB")
    v = m.get("after_close_vs_idle_pct")
    target("RSS after close vs idle", "<= +10", v, v is not None and v <= 10, "%")
