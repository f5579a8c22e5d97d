"""Pictures, sounds and resources of tool results on the page (issue #11), in Chromium against
a real web.py: tests/media_mcp.py over Streamable HTTP, its --hostile twin over stdio and the
reference server over stdio, the scripted LLM for a chat turn.

What must hold: the hand-run form and a chat tool card show an <img> that really decodes and
an <audio> that really loads (the CSP's media-src allows data:), from data: URLs of allowed
types only; embedded text as text, http(s) links as links and every other URI as text;
whatever the server or a tampered response sends, no other element, URL or handler appears.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_llm import Calls, FakeLLM, Reply
from tests.media_mcp import BAD_LINKS, PNG, SAFE_LINK, SVG, wav
from tests.media_mcp import HOSTILE_HTML as HTML
from tests.servers import ROOT, Service, start
from tests.stack import Stack, stack_fixture
from tests.web_helpers import CHROMIUM, EVERYTHING, need, need_node, watched_page

pytestmark = pytest.mark.browser

ALLOWED_SRC = re.compile(
    r"^data:(image/(png|jpeg|gif|webp)|audio/(wav|mpeg|ogg|webm));base64,[A-Za-z0-9+/]+={0,2}$"
)

# Everything under a selector, as plain data: its tags, img/audio src, links (href, text, rel),
# on* attribute names, and its visible text.
SNAPSHOT = """(sel) => {
  const root = document.querySelector(sel);
  const els = root ? [...root.querySelectorAll('*')] : [];
  return {
    tags: els.map(e => e.tagName.toLowerCase()),
    imgs: els.filter(e => e.tagName === 'IMG').map(e => e.getAttribute('src')),
    audios: els.filter(e => e.tagName === 'AUDIO').map(e => e.getAttribute('src')),
    links: els.filter(e => e.tagName === 'A').map(e => [e.getAttribute('href'), e.textContent,
                                                         e.getAttribute('rel')]),
    handlers: els.flatMap(e => [...e.attributes].map(a => a.name)
                                  .filter(n => n.startsWith('on'))),
    text: root ? root.innerText : '',
  };
}"""

# A CSP report listener, installed before any tool runs.
WATCH_CSP = """() => {
  window.__csp = [];
  document.addEventListener('securitypolicyviolation',
    e => window.__csp.push(e.violatedDirective + ' ' + String(e.blockedURI).slice(0, 40)));
}"""

DECODE = """async (img) => { await img.decode(); return [img.naturalWidth, img.naturalHeight]; }"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ------------------------------------------------------------------ the stack


@stack_fixture
def media(s: Stack) -> None:
    """web.py with tests/media_mcp.py (Streamable HTTP) and its --hostile twin (stdio),
    and the scripted LLM."""
    need(CHROMIUM.exists(), f"{CHROMIUM} not installed (apt-get install chromium)")
    port = s.port("media_mcp")
    s.add("media_mcp", start(["-m", "tests.media_mcp", "--port", str(port)], port=port))
    fake = s.fake_llm()
    hostile = {
        "command": sys.executable,
        "args": ["-m", "tests.media_mcp", "--hostile"],
        "cwd": str(ROOT),
    }
    s.web(
        {"media": {"url": f"{s['media_mcp'].url}/mcp"}, "hostile": hostile},
        {"OPENAI_API_KEY": "k", "OPENAI_API_BASE": fake.base_url},
    )


@pytest.fixture
def web(media: Stack) -> Service:
    return media["web"]


@pytest.fixture
def fake(media: Stack) -> FakeLLM:
    return media["fake"]


def open_page(url: str, browser: Any) -> Any:
    """A page of its own (a new context: its own storage) in the module's Chromium."""
    return watched_page(url + "/", 15_000, browser)


@pytest.fixture
def page(web: Service, browser: Any) -> Iterator[Any]:
    with open_page(web.url, browser) as pg:
        pg.wait_for_selector(".server[data-server='media'] .dot.connected")
        pg.wait_for_selector(".server[data-server='hostile'] .dot.connected")
        pg.evaluate(WATCH_CSP)
        yield pg
        pg.wait_for_timeout(200)  # give any (wrongly) injected handler a chance to fire
        assert pg.dialogs == [], pg.dialogs
        assert pg.js_errors == [], pg.js_errors
        assert pg.evaluate("window.__csp") == []


