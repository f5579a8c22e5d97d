"""public/js/markdown.js alone in Chromium, without api.py, main.py or web.py: public/ is served
by a static server on 127.0.0.1, a blank page loads the module as a module script under a
script policy like web.py's (no inline script), and each test renders Markdown and reads back
the DOM it built. Every construct of the subset documented at the top of the module is checked;
hostile input: test_page_markdown_hostile.py. Shared harness: markdown_harness.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.web.markdown_harness import MODULE, blank_page, link, md

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(browser: Any) -> Iterator[Any]:
    with blank_page(browser) as pg:
        yield pg


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


BOX = ["input", {"type": "checkbox", "class": "task-box", "disabled": ""}]
TICKED = ["input", {"type": "checkbox", "class": "task-box", "disabled": "", "checked": ""}]


def test_task_lists(page: Any) -> None:
    """Found by a new user: "- [x] done" showed as the text "[x] done". A task item is a
    disabled checkbox labelled by the item's words; anything else after "[ ]" stays text."""
    src = "- [x] done *item*\n- [ ] todo\n* [X] also done\n- [] no box\n- [ ]\n- [x] # no title"
    assert md(page, src) == [
        [
            "ul",
            ["li", {"class": "task"}, ["label", TICKED, "done ", ["em", "item"]]],
            ["li", {"class": "task"}, ["label", BOX, "todo"]],
            ["li", {"class": "task"}, ["label", TICKED, "also done"]],
            ["li", "[] no box"],
            ["li", "[ ]"],
            ["li", "[x] # no title"],
        ]
    ]
    nested = "1. [ ] first\n   - [x] nested\n2. [ ] <img src=x onerror=alert(1)>"
    assert md(page, nested) == [
        [
            "ol",
            [
                "li",
                {"class": "task"},
                ["p", ["label", BOX, "first"]],
                ["ul", ["li", {"class": "task"}, ["label", TICKED, "nested"]]],
            ],
            ["li", {"class": "task"}, ["label", BOX, "<img src=x onerror=alert(1)>"]],
        ]
    ]
    boxes = page.evaluate(
        """src => { const box = document.createElement('div');
            box.appendChild(window.markdown.render(src));
            document.body.appendChild(box);
            const found = [...box.querySelectorAll('input')].map(i =>
                [i.checked, i.disabled, i.labels.length === 1 && i.labels[0].textContent]);
            box.remove();
            return found; }""",
        "- [x] bought\n- [ ] to buy",
    )
    assert boxes == [[True, True, "bought"], [False, True, "to buy"]]


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


@pytest.mark.parametrize(
    "joined",
    [
        "🎉",  # two UTF-16 code units: cut between them, each half showed as "�"
        "e\u0301",  # a letter and its combining accent
        "👩\u200d💻",  # a ZWJ sequence
        "👍🏽",  # an emoji and its skin tone
        "🇺🇸",  # a flag: two regional indicators (review)
    ],
)
def test_break_points_never_split_a_character(page: Any, joined: str) -> None:
    """Found from outside: Japanese text with an emoji across the 64th UTF-16 code unit showed
    "��"; a break point now goes after the whole character."""
    for before in (62, 63):
        words = md(page, "あ" * before + joined + "い" * 70)
        [[_, *parts]] = words
        chunks = [p for p in parts if isinstance(p, str)]
        assert "".join(chunks) == "あ" * before + joined + "い" * 70
        assert any(joined in c for c in chunks), chunks
