"""What the page tests of issue #14 share: one Chromium per module with a desktop (1280×800)
and a phone (390×844) context, screenshots under test-artifacts/, a scripted stand-in for
web.py's reply stream (so the page's handling of every stream event can be driven step by
step), the in-browser contrast check and axe-core (node_modules, test-only). The fixtures
built on it (`browser`, `web`, `scripted`) are in conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.servers import ROOT
from tests.web_helpers import need

ARTIFACTS = ROOT / "test-artifacts"
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SIZES = {"desktop": {"width": 1280, "height": 800}, "mobile": {"width": 390, "height": 844}}

# Replaces fetch for the chat routes while window.__mock is set: /api/chat/stream answers with
# a stream the test writes with window.__push(event, data) and ends with window.__end();
# /api/chat/elicitation and /api/chat/stop are recorded in window.__posts and answered 200.
MOCK_STREAM = """(() => {
  const realFetch = window.fetch.bind(window);
  window.__posts = [];
  window.__mock = false;
  window.fetch = (url, opts) => {
    const path = new URL(url, location.href).pathname;
    if (!window.__mock) return realFetch(url, opts);
    if (path === '/api/chat/stream') {
      const enc = new TextEncoder();
      let ctl;
      const body = new ReadableStream({ start(c) { ctl = c; } });
      window.__push = (ev, data) =>
        ctl.enqueue(enc.encode(`event: ${ev}\\ndata: ${JSON.stringify(data)}\\n\\n`));
      window.__end = () => ctl.close();
      if (opts && opts.signal) opts.signal.addEventListener('abort', () => {
        try { ctl.error(new DOMException('aborted', 'AbortError')); } catch (e) {}
      });
      window.__posts.push([path, JSON.parse(opts.body)]);
      return Promise.resolve(new Response(body, {
        status: 200, headers: { 'content-type': 'text/event-stream' } }));
    }
    if (path === '/api/chat/elicitation' || path === '/api/chat/stop') {
      window.__posts.push([path, JSON.parse(opts.body)]);
      return Promise.resolve(new Response(JSON.stringify({ ok: true }), {
        status: 200, headers: { 'content-type': 'application/json' } }));
    }
    return realFetch(url, opts);
  };
})();"""

# Every visible text on the page whose colour against its (blended) background is below 4.5:1
# (`low`), and every one on a light background (`bright`: luminance over 0.3, none in dark mode).
LOW_CONTRAST = """() => {
  const parse = (c) => {
    const m = /rgba?\\(([^)]+)\\)/.exec(c || '');
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const over = (top, under) => {
    const a = top[3];
    return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat(1);
  };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255, 1];
    for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
    return bg;
  };
  const low = [];
  const bright = [];
  let checked = 0;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n; (n = walker.nextNode()); ) {
    const el = n.parentElement;
    if (!n.textContent.trim() || !el || el.closest('option, script, style')) continue;
    if (!el.checkVisibility({ visibilityProperty: true, opacityProperty: true })) continue;
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    const st = getComputedStyle(el);
    const bg = background(el);
    const fg = over(parse(el instanceof SVGElement ? st.fill : st.color), bg);
    const [a, b] = [lum(fg), lum(bg)];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    checked++;
    if (ratio < 4.5) low.push([n.textContent.trim().slice(0, 40), +ratio.toFixed(2), st.color]);
    if (b > 0.3) bright.push([n.textContent.trim().slice(0, 40), +b.toFixed(2)]);
  }
  return { checked, low, bright };
}"""

AXE_RUN = """async () => {
  const r = await axe.run(document, { resultTypes: ['violations'] });
  return r.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => [v.id, v.impact, v.nodes.slice(0, 3).map((n) => n.target.join(' '))]);
}"""


def new_page(
    browser: Any, url: str, size: str, *, mock: bool = False, routes: dict[str, Any] | None = None
) -> Any:
    """A page at `size` in a fresh context (its own localStorage), recording script errors;
    axe-core loaded before the page's scripts (an init script is not bound by the page's
    CSP), the scripted stream when `mock`, and `routes` (glob → Playwright route handler)."""
    need(AXE.exists(), "axe-core not installed (npm ci)")
    ctx = browser.new_context(viewport=SIZES[size])
    ctx.add_init_script(path=str(AXE))
    if mock:
        ctx.add_init_script(MOCK_STREAM)
    for pattern, handler in (routes or {}).items():
        ctx.route(pattern, handler)
    page = ctx.new_page()
    page.js_errors = []
    page.on("pageerror", lambda e: page.js_errors.append(str(e)))
    page.set_default_timeout(15_000)
    page.goto(url + "/")
    return page


@contextmanager
def pages_by_size(browser: Any, url: str, *, mock: bool = False) -> Iterator[dict[str, Any]]:
    """One page per size (new_page), kept while the caller runs (a module's conversation); at
    the end none may have logged a script error."""
    opened = {size: new_page(browser, url, size, mock=mock) for size in SIZES}
    yield opened
    for page in opened.values():
        assert page.js_errors == [], page.js_errors
        page.context.close()


@contextmanager
def scripted_pages(browser: Any, url: str) -> Iterator[dict[str, Any]]:
    """pages_by_size with the scripted stream switched on once the page has its tools."""
    with pages_by_size(browser, url, mock=True) as opened:
        for page in opened.values():
            page.wait_for_selector("button.tool-btn[data-tool='get_inventory']", state="attached")
            page.evaluate("window.__mock = true")
        yield opened


def start_turn(page: Any, text: str) -> None:
    """Send `text`; the scripted stream is open when this returns."""
    before = len(posts(page, "/api/chat/stream"))
    page.fill("#input", text)
    page.press("#input", "Enter")
    page.wait_for_function(
        "n => window.__posts.filter(p => p[0] === '/api/chat/stream').length > n", arg=before
    )


def turn(page: Any, text: str, answer: str) -> None:
    """Send `text` and wait for the reply containing `answer`, and for Send to be back."""
    page.fill("#input", text)
    page.press("#input", "Enter")
    page.wait_for_selector(f".msg.assistant:not(.streaming) >> text={answer}")
    page.wait_for_selector("#send:not([disabled])")


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"))


def push(page: Any, event: str, data: dict[str, Any]) -> None:
    """One event of the scripted reply stream."""
    page.evaluate("([e, d]) => window.__push(e, d)", [event, data])


def posts(page: Any, path: str) -> list[dict[str, Any]]:
    return [body for p, body in page.evaluate("window.__posts") if p == path]


def assert_readable(page: Any) -> None:
    """Contrast of every visible text ≥ 4.5:1, and no serious axe-core violation, in the light
    and in the dark colour scheme (prefers-color-scheme emulated); in the dark one no text may
    sit on a light background (the page stayed white). The page is left in the scheme it had."""
    was = "dark" if page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches") else "light"
    try:
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            contrast = page.evaluate(LOW_CONTRAST)
            assert contrast["checked"] > 10 and contrast["low"] == [], (scheme, contrast["low"])
            if scheme == "dark":
                assert contrast["bright"] == [], ("light backgrounds", contrast["bright"])
            violations = page.evaluate(AXE_RUN)
            assert violations == [], (scheme, violations)
    finally:
        page.emulate_media(color_scheme=was)
