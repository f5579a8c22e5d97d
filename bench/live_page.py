"""Issue #13's page row: a purchase made through api.py until the stock shown in a Chromium
page changes (goal: within 1 s), through every hop a user's change takes: api.py's change
feed, main.py's follower and its 100 ms coalescing window, web.py's one `shop://inventory`
subscription and its re-read, `GET /api/events`, the page's live.js.

How it is timed: the page shows the inventory in the tool panel; before each purchase a
MutationObserver is armed on the bought product's stock badge; it records the wall clock
(`performance.timeOrigin + performance.now()`) when the badge's number changes, which is
compared with the wall clock (`time.time()`) just before the purchase was sent. Both clocks
are the machine's; the DOM change is what is timed (its paint follows within a frame).
Runs in bench/live.py's section, on its api.py and main.py, with a web.py of its own.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.measure import Bench
from bench.page import CHROMIUM, CHROMIUM_ARGS, missing
from bench.procs import start_many, wait_web_connected, web_spec
from bench.stats import Row, pct
from tests.servers import free_port

WAIT_MS = 30_000  # a change not on the page by then is a failure, not a sample

# Resolves window.__changed with the wall-clock time the badge's stock next changes.
ARM = """(id) => {
  const badge = document.querySelector(`#runner-view span.stock[data-product-id="${id}"]`);
  if (!badge) throw new Error(`no stock badge for product ${id}`);
  const before = badge.dataset.stock;
  window.__changed = null;
  const watch = new MutationObserver(() => {
    if (badge.dataset.stock === before) return;
    window.__changed = performance.timeOrigin + performance.now();
    watch.disconnect();
  });
  watch.observe(badge, { attributes: true, childList: true, characterData: true, subtree: true });
}"""


async def page_latency(
    b: Bench, mcp_url: str, product: int, buy: Callable[[], Awaitable[None]]
) -> None:
    """The `live_page_latency` row, or a `live_page_skipped` check without Chromium."""
    why = missing()
    if why:
        b.checks["live_page_skipped"] = why
        return
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="bench-live-page-") as tmp:
        cfg = Path(tmp) / "mcp.json"
        cfg.write_text(json.dumps({"mcpServers": {"shop": {"url": f"{mcp_url}/mcp"}}}))
        b.procs |= start_many({"liveweb": web_spec(free_port(), free_port(), cfg)})
        url = b.procs["liveweb"].url
        await wait_web_connected(url)
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = await browser.new_page(viewport={"width": 1280, "height": 800})
                samples = await _samples(page, url, product, buy, b.sizes.live_page_changes)
            finally:
                await browser.close()
    row = Row("live_page_latency", "purchase via API -> stock changes in a Chromium page")
    row.n = len(samples)
    row.p50_ms, row.p95_ms = round(pct(samples, 50), 2), round(pct(samples, 95), 2)
    row.note = "feed, main.py (100 ms window), web.py re-read, /api/events, live.js; DOM change"
    b.add(row)


async def _samples(
    page: Any, url: str, product: int, buy: Callable[[], Awaitable[None]], n: int
) -> list[float]:
    await page.goto(url + "/")
    await page.wait_for_selector("#live[data-on='true']", timeout=WAIT_MS)
    await page.click("button.tool-btn[data-tool='get_inventory']")
    await page.click("#runner-form button[type=submit]")
    badge = f"#runner-view span.stock[data-product-id='{product}']"
    await page.wait_for_selector(badge, timeout=WAIT_MS)
    samples: list[float] = []
    for _ in range(n):
        await page.evaluate(ARM, product)
        t0 = time.time() * 1000
        await buy()
        await page.wait_for_function("() => window.__changed !== null", timeout=WAIT_MS)
        samples.append((await page.evaluate("() => window.__changed") - t0) / 1000)
    return samples