def run_tool(page: Any, server: str, tool: str) -> dict[str, Any]:
    """Run a tool without arguments from the hand-run form; the output and media snapshot."""
    page.click(f".server[data-server='{server}'] button.tool-btn[data-tool='{tool}']")
    page.click("#runner-form button[type=submit]")
    page.wait_for_function(
        "() => { const o = document.getElementById('runner-output');"
        " return !o.hidden && o.textContent !== 'Running…'; }"
    )
    return {"output": page.inner_text("#runner-output"), **page.evaluate(SNAPSHOT, "#runner-media")}


def assert_inert(snap: dict[str, Any]) -> None:
    """No handler attribute, no URL but checked data: ones and http(s) links, no active tag."""
    assert snap["handlers"] == [], snap
    assert all(ALLOWED_SRC.match(s) for s in snap["imgs"] + snap["audios"]), snap
    assert all(h.startswith(("http://", "https://")) for h, _, _ in snap["links"]), snap
    assert not {"script", "iframe", "object", "embed", "svg", "video", "source"} & set(
        snap["tags"]
    ), snap


# ------------------------------------------------------------------ the hand-run form


def test_csp_allows_data_media_and_nothing_broader(web: Service) -> None:
    csp = httpx.get(web.url + "/", timeout=10).headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["media-src"] == "'self' data:"
    assert directives["img-src"] == "'self' data:"
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["object-src"] == "'none'"


def test_form_shows_the_picture_between_its_text(page: Any) -> None:
    snap = run_tool(page, "media", "picture")
    # the text result is shown as before, stand-in included
    assert snap["output"] == (
        f"Here is the picture:\n[image: image/png, {len(PNG)} bytes]\nNice, isn't it?"
    )
    assert snap["imgs"] == [f"data:image/png;base64,{b64(PNG)}"]
    assert snap["audios"] == [] and snap["links"] == []
    img = page.query_selector("#runner-media img")
    assert img.evaluate(DECODE) == [2, 2], "the picture really decoded"
    assert img.is_visible()
    assert "image/png" in (img.get_attribute("alt") or "")
    assert_inert(snap)

    # a plain tool afterwards: the picture goes, nothing else appears
    page.click(".server[data-server='media'] button.tool-btn[data-tool='echo']")
    page.fill("#arg-text", "hi")
    page.click("#runner-form button[type=submit]")
    page.wait_for_selector("#runner-output >> text=echo: hi")
    assert page.is_hidden("#runner-media")
    assert page.locator("#runner-media *").count() == 0


def test_form_plays_the_sound(page: Any) -> None:
    snap = run_tool(page, "media", "sound")
    sound = wav()
    assert snap["audios"] == [f"data:audio/wav;base64,{b64(sound)}"]
    assert snap["imgs"] == []
    audio = page.query_selector("#runner-media audio")
    assert audio.evaluate("a => a.controls") is True
    # it loads: blocked by CSP (no media-src data:) or not decodable, it would stay at 0
    page.wait_for_function("() => document.querySelector('#runner-media audio').readyState >= 1")
    duration = audio.evaluate("a => a.duration")
    assert abs(duration - 3000 / 8000) < 0.01, duration
    assert audio.evaluate("a => a.error") is None
    assert_inert(snap)


def test_form_shows_resources_and_an_https_link(page: Any) -> None:
    snap = run_tool(page, "media", "resources")
    assert "a note" in snap["text"] and "memo://note" in snap["text"]
    assert page.inner_text("#runner-media pre.resource-text") == "a note"
    assert snap["imgs"] == [f"data:image/png;base64,{b64(PNG)}"]  # the PNG blob resource
    assert page.query_selector("#runner-media img").evaluate(DECODE) == [2, 2]
    assert "file:///data.bin" in snap["text"] and "application/octet-stream" in snap["text"]
    assert snap["links"] == [["https://example.com/x", "x", "noopener noreferrer"]]
    assert page.get_attribute("#runner-media a", "target") == "_blank"
    assert_inert(snap)


def test_form_describes_unsafe_and_oversized_pictures(page: Any) -> None:
    snap = run_tool(page, "media", "unsafe")
    assert snap["imgs"] == [] and snap["audios"] == []
    assert "image/svg+xml is not shown" in snap["text"]
    assert "the data is not a PNG image" in snap["text"]
    assert "not valid base64" in snap["text"]
    assert "text/html is not shown" in snap["text"]
    assert page.locator("#runner-media .media-omitted").count() == 4
    assert_inert(snap)

    snap = run_tool(page, "media", "big_picture")
    assert snap["imgs"] == [] and "larger than" in snap["text"]


