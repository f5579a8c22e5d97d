"""Shared bits of the web.py tests: start web.py against a given mcp.json, read its SSE stream."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import ROOT, Service, free_port, start

EVERYTHING = ROOT / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist"
CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() == "true"

Event = tuple[str, dict[str, Any]]
Client = Any  # an httpx.Client, or Starlette's TestClient (an httpx2.Client)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def need(ok: bool, why: str) -> None:
    """Skip when a tool is missing, except in CI where a missing tool is a failure."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"{why} (CI=true: required)")
    pytest.skip(why)


def need_node() -> None:
    need(
        shutil.which("node") is not None and (EVERYTHING / "index.js").exists(),
        "node or @modelcontextprotocol/server-everything not installed (npm ci)",
    )


def write_config(path: Path, servers: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}, indent=2))
    return path


# Every web.py setting a test relies on, pinned so a developer's .env cannot leak in (for
# web.py as a process and as an in-process app, tests/inproc.py).
WEB_SETTINGS = {
    "OPENAI_API_KEY": "",
    "OPENAI_API_BASE": "http://127.0.0.1:9/v1",
    "LLM_MODEL": "fake-model",
    "MAX_TOOL_ROUNDS": "8",
    "TOOL_APPROVAL": "ask",
    "TOOL_CALL_TIMEOUT": "30",
    "CORS_ORIGINS": "",
    "LLM_TIMEOUT": "10",
    "LLM_MAX_RETRIES": "0",
}


def start_web(config: Path, env: dict[str, str] | None = None) -> Service:
    """web.py on a free port, every setting pinned so a developer's .env cannot leak in."""
    port = free_port()
    return start(
        ["web.py", "--host", "127.0.0.1", "--port", str(port)],
        port=port,
        env={**WEB_SETTINGS, "MCP_CONFIG_PATH": str(config), **(env or {})},
    )


@contextmanager
def http_to(target: Service | Client, timeout: float = 10) -> Iterator[Client]:
    """A client on a service process, or the given client (an in-process app's)."""
    if not isinstance(target, Service):
        yield target
        return
    with httpx.Client(base_url=target.url, timeout=timeout) as client:
        yield client


def chat_stream(
    web: Service | Client,
    body: dict[str, Any],
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
    timeout: float = 60,
) -> list[Event]:
    """POST /api/chat/stream and collect (event, data) pairs until the stream ends."""
    events: list[Event] = []
    with (
        http_to(web) as http,
        http.stream("POST", "/api/chat/stream", json=body, timeout=timeout) as r,
    ):
        assert r.status_code == 200, r.read().decode()
        assert r.headers["content-type"].startswith("text/event-stream")
        kind, data = "message", []
        for line in r.iter_lines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                payload = json.loads("\n".join(data))
                events.append((kind, payload))
                if on_event is not None:
                    on_event(kind, payload)
                kind, data = "message", []
    return events


def approve(web: Service | Client, approval_id: str, approved: bool) -> None:
    with http_to(web) as http:
        r = http.post(
            "/api/chat/approve",
            json={"approvalId": approval_id, "approved": approved},
            timeout=10,
        )
    assert r.status_code == 200, r.text


def answer_elicitation(
    web: Service | Client, elicitation_id: str, action: str, content: Any = None
) -> httpx.Response:
    """POST /api/chat/elicitation (issue 14): the page's answer to a server's question."""
    body = {"elicitationId": elicitation_id, "action": action}
    if content is not None:
        body["content"] = content
    with http_to(web) as http:
        return http.post("/api/chat/elicitation", json=body, timeout=10)


def stock(api: Service | Client, product_id: int) -> int:
    with http_to(api) as http:
        inventory = http.get("/api/inventory").json()
    return next(i["quantity"] for i in inventory if i["productId"] == product_id)


# Chromium preloads its omnibox popup (two WebUI renderers) for every window, and Playwright
# opens a window per context: ~0.2 s of CPU per page for something a headless test never
# shows. Chromium reads only the last --disable-features flag, and Playwright passes its own
# list in one: ours repeats that list (read from the first browser's command line) and adds
# these.
UNSHOWN_FEATURES = ["WebUIOmniboxPopup", "WebUIOmniboxAimPopup", "WebUIOmniboxFullPopup"]


class _SharedChromium:
    """This test process's one Chromium and the Playwright session that drives it."""

    playwright: Any = None
    browser: Any = None
    features: list[str] | None = None  # the --disable-features flag to add, once known


_SHARED = _SharedChromium()


def shared_chromium() -> Any:
    """Debian's Chromium, headless (Playwright cannot fetch its own here), launched on first
    use and kept while the modules this process runs one after another use it: tests/conftest.py
    releases it before a module that does not. A launch costs ~0.9 s of CPU and the Playwright
    driver ~0.8 s more, a new context ~0.4 s: every page gets a context of its own."""
    if _SHARED.browser is not None and _SHARED.browser.is_connected():
        return _SHARED.browser
    release_chromium()  # a browser that died: its driver goes too
    need(CHROMIUM.exists(), f"{CHROMIUM} not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        browser = _launch(playwright)
        if _SHARED.features is None:
            _SHARED.features = _disable_features_flag()
            if _SHARED.features:
                browser.close()
                browser = _launch(playwright)
    except BaseException:
        playwright.stop()
        raise
    _SHARED.playwright, _SHARED.browser = playwright, browser
    return browser


def _launch(playwright: Any) -> Any:
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS + (_SHARED.features or [])
    )


def _disable_features_flag() -> list[str]:
    """`--disable-features=` with Playwright's list (from the command line of the Chromium
    this process just launched) and UNSHOWN_FEATURES; none if that browser is not found."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, IndexError, ValueError):
                continue
    mine, changed = {os.getpid()}, True
    while changed:
        found = {pid for pid, parent in parents.items() if parent in mine} - mine
        mine |= found
        changed = bool(found)
    for pid in mine:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if argv[0].endswith("/chromium") and not any(a.startswith("--type=") for a in argv):
            theirs = [a.split("=", 1)[1] for a in argv if a.startswith("--disable-features=")]
            return [f"--disable-features={','.join([*theirs[-1:], *UNSHOWN_FEATURES])}"]
    return []


def release_chromium() -> None:
    """Close the shared Chromium and stop its Playwright driver. Playwright's sync API marks
    its event loop as this thread's running loop between calls, so no asyncio test (anyio,
    `asyncio.run`) can run in this process until it has stopped."""
    playwright, browser = _SHARED.playwright, _SHARED.browser
    _SHARED.playwright = _SHARED.browser = None
    if playwright is None:
        return
    try:
        if browser.is_connected():
            browser.close()
    finally:
        playwright.stop()


@contextmanager
def watched_page(url: str, timeout_ms: int, browser: Any) -> Iterator[Any]:
    """A page in a context of its own (its own storage) in `browser` (the `browser` fixture)
    that records every dialog (`page.dialogs`) and uncaught script error (`page.js_errors`)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        pg = context.new_page()
        pg.dialogs, pg.js_errors = [], []
        pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
        pg.on("pageerror", lambda e: pg.js_errors.append(str(e)))
        pg.set_default_timeout(timeout_ms)
        pg.goto(url)
        yield pg
    finally:
        context.close()


async def take_body(receive: Any) -> tuple[bytes, Any]:
    """For a hostile server written as ASGI middleware: the request's whole body, and a
    `receive` that gives it again, then what the client sends next (its disconnect), so the
    wrapped app can still read it."""
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    given = False

    async def again() -> dict[str, Any]:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, again
