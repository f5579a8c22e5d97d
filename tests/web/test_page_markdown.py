"""public/js/markdown.js alone in Chromium, without api.py, main.py or web.py: public/ is served
by a static server on 127.0.0.1, a blank page loads the module as a module script under a
script policy like web.py's (no inline script), and each test renders Markdown and reads back
the DOM it built. Every construct of the subset documented at the top of the module is checked;
hostile input (raw HTML, javascript: links, 1 MB strings shaped to make a regular expression
backtrack) must come out as inert text, quickly."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from tests.servers import ROOT
from tests.web_helpers import watched_page

pytestmark = pytest.mark.browser

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
    "tr th td a".split()
)
ATTRIBUTES = {"class", "start", "href", "target", "rel"}
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


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Static, directory=str(PUBLIC)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/__test__/blank.html"
        with watched_page(url, 15_000) as pg:
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


# ------------------------------------------------------------------ the module itself


def test_module_exports_render_and_sets_no_global(page: Any) -> None:
    shape = page.evaluate(
        """() => ({
            exports: Object.keys(window.markdown),
            global: 'SafeMarkdown' in window,
            fragment: window.markdown.render('x') instanceof DocumentFragment,
            empty: [null, undefined, ''].map(v => window.markdown.render(v).childNodes.length),
            number: window.markdown.render(42).textContent,
        })"""
    )
    assert shape == {
        "exports": ["render"],
        "global": False,
        "fragment": True,
        "empty": [0, 0, 0],
        "number": "42",
    }


def test_module_source_builds_no_html_strings() -> None:
    code = re.sub(r"/\*.*?\*/|^\s*//.*$", "", MODULE.read_text(), flags=re.S | re.M)
    sinks = r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment"
    assert not re.search(sinks + r"|DOMParser|\beval\(|new Function|setAttribute", code)


# ------------------------------------------------------------------ blocks


def test_headings_shift_two_levels_and_need_a_space(page: Any) -> None:
    src = "# One\n## Two ##\n### Three\n#### Four\n###### Six #\n####### Seven\n#NoSpace\n# "
    assert md(page, src) == [
        ["h3", "One"],
        ["h4", "Two"],
        ["h5", "Three"],
        ["h6", "Four"],
        ["h6", "Six"],
        ["p", "####### Seven", ["br"], "#NoSpace"],
        ["h3"],
    ]
    assert md(page, "## *Big* `sale`") == [["h4", ["em", "Big"], " ", ["code", "sale"]]]


def test_paragraphs_and_line_breaks(page: Any) -> None:
    assert md(page, "one\ntwo\r\nthree\n\n\nfour\r") == [
        ["p", "one", ["br"], "two", ["br"], "three"],
        ["p", "four"],
    ]


def test_fenced_code_is_verbatim(page: Any) -> None:
    src = "```py\nx = '<b>**not bold**</b>'\n\n  # indented\n```\nafter"
    assert md(page, src) == [
        ["pre", ["code", {"class": "lang-py"}, "x = '<b>**not bold**</b>'\n\n  # indented"]],
        ["p", "after"],
    ]
    assert md(page, "~~~\n[a](https://example.com)\n~~~") == [
        ["pre", ["code", "[a](https://example.com)"]]
    ]
    # unclosed: runs to the end
    assert md(page, "```\nopen\n- not a list") == [["pre", ["code", "open\n- not a list"]]]
    # an odd language name is not a fence: text, and the next fence opens an empty block
    assert md(page, '```js"onload\n```') == [["p", '```js"onload'], ["pre", ["code"]]]


def test_thematic_breaks(page: Any) -> None:
    assert md(page, "a\n\n---\n***\n_ _ _\n--") == [["p", "a"], ["hr"], ["hr"], ["hr"], ["p", "--"]]


def test_blockquotes_hold_blocks(page: Any) -> None:
    src = "> quoted _text_\n> - item\n> > nested\n\nafter"
    assert md(page, src) == [
        [
            "blockquote",
            ["p", "quoted ", ["em", "text"]],
            ["ul", ["li", "item"]],
            ["blockquote", ["p", "nested"]],
        ],
        ["p", "after"],
    ]


def test_lists(page: Any) -> None:
    assert md(page, "- one\n* two\n+ **three**") == [
        ["ul", ["li", "one"], ["li", "two"], ["li", ["strong", "three"]]]
    ]
    assert md(page, "1. first\n2. second") == [["ol", ["li", "first"], ["li", "second"]]]
    assert md(page, "3. three\n4) four") == [
        ["ol", {"start": "3"}, ["li", "three"], ["li", "four"]]
    ]
    nested = "- outer\n  - inner `x`\n  1. numbered\n- next\n\n- after a blank line\n\ntext"
    assert md(page, nested) == [
        [
            "ul",
            [
                "li",
                ["p", "outer"],
                ["ul", ["li", "inner ", ["code", "x"]]],
                ["ol", ["li", "numbered"]],
            ],
            ["li", "next"],
            ["li", "after a blank line"],
        ],
        ["p", "text"],
    ]
    loose = "- a\n  still a\n\n  second paragraph of a\n- b"
    assert md(page, loose) == [
        [
            "ul",
            ["li", ["p", "a", ["br"], "still a"], ["p", "second paragraph of a"]],
            ["li", "b"],
        ]
    ]


def test_tables(page: Any) -> None:
    src = (
        "| id | name | qty |\n"
        "|---:|:----:|-----|\n"
        "| 1 | **Watch** \\| <b>x</b> | 5 | extra |\n"
        "| 2 |\n"
        "after"
    )
    right, center = {"class": "align-right"}, {"class": "align-center"}
    assert md(page, src) == [
        [
            "div",
            {"class": "table-wrap"},
            [
                "table",
                ["thead", ["tr", ["th", right, "id"], ["th", center, "name"], ["th", "qty"]]],
                [
                    "tbody",
                    [
                        "tr",
                        ["td", right, "1"],
                        ["td", center, ["strong", "Watch"], " | <b>x</b>"],
                        ["td", "5"],
                    ],
                    ["tr", ["td", right, "2"], ["td", center], ["td"]],
                ],
            ],
        ],
        ["p", "after"],
    ]
    # no separator row: not a table
    assert md(page, "a | b\nc | d") == [["p", "a | b", ["br"], "c | d"]]
    assert md(page, "a | b\n|-||") == [["p", "a | b", ["br"], "|-||"]]


# ------------------------------------------------------------------ inline


def test_emphasis_code_and_escapes(page: Any) -> None:
    src = "**b** __b__ *i* _i_ ~~d~~ `<b>c</b>` snake_case_name \\*lit\\* **bold _both_**"
    assert md(page, src) == [
        [
            "p",
            ["strong", "b"],
            " ",
            ["strong", "b"],
            " ",
            ["em", "i"],
            " ",
            ["em", "i"],
            " ",
            ["del", "d"],
            " ",
            ["code", "<b>c</b>"],
            " snake_case_name *lit* ",
            ["strong", "bold ", ["em", "both"]],
        ]
    ]
    # "__" closes only where no letter or digit follows
    assert md(page, "__init__ and __a__b__") == [
        ["p", ["strong", "init"], " and ", ["strong", "a__b"]]
    ]
    assert md(page, "** not** 2 * 3 * 4 `unclosed") == [["p", "** not** 2 * 3 * 4 `unclosed"]]


def test_links(page: Any) -> None:
    src = (
        "[docs](https://example.com/a_b) [mail](mailto:shop@example.com) "
        '[titled](https://example.com/t "a title") [angle](<https://example.com/y>) '
        "[**bold** label](http://example.com) see https://example.com/z?q=1."
    )
    assert md(page, src) == [
        [
            "p",
            link("https://example.com/a_b", "docs"),
            " ",
            link("mailto:shop@example.com", "mail"),
            " ",
            link("https://example.com/t", "titled"),
            " ",
            link("https://example.com/y", "angle"),
            " ",
            link("http://example.com/", "**bold** label"),  # a label is plain text
            " see ",
            link("https://example.com/z?q=1", "https://example.com/z?q=1"),
            ".",
        ]
    ]
    # images are not rendered: a "!" and a link
    assert md(page, "![pic](https://example.com/p.png)") == [
        ["p", "!", link("https://example.com/p.png", "pic")]
    ]
    # the earliest "[" before "](" opens the label, as before the module was rewritten
    assert md(page, "[[a](https://example.com)") == [["p", link("https://example.com/", "[a")]]


@pytest.mark.parametrize(
    "target",
    [
        "javascript:alert%281%29",
        "JaVaScRiPt:alert%281%29",
        "vbscript:msgbox",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "file:///etc/passwd",
        "ftp://example.com/f",
        "/relative/path",
        "relative.html",
        "#top",
    ],
)
def test_unsafe_link_targets_stay_text(page: Any, target: str) -> None:
    assert md(page, f"[x]({target})") == [["p", f"x ({target})"]]


def test_long_words_get_break_points(page: Any) -> None:
    word = "x" * 64 * 3 + "yz"
    assert md(page, f"a {word} b") == [
        ["p", "a " + "x" * 64, ["wbr"], "x" * 64, ["wbr"], "x" * 64, ["wbr"], "yz b"]
    ]
    assert md(page, "y" * 63) == [["p", "y" * 63]]


# ------------------------------------------------------------------ hostile input

HOSTILE = [
    "<script>alert('script')</script>",
    "<img src=x onerror=alert('img')>",
    "<svg onload=alert('svg')></svg>",
    "<iframe src=\"javascript:alert('iframe')\"></iframe>",
    "<a href=\"javascript:alert('a')\">html link</a>",
    "<body onload=alert('body')>",
    "<style>*{display:none}</style>",
    '" onmouseover="alert(\'attr\')" x="',
    "[md link](javascript:alert('md'))",
    "[md mixed case](JaVaScRiPt:alert('md2'))",
    "[md data](data:text/html,<script>alert('data')</script>)",
    "![md image](javascript:alert('image'))",
    "[quote](https://example.com/\"onmouseover=\"alert('q'))",
    '[title](https://example.com/ "x" onmouseover="alert(\'t\')")',
    "`<img src=x onerror=alert('code')>`",
    "```html\n<script>alert('fence')</script>\n```",
    "| <img src=x onerror=alert('cell')> |\n|---|\n| <script>alert('td')</script> |",
    "# <script>alert('heading')</script>",
    "- <img src=x onerror=alert('li')>",
    "> <iframe src=javascript:alert('quote')>",
    "javascript:alert('bare')",
]

# Every element and attribute under the box, and each link target.
INERT = """src => {
    const box = document.createElement('div');
    box.appendChild(window.markdown.render(src));
    document.body.appendChild(box);  // live in the document, where a handler could fire
    const all = [...box.querySelectorAll('*')];
    return {
        tags: [...new Set(all.map(e => e.localName))],
        attributes: [...new Set(all.flatMap(e => [...e.attributes].map(a => a.name)))],
        hrefs: [...box.querySelectorAll('a')].map(a => a.getAttribute('href')),
        text: box.textContent,
        scripts: document.scripts.length,
    };
}"""


def test_hostile_markup_stays_inert_text(page: Any) -> None:
    page.evaluate("() => { document.body.textContent = '' }")
    shape = page.evaluate(INERT, "\n\n".join(HOSTILE))
    page.wait_for_timeout(300)  # give any (wrongly) injected handler a chance to fire
    assert set(shape["tags"]) <= ELEMENTS, shape["tags"]
    assert set(shape["attributes"]) <= ATTRIBUTES, shape["attributes"]
    assert not {"script", "img", "svg", "iframe", "style", "body"} & set(shape["tags"])
    assert shape["hrefs"] == [
        "https://example.com/%22onmouseover=%22alert('q'",
        "https://example.com/",
    ]
    assert shape["scripts"] == 1  # the test harness only
    for raw in (
        "<script>alert('script')</script>",
        "<img src=x onerror=alert('img')>",
        "<svg onload=alert('svg')></svg>",
        "<a href=\"javascript:alert('a')\">html link</a>",
        "md link (javascript:alert('md')",
        "[md data](data:text/html,<script>alert('data')</script>)",  # ">" ends the URL
        "<img src=x onerror=alert('code')>",
        "<script>alert('fence')</script>",
        "<img src=x onerror=alert('cell')>",
        "<script>alert('heading')</script>",
        "javascript:alert('bare')",
    ):
        assert raw in shape["text"], raw
    assert page.dialogs == []
    assert page.js_errors == []


# Each case: (what, prefix, repeated unit, suffix). Several froze the page for minutes before
# the module's scans were made linear (a regular expression retrying a long run from every
# position); any such regression fails at the first size over budget instead of hanging.
MEGABYTE_CASES = [
    ("one long word", "", "A", ""),
    ("script tags", "", "<script>alert(1)</script>", ""),
    ("image tags", "", "<img src=x onerror=alert(1)>", ""),
    ("unclosed [", "", "[", ""),
    ("[label](url without )", "", "[a](x", ""),
    ("[label](<url without )", "", "[a](<", ""),
    ("__ never closed", "", "__a", ""),
    ("bare URLs", "", "https://x.y/(", ""),
    ("heading ending in spaces", "# a", " ", "b"),
    ("heading ending in #", "# ", "#", "x"),
    ("list item after spaces", "- ", " ", "a\u2028b"),
    ("table separator of spaces", "a|b\n", " ", "x"),
    ("table separator ending in spaces", "a|b\n|-", " ", "x"),
]
SIZES = [2_048, 16_384, 131_072, 1_048_576]

# Renders prefix + unit * n + suffix (built in the page: no megabyte crosses the wire) and
# returns the time render() took and whether the text came through: all of it, less only the
# block marker that was applied ("# ", "- ") and the line breaks.
MEGABYTE = """([prefix, unit, suffix, size]) => {
    const n = Math.ceil((size - prefix.length - suffix.length) / unit.length);
    const src = prefix + unit.repeat(n) + suffix;
    const t0 = performance.now();
    const fragment = window.markdown.render(src);
    const ms = performance.now() - t0;
    const box = document.createElement('div');
    box.appendChild(fragment);
    const want = src.replace(/^[-#] /, '').replace(/\\n/g, '').trim();
    return {
        ms,
        size: src.length,
        textIntact: box.textContent === want,
        tags: [...new Set([...box.querySelectorAll('*')].map(e => e.localName))],
    };
}"""


@pytest.mark.parametrize(
    ("prefix", "unit", "suffix"),
    [case[1:] for case in MEGABYTE_CASES],
    ids=[case[0] for case in MEGABYTE_CASES],
)
def test_megabyte_inputs_render_fast_as_text(
    page: Any, prefix: str, unit: str, suffix: str
) -> None:
    for size in SIZES:
        budget_ms = 500 + 5 * size / 1024  # linear: 0.5 s for 2 KB, 5.6 s for 1 MB
        shape = page.evaluate(MEGABYTE, [prefix, unit, suffix, size])
        assert shape["size"] >= size
        assert shape["ms"] < budget_ms, f"{size} characters took {shape['ms']:.0f} ms"
        assert shape["textIntact"], shape
        assert set(shape["tags"]) <= ELEMENTS - {"img", "script"}, shape["tags"]
    assert page.dialogs == []
