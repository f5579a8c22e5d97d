"""Issue #14's page rows: the chat page in Debian's Chromium (Playwright) against the real web.py
with the zero-latency scripted LLM: time from Send to first visible feedback, the time to
render a new message once the chat holds many turns, and the page's weight.

How each is timed, in the page (`performance.now()`, the browser's own clock):
- first feedback: from the Send click's `timeStamp` to just after the first frame that follows
  it (a `requestAnimationFrame` callback, then a `MessageChannel` message, which runs after
  that frame's paint), checking the "thinking" indicator or the user's bubble was on the page
  in that frame. One sample per real turn: `page_sends` on a fresh chat, as many at its end.
- new message at turn N: a chat of N turns (each: the user's bubble, a `get_products` card
  with its product view, the model's Markdown reply; the real turns repeated in the saved
  conversation, which the page draws again on reload, so the full bench need not wait for N
  real turns whose history grows with each), then the page's own
  `addItem` + `save` (what the `done` handler runs for a reply) on a Markdown reply, with the
  style and layout it forces, plus the next frame's work (from its `requestAnimationFrame`
  callback to after its paint). The wait for the frame itself is not counted.
- page weight: every HTML, JS and CSS response the page loads from web.py, raw and gzipped
  (per file, level 6, as a compressing proxy would send them).
"""

from __future__ import annotations

import gzip
import time
from typing import Any

from bench.llm import PAGE_MESSAGE
from bench.measure import Bench
from bench.stats import Row, pct
from tests.web_helpers import CHROMIUM, CHROMIUM_ARGS  # the page tests' Chromium

KINDS = {"document", "script", "stylesheet"}

# Records, for every Send click, the time to just after the next painted frame.
WATCH_SEND = """() => {
  window.__feedback = [];
  const send = document.getElementById("send");
  document.addEventListener("click", (ev) => {
    if (ev.target !== send) return;
    const start = ev.timeStamp;
    const users = document.querySelectorAll(".msg.user").length;
    requestAnimationFrame(() => {
      const shown = !!document.querySelector(".thinking")
        || document.querySelectorAll(".msg.user").length > users;
      const ch = new MessageChannel();
      ch.port1.onmessage = () => window.__feedback.push([performance.now() - start, shown]);
      ch.port2.postMessage(0);
    });
  }, true);
}"""

IDLE = "() => { const s = document.getElementById('send'); return !s.hidden && !s.disabled; }"

# Makes the saved conversation (js/state.js's localStorage entries) `turns` turns long by
# repeating the real turns it holds; the page draws it all again on reload.
GROW = """(turns) => {
  const key = "product-mcp.chat.v1";
  const saved = JSON.parse(localStorage.getItem(key));
  const real = saved.items.filter((i) => i.kind === "user").length;
  const items = [], history = [];
  for (let i = 0; items.filter((x) => x.kind === "user").length < turns; i++) {
    items.push(...structuredClone(saved.items));
    history.push(...structuredClone(saved.history));
  }
  const cut = (list, isUser) => {
    let n = 0;
    const at = list.findIndex((x) => isUser(x) && ++n > turns);
    return at < 0 ? list : list.slice(0, at);
  };
  const grown = JSON.stringify({
    items: cut(items, (x) => x.kind === "user"),
    history: cut(history, (x) => x.role === "user"),
  });
  localStorage.setItem(key, grown);
  // and this tab's own copy, which its reload reads first (js/state.js)
  localStorage.setItem(`${key}.tab.${sessionStorage.getItem("product-mcp.tab")}`, grown);
  return real;
}"""

# One new assistant message, through the page's own modules (the same instances main.js uses).
RENDER_ONE = """async (text) => {
  const { addItem } = await import("/js/render.js");
  const { save } = await import("/js/state.js");
  const messages = document.getElementById("messages");
  const t0 = performance.now();
  addItem({ kind: "assistant", text });
  save();
  void messages.scrollHeight;
  const sync = performance.now() - t0;
  const frame = await new Promise((done) => requestAnimationFrame(() => {
    const a = performance.now();
    const ch = new MessageChannel();
    ch.port1.onmessage = () => done(performance.now() - a);
    ch.port2.postMessage(0);
  }));
  return [sync, frame, document.querySelectorAll("#messages > *").length];
}"""

