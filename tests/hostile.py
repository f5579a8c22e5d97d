"""Hostile markup, one list for every test that feeds it to the page: raw HTML with scripts
and event handlers, javascript:, data: and vbscript: links in HTML and in Markdown, attribute
breakouts, and the same inside code, tables, headings, lists and quotes. Whatever renders it
(markdown.js alone, a tool result, a model reply, a product description) must show it as inert
text. Tests that pick entries by index rely on the first ones keeping their places."""

from __future__ import annotations

HOSTILE_MARKUP = [
    "<script>alert('script')</script>",
    "<img src=x onerror=alert('img')>",
    "<svg onload=alert('svg')></svg>",
    "<iframe src=\"javascript:alert('iframe')\"></iframe>",
    "<a href=\"javascript:alert('a')\">html link</a>",
    "<body onload=alert('body')>",
    '" onmouseover="alert(\'attr\')" x="',
    "[md link](javascript:alert('md'))",
    "[md mixed case](JaVaScRiPt:alert('md2'))",
    "[md data](data:text/html,<script>alert('data')</script>)",
    "[md vbscript](vbscript:msgbox('vb'))",
    "![md image](javascript:alert('image'))",
    "<object data=\"javascript:alert('object')\"></object>",
    "`<img src=x onerror=alert('code')>`",
    "<style>*{display:none}</style>",
    "[quote](https://example.com/\"onmouseover=\"alert('q'))",
    '[title](https://example.com/ "x" onmouseover="alert(\'t\')")',
    "```html\n<script>alert('fence')</script>\n```",
    "| <img src=x onerror=alert('cell')> |\n|---|\n| <script>alert('td')</script> |",
    "# <script>alert('heading')</script>",
    "- <img src=x onerror=alert('li')>",
    "> <iframe src=javascript:alert('quote')>",
    "javascript:alert('bare')",
]
