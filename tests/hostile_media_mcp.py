"""A small MCP server over stdio whose tool results try to get markup or script into the page
through non-text content (issue #11): links with javascript:, data:, vbscript: and file: URIs,
names and embedded text that look like HTML, an SVG picture with script, a resource whose blob
claims to be SVG. tests/web/test_page_media.py checks the page shows them as inert text.

Run: `python -m tests.hostile_media_mcp` from the repo root (as a module, so the SDK and not
tests/mcp/ is `mcp`); web.py starts it from mcp.json over stdio.
"""

from __future__ import annotations

import base64

from mcp.server.mcpserver import MCPServer
from mcp.types import (
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
    ToolAnnotations,
)

RO = ToolAnnotations(read_only_hint=True)
mcp = MCPServer(name="hostile-media")

HTML = "<img src=x onerror=alert('html')><script>alert('script')</script>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
SAFE_LINK = "https://example.com/ok?q=1"
# (uri, name): none of these may become a clickable link
BAD_LINKS = [
    ("javascript:alert('js')", "javascript link"),
    ("JaVaScRiPt:alert('mixed case')", "mixed case link"),
    ("data:text/html,<script>alert('data')</script>", "data link"),
    ("vbscript:msgbox('vb')", "vbscript link"),
    ("file:///etc/passwd", "file link"),
]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@mcp.tool(description="Resource links, most of which must not be clickable.", annotations=RO)
def links() -> CallToolResult:
    blocks: list[object] = [
        ResourceLink(type="resource_link", uri=uri, name=name) for uri, name in BAD_LINKS
    ]
    blocks.append(ResourceLink(type="resource_link", uri=SAFE_LINK, name=f"safe {HTML}"))
    return CallToolResult(content=blocks)  # type: ignore[arg-type]


@mcp.tool(description="Markup and SVG in embedded resources and pictures.", annotations=RO)
def markup() -> CallToolResult:
    return CallToolResult(
        content=[
            TextContent(type="text", text="Hostile content follows."),
            EmbeddedResource(
                type="resource",
                resource=TextResourceContents(uri="memo://html", mime_type="text/html", text=HTML),
            ),
            ImageContent(type="image", data=b64(SVG), mime_type="image/svg+xml"),
            EmbeddedResource(
                type="resource",
                resource=BlobResourceContents(
                    uri="file:///evil.svg", mime_type="image/svg+xml", blob=b64(SVG)
                ),
            ),
        ]
    )


if __name__ == "__main__":
    mcp.run("stdio")
