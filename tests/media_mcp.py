"""A tiny MCP server whose tools answer with images, audio and embedded resources (issue #11).

Run: `python -m tests.media_mcp --port N` → /mcp (Streamable HTTP) and /healthz. Each media
tool returns one kind of non-text content, some of it safe to show on a page and some not (SVG,
a PNG label on HTML, a mislabelled or oversized picture), so web.py's pass-through can be
tested without depending on main.py's data; `echo` and `add` give the model something plain
to call.

`python -m tests.media_mcp --hostile` is its hostile twin over stdio ("hostile-media"): tool
results that try to get markup or script into the page through non-text content (links with
javascript:, data:, vbscript: and file: URIs, names and embedded text that look like HTML, an
SVG picture with script, a resource whose blob claims to be SVG); tests/web/test_page_media.py
checks the page shows them as inert text. One module for both, as they share their content
builders. Run it as a module (so the SDK and not tests/mcp/ is `mcp`).
"""

from __future__ import annotations

import argparse
import base64
import struct
import zlib

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
    ToolAnnotations,
)
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.mini_mcp import add_plain_tools

RO = ToolAnnotations(read_only_hint=True)
mcp = MCPServer(name="media")
hostile = MCPServer(name="hostile-media")


def png(width: int = 2, height: int = 2) -> bytes:
    """A valid grey PNG of the given size (uncompressible noise is not needed: size by area)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes([128]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 0))
        + chunk(b"IEND", b"")
    )


def wav(samples: int = 3000) -> bytes:
    data = b"\x80" * samples
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 8000, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
    body += struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


PNG = png()
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"><script>alert(2)</script></svg>'
HTML = b"<html><script>alert(document.cookie)</script></html>"
BIG_PNG = png(1500, 1500)  # about 2.2 MB: over the page's per-item limit
HOSTILE_HTML = "<img src=x onerror=alert('html')><script>alert('script')</script>"
SAFE_LINK = "https://example.com/ok?q=1"
# (uri, name): none of these may become a clickable link
BAD_LINKS = [
    ("javascript:alert('js')", "javascript link"),
    ("JaVaScRiPt:alert('mixed case')", "mixed case link"),
    ("data:text/html,<script>alert('data')</script>", "data link"),
    ("vbscript:msgbox('vb')", "vbscript link"),
    ("file:///etc/passwd", "file link"),
]


def result(*blocks: object) -> CallToolResult:
    return CallToolResult(content=list(blocks))  # type: ignore[arg-type]


add_plain_tools(mcp)


@mcp.tool(description="A text line, a small PNG, another text line.", annotations=RO)
def picture() -> CallToolResult:
    return result(
        TextContent(type="text", text="Here is the picture:"),
        ImageContent(type="image", data=b64(PNG), mime_type="image/png"),
        TextContent(type="text", text="Nice, isn't it?"),
    )


@mcp.tool(description="A short WAV sound.", annotations=RO)
def sound() -> CallToolResult:
    return result(AudioContent(type="audio", data=b64(wav()), mime_type="audio/wav"))


@mcp.tool(description="Pictures the page must not show.", annotations=RO)
def unsafe() -> CallToolResult:
    return result(
        ImageContent(type="image", data=b64(SVG), mime_type="image/svg+xml"),
        ImageContent(type="image", data=b64(HTML), mime_type="image/png"),
        ImageContent(type="image", data="not base64 at all!", mime_type="image/png"),
        ImageContent(type="image", data=b64(PNG), mime_type="text/html"),
    )


@mcp.tool(description="A picture too big to pass through.", annotations=RO)
def big_picture() -> CallToolResult:
    return result(ImageContent(type="image", data=b64(BIG_PNG), mime_type="image/png"))


@mcp.tool(description="Embedded resources and a resource link.", annotations=RO)
def resources() -> CallToolResult:
    return result(
        EmbeddedResource(
            type="resource",
            resource=TextResourceContents(uri="memo://note", mime_type="text/plain", text="a note"),
        ),
        EmbeddedResource(
            type="resource",
            resource=BlobResourceContents(
                uri="file:///pic.png", mime_type="image/png", blob=b64(PNG)
            ),
        ),
        EmbeddedResource(
            type="resource",
            resource=BlobResourceContents(
                uri="file:///data.bin", mime_type="application/octet-stream", blob=b64(b"\0" * 10)
            ),
        ),
        ResourceLink(type="resource_link", uri="https://example.com/x", name="x"),
    )


@mcp.tool(description="Structured content and a picture.", annotations=RO)
def chart() -> CallToolResult:
    return CallToolResult(
        content=[ImageContent(type="image", data=b64(PNG), mime_type="image/png")],
        structured_content={"points": 3},
    )


@hostile.tool(description="Resource links, most of which must not be clickable.", annotations=RO)
def links() -> CallToolResult:
    blocks: list[object] = [
        ResourceLink(type="resource_link", uri=uri, name=name) for uri, name in BAD_LINKS
    ]
    blocks.append(ResourceLink(type="resource_link", uri=SAFE_LINK, name=f"safe {HOSTILE_HTML}"))
    return result(*blocks)


@hostile.tool(description="Markup and SVG in embedded resources and pictures.", annotations=RO)
def markup() -> CallToolResult:
    html = TextResourceContents(uri="memo://html", mime_type="text/html", text=HOSTILE_HTML)
    return result(
        TextContent(type="text", text="Hostile content follows."),
        EmbeddedResource(type="resource", resource=html),
        ImageContent(type="image", data=b64(SVG), mime_type="image/svg+xml"),
        EmbeddedResource(
            type="resource",
            resource=BlobResourceContents(
                uri="file:///evil.svg", mime_type="image/svg+xml", blob=b64(SVG)
            ),
        ),
    )


def build_app():  # type: ignore[no-untyped-def]
    app = mcp.streamable_http_app()

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app.add_route("/healthz", healthz, methods=["GET"])
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--hostile", action="store_true", help="the hostile twin, over stdio")
    ns = parser.parse_args()
    if ns.hostile:
        hostile.run("stdio")
    elif ns.port is None:
        parser.error("--port is required (or --hostile)")
    else:
        uvicorn.run(build_app(), host=ns.host, port=ns.port, log_level="warning")