def test_hostile_links_and_markup_stay_text(page: Any) -> None:
    snap = run_tool(page, "hostile", "links")
    # only the https link is clickable; its HTML-looking name is text
    assert snap["links"] == [[SAFE_LINK, f"safe {HTML}", "noopener noreferrer"]]
    for uri, name in BAD_LINKS:
        assert name in snap["text"] and uri in snap["text"]
    assert snap["imgs"] == [] and "img" not in snap["tags"] and "script" not in snap["tags"]
    assert_inert(snap)

    snap = run_tool(page, "hostile", "markup")
    assert page.inner_text("#runner-media pre.resource-text") == HTML
    assert snap["imgs"] == [] and "img" not in snap["tags"]
    assert "image/svg+xml is not shown" in snap["text"]
    assert "file:///evil.svg" in snap["text"]
    assert_inert(snap)


def test_page_checks_content_itself(page: Any) -> None:
    """A response web.py would never send (a proxy, a bug): the page still draws only checked
    types from plain base64 and http(s) links; one good picture and sound still show."""
    png = b64(PNG)
    items = [
        {"type": "image", "mimeType": "image/svg+xml", "data": b64(SVG)},
        {"type": "image", "mimeType": 'image/png" onerror="alert(1)', "data": png},
        {"type": "image", "mimeType": "image/png", "data": png + '" onerror="alert(2)'},
        {"type": "image", "mimeType": "image/png", "data": f"{png[:8]},<svg onload=alert(3)>"},
        {"type": "image", "mimeType": "IMAGE/PNG", "data": png},
        {"type": "image", "mimeType": "image/png", "data": {"not": "a string"}},
        {"type": "audio", "mimeType": "text/html", "data": b64(b"<script>alert(4)</script>")},
        {"type": "audio", "mimeType": "image/png", "data": png},
        {"type": "resource", "uri": "x:y", "mimeType": "image/svg+xml", "data": b64(SVG)},
        {"type": "resource", "uri": "x:z", "mimeType": "text/html", "data": b64(HTML.encode())},
        {"type": "resource_link", "uri": "javascript:alert(5)", "name": "js"},
        {"type": "resource_link", "uri": " javascript:alert(6)", "name": "js2"},
        {"type": "resource_link", "uri": "java\tscript:alert(7)", "name": "js3"},
        {"type": "resource_link", "uri": {"x": 1}, "name": "obj"},
        {"type": "iframe", "src": "https://evil.example/"},
        None,
        "<img src=x onerror=alert(8)>",
        {"type": "text", "text": HTML},
        {"type": "image", "mimeType": "image/png", "data": png},
        {"type": "audio", "mimeType": "audio/wav", "data": b64(wav())},
    ]
    body = {"result": "tampered", "isError": False, "durationMs": 1, "content": items}
    page.route(
        "**/api/call-tool",
        lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(body)
        ),
    )
    snap = run_tool(page, "media", "picture")
    assert snap["output"] == "tampered"
    assert snap["imgs"] == [f"data:image/png;base64,{png}"]
    assert snap["audios"] == [f"data:audio/wav;base64,{b64(wav())}"]
    assert snap["links"] == []
    assert page.query_selector("#runner-media img").evaluate(DECODE) == [2, 2]
    assert HTML in snap["text"] and "unknown type" in snap["text"]
    assert "img" in snap["tags"] and snap["tags"].count("img") == 1
    assert_inert(snap)


# ------------------------------------------------------------------ the chat


def test_chat_tool_card_shows_the_picture_and_keeps_it_after_reload(
    page: Any, fake: FakeLLM
) -> None:
    q = "show me the picture"
    fake.script(q, Calls(("picture", {})), Reply("There it is."))
    page.fill("#input", q)
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.assistant:not(.streaming) >> text=There it is.")
    card = ".tool-card.ok[data-tool='picture']"
    stand_in = f"[image: image/png, {len(PNG)} bytes]"
    assert stand_in in page.inner_text(f"{card} pre.result")
    snap = page.evaluate(SNAPSHOT, card)
    assert snap["imgs"] == [f"data:image/png;base64,{b64(PNG)}"]
    assert page.query_selector(f"{card} img").evaluate(DECODE) == [2, 2]
    # the text blocks are in the result already, so the card does not repeat them
    assert page.locator(f"{card} .media-text").count() == 0
    assert_inert(snap)
    # no base64 in what the model read
    [tool_msg] = [m for m in fake.requests_for(q)[-1]["messages"] if m["role"] == "tool"]
    assert b64(PNG) not in tool_msg["content"] and stand_in in tool_msg["content"]

    page.reload()
    page.wait_for_selector(f"{card} img")
    assert page.query_selector(f"{card} img").evaluate(DECODE) == [2, 2]
    page.evaluate(WATCH_CSP)


