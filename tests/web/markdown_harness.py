"""What the markdown.js page tests share: public/ served by a static server on 127.0.0.1 with
a script policy like web.py's (no inline script), a blank page that loads the module as a
module script, and the rendered DOM read back as JSON (`md`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from tests.servers import ROOT
from tests.web_helpers import watched_page

PUBLIC = ROOT / "public"
MODULE = PUBLIC / "js" / "markdown.js"
# A blank page that imports the module the way index.html does, under the same script policy
# (no inline script): only then does window.markdown exist.
BLANK = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>markdown.js</title>
<script type="module" src="/__test__/harness.js"></script></head><body></body></html>"""
HARNESS = b'import * as markdown from "/js/markdown.js";\nwindow.markdown = markdown;\n'
SYNTHETIC = {
    "/__test__/blank.html": ("text/html; charset=utf-8", BLANK),
    "/__test__/harness.js": ("text/javascript", HARNESS),
}
CSP = "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'"

# What the module's header comment promises: the only elements and attributes it creates.
ELEMENTS = set(
    "p br wbr h3 h4 h5 h6 strong em del code pre blockquote ul ol li hr div table thead tbody "
    "tr th td a label input".split()
)
ATTRIBUTES = {"class", "start", "href", "target", "rel", "type", "disabled", "checked"}
REL = "noopener noreferrer nofollow"


class _Static(SimpleHTTPRequestHandler):
    """public/ as files, plus the two synthetic test files; every response carries the CSP."""

    extensions_map: ClassVar[dict[str, str]] = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
    }

    def end_headers(self) -> None:
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_GET(self) -> None:
        if self.path not in SYNTHETIC:
            return super().do_GET()
        kind, body = SYNTHETIC[self.path]
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return None

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def blank_page(browser: Any) -> Iterator[Any]:
    """Chromium on a blank page with window.markdown loaded; no script error by the end."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Static, directory=str(PUBLIC)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/__test__/blank.html"
        with watched_page(url, 15_000, browser) as pg:
            pg.wait_for_function("() => window.markdown !== undefined")
            yield pg
            assert pg.js_errors == [], pg.js_errors
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# The rendered fragment as JSON: a text node is its string (adjacent ones merged), an element
# is [tag, {attributes}, ...children] with the attributes left out when there are none.
TREE = """src => {
    const box = document.createElement('div');
    box.appendChild(window.markdown.render(src));
    box.normalize();
    const tree = n => {
        if (n.nodeType === Node.TEXT_NODE) return n.data;
        const kids = [...n.childNodes].map(tree);
        if (!n.attributes.length) return [n.localName, ...kids];
        const attrs = Object.fromEntries([...n.attributes].map(a => [a.name, a.value]));
        return [n.localName, attrs, ...kids];
    };
    return [...box.childNodes].map(tree);
}"""


def md(page: Any, src: str) -> list[Any]:
    return page.evaluate(TREE, src)


def link(href: str, *children: Any) -> list[Any]:
    return ["a", {"href": href, "target": "_blank", "rel": REL}, *children]