REPLY = (
    "Here is what the shop sells right now:\n\n"
    "| product | price |\n|---|--:|\n| **Smart Watch Pro** | $1,299.00 |\n"
    "| Wireless Earbuds | $149.00 |\n\n- free delivery over $50\n- `get_products` was asked"
)


async def page(b: Bench) -> None:
    """The three page rows, or a `page_skipped` check where Chromium or Playwright is missing."""
    why = missing()
    if why:
        b.checks["page_skipped"] = why
        return
    from playwright.async_api import async_playwright

    url = b.procs["web"].url
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            pg = await context.new_page()
            loaded: list[Any] = []
            pg.on("response", lambda r: loaded.append(r) if r.url.startswith(url) else None)
            errors: list[str] = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            await pg.goto(url + "/")
            await pg.wait_for_function(IDLE)
            await page_weight(b, loaded)
            await long_chat(b, pg)
            if errors:
                raise RuntimeError(f"the page threw: {errors[:3]}")
        finally:
            await browser.close()


def missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    return None if CHROMIUM.exists() else f"{CHROMIUM} is not installed"


async def page_weight(b: Bench, responses: list[Any]) -> None:
    raw = zipped = files = 0
    for r in responses:
        if r.request.resource_type in KINDS and r.ok:
            body = await r.body()
            raw += len(body)
            zipped += len(gzip.compress(body, 6))
            files += 1
    b.checks["page_weight"] = {"files": files, "raw_bytes": raw, "gzip_bytes": zipped}
    note = f"HTML+JS+CSS {files} files, {raw:,} B raw, {zipped:,} B gzipped"
    b.add(Row("page_weight", "chat page weight (HTML+JS+CSS)", n=files, note=note))


async def sends(pg: Any, n: int) -> list[float]:
    """`n` real turns, typed and sent with Playwright's click; the feedback time of each, s."""
    await pg.evaluate(WATCH_SEND)
    for _ in range(n):
        await pg.fill("#input", PAGE_MESSAGE)
        await pg.click("#send")
        await pg.wait_for_function(IDLE)
    feedback: list[list[Any]] = await pg.evaluate("window.__feedback")
    if len(feedback) != n or not all(shown for _, shown in feedback):
        raise RuntimeError(f"first feedback not seen on every turn: {feedback[:5]}")
    return [ms / 1000 for ms, _ in feedback]


async def long_chat(b: Bench, pg: Any) -> None:
    """Real turns on a fresh chat, the chat grown to `page_turns` turns (repeating them; the
    page reloads it), real turns again at its end, then the new-message renders."""
    turns, n = b.sizes.page_turns, b.sizes.page_sends
    fresh = await sends(pg, n)
    await pg.evaluate(GROW, turns - n)
    t = time.perf_counter()
    await pg.reload()
    await pg.wait_for_function(IDLE)
    reload_s = time.perf_counter() - t
    t = time.perf_counter()
    late = await sends(pg, n)
    late_turn_s = (time.perf_counter() - t) / n
    cards = await pg.locator(".tool-card").count()
    if cards != turns:
        raise RuntimeError(f"a chat of {turns} turns shows {cards} tool cards")
    row = Row("page_first_feedback", "page: Send to first visible feedback", n=2 * n)
    row.p50_ms, row.p95_ms = round(pct(fresh + late, 50), 2), round(pct(fresh + late, 95), 2)
    row.note = (
        f"fresh chat p50 {pct(fresh, 50):.1f} ms; turns {turns - n + 1}-{turns} p50 "
        f"{pct(late, 50):.1f} ms (whole turn there {late_turn_s:.2f} s with its history)"
    )
    b.add(row)

    syncs, frames, totals = [], [], []
    for _ in range(b.sizes.page_renders):
        sync, frame, nodes = await pg.evaluate(RENDER_ONE, REPLY)
        syncs.append(sync / 1000)
        frames.append(frame / 1000)
        totals.append((sync + frame) / 1000)
    row = Row("page_render_message", f"page: render a new message at turn {turns}")
    row.n = len(totals)
    row.p50_ms, row.p95_ms = round(pct(totals, 50), 2), round(pct(totals, 95), 2)
    row.note = (
        f"{nodes} items on the page; addItem+save+layout p50 {pct(syncs, 50):.2f} ms, "
        f"next frame p50 {pct(frames, 50):.2f} ms; reload of the chat {reload_s:.2f} s"
    )
    b.checks["page_chat"] = {"turns": turns, "tool_cards": cards, "items": nodes}
    b.add(row)