def test_full_storage_keeps_the_chat_without_the_pictures(page: Any, fake: FakeLLM) -> None:
    """localStorage refusing the base64 (as when full): the chat is still saved, the picture
    is described after a reload instead of the whole conversation being lost."""
    page.add_init_script(
        """(() => {
          const set = Storage.prototype.setItem;
          Storage.prototype.setItem = function (k, v) {
            const full = new DOMException('full', 'QuotaExceededError');
            if (String(v).includes('"data":"')) throw full;
            return set.call(this, k, v);
          };
        })()"""
    )
    page.reload()
    page.wait_for_selector(".server[data-server='media'] .dot.connected")
    q = "the picture, storage full"
    fake.script(q, Calls(("picture", {})), Reply("Stored."))
    page.fill("#input", q)
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.assistant:not(.streaming) >> text=Stored.")
    card = ".tool-card.ok[data-tool='picture']"
    assert page.query_selector(f"{card} img").evaluate(DECODE) == [2, 2]
    page.reload()
    page.wait_for_selector(".msg.assistant >> text=Stored.")
    assert page.locator(f"{card} img").count() == 0
    assert "not kept in this browser's storage" in page.inner_text(f"{card} .media-list")
    assert "[image: image/png, " in page.inner_text(f"{card} pre.result")
    page.evaluate(WATCH_CSP)


def test_chat_tool_card_plays_sound_and_keeps_hostile_links_text(page: Any, fake: FakeLLM) -> None:
    q = "a sound and some links"
    fake.script(q, Calls(("media/sound", {}), ("hostile/links", {})), Reply("Done."))
    page.fill("#input", q)
    page.press("#input", "Enter")
    page.wait_for_selector(".msg.assistant:not(.streaming) >> text=Done.")
    sound = page.evaluate(SNAPSHOT, ".tool-card.ok[data-tool='sound']")
    assert sound["audios"] == [f"data:audio/wav;base64,{b64(wav())}"]
    page.wait_for_function(
        "() => document.querySelector(\".tool-card[data-tool='sound'] audio\").readyState >= 1"
    )
    links = page.evaluate(SNAPSHOT, ".tool-card.ok[data-tool='links']")
    assert links["links"] == [[SAFE_LINK, f"safe {HTML}", "noopener noreferrer"]]
    for uri, _ in BAD_LINKS:
        assert uri in links["text"]
    assert_inert(sound)
    assert_inert(links)


# ------------------------------------------------------------------ the reference server


@pytest.mark.node
def test_reference_server_tiny_image_over_stdio(tmp_path: Path, browser: Any) -> None:
    need_node()
    with Stack(tmp_path) as s:
        fake = s.fake_llm()
        everything = {"command": "node", "args": [str(EVERYTHING / "index.js"), "stdio"]}
        web = s.web(
            {"everything": everything}, {"OPENAI_API_KEY": "k", "OPENAI_API_BASE": fake.base_url}
        )
        with open_page(web.url, browser) as page:
            page.wait_for_selector(".server[data-server='everything'] .dot.connected")
            page.evaluate(WATCH_CSP)
            snap = run_tool(page, "everything", "get-tiny-image")
            assert len(snap["imgs"]) == 1 and snap["imgs"][0].startswith("data:image/png;base64,")
            width, height = page.query_selector("#runner-media img").evaluate(DECODE)
            assert width > 0 and height > 0
            assert "[image: image/png, " in snap["output"]
            assert_inert(snap)

            q = "tiny image please"
            fake.script(q, Calls(("get-tiny-image", {})), Reply("Tiny."))
            page.fill("#input", q)
            page.press("#input", "Enter")
            img = page.wait_for_selector(".tool-card.ok[data-tool='get-tiny-image'] img")
            assert img.evaluate(DECODE)[0] > 0
            assert page.evaluate("window.__csp") == [] and page.dialogs == []
            assert page.js_errors == []
