"""The benchmark suite runs end to end with tiny N, so its code cannot rot. No timing asserted.

Two halves, as two tests in two modules so that xdist runs them side by side: every row but
the scale rows here (`--part core`), the PostgreSQL/nginx/Redis rows in
test_bench_smoke_scale.py (`--part scale`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.servers import ROOT
from tests.web_helpers import IN_CI

ROWS = {
    "cold_start",
    "direct_1",
    "mcp_modern",
    "mcp_legacy",
    "mcp_sse",
    "mcp_json_legacy",
    "mcp_json_modern",
    "mcp_stateless",
    "mcp_sse_per_call",
    "web_call_tool",
    "chat_turn",
    "direct_8",
    "mcp_sessions_1",
    "mcp_sessions_8",
    "mcp_sessions_64",
    "purchases_32",
    "purchases_32_normal",
    "search_api",
    "recommend_api",
    "search_mcp",
    "recommend_mcp",
    "mem_idle",
    "mem_sessions",
    "mem_sessions_closed",
    "mem_second_round",
    "mem_sse",
    "mem_after",
    # Issue #13's live-inventory rows (bench/live.py).
    "purchases_32_live",
    "live_feed_rate",
    "live_latency",
    "live_fanout",
}
# Issue #12's rows (bench/scale.py): PostgreSQL, nginx and Redis, required in CI.
SCALE_ROWS = {
    "purchases_32_pg_w1",
    "purchases_32_pg_w4",
    "search_api_pg",
    "recommend_api_pg",
    "nginx_1_replica",
    "nginx_2_replica",
    "session_restore",
}
# Issue #14's page rows (bench/page.py): Chromium and Playwright, required in CI.
PAGE_ROWS = {"page_weight", "page_first_feedback", "page_render_message", "live_page_latency"}


def run_smoke(tmp_path: Path, part: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """`python -m bench.run --smoke --part PART`: its output and its JSON result."""
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--part", part, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # The bench's own clients are not logged per request (rich rendered each one at INFO:
    # a sixth of the bench's CPU per purchase in the full run, bench/measure.py quiet_logging).
    assert "HTTP Request:" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["smoke"] is True
    assert len(result["targets"]) == 20
    assert "targets:" in proc.stdout
    return proc, result


def test_bench_smoke(tmp_path: Path) -> None:
    _, result = run_smoke(tmp_path, "core")
    rows = {r["key"]: r for r in result["rows"]}
    no_page = result["checks"].get("page_skipped")
    assert not (no_page and IN_CI), f"the page rows need Chromium and Playwright: {no_page}"
    page = set() if no_page else PAGE_ROWS
    assert set(rows) == ROWS | page
    for key, row in rows.items():
        if not key.startswith("mem_") and key not in ("page_weight", "live_feed_rate"):
            assert row["p50_ms"] is not None and row["p50_ms"] > 0, row
    # Every MCP row really spoke the protocol it claims.
    assert "2026-07-28" in rows["mcp_modern"]["note"]
    assert "2025-11-25" in rows["mcp_legacy"]["note"]

    live = result["checks"]["live_feed"]
    assert live["events"] == live["purchases"] == result["checks"]["purchase_live"]["succeeded"]
    for check in ("purchase", "purchase_normal", "purchase_live"):
        assert_consistent(result["checks"][check])

    mem = result["memory"]
    assert mem["sessions"] == result["sizes"]["mem_sessions"]
    assert mem["sse_streams"] == result["sizes"]["mem_sse"]
    assert result["cold_start"]["all_answer_s"] > 0
    if not no_page:
        # The page loaded its HTML, CSS and every module, and the long chat was all drawn.
        weight = result["checks"]["page_weight"]
        assert weight["files"] >= 3 and weight["gzip_bytes"] < weight["raw_bytes"]
        chat = result["checks"]["page_chat"]
        assert chat["tool_cards"] == chat["turns"] == result["sizes"]["page_turns"]
        assert rows["page_first_feedback"]["n"] == 2 * result["sizes"]["page_sends"]


def assert_consistent(purchase: dict) -> None:
    """A purchase run's check: 0 oversold, 0 lost, and the stock ran out exactly."""
    assert purchase["oversold"] == 0
    assert purchase["lost"] == 0
    assert purchase["consistent"] is True
    assert purchase["succeeded"] == purchase["initial_stock"]  # stock ran out, no more
    left = purchase["attempts"] - purchase["succeeded"]
    assert purchase["refused_insufficient_stock"] == left
