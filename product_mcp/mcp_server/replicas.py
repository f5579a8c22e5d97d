"""Several main.py behind one URL: what a replica does so the balancer can route back to it.

Why tags: a legacy (handshake) session lives in the process that opened it, and the request
that follows `initialize` carries an id the balancer has never seen, so hashing that id would
send it to any replica. Instead each replica starts the ids it mints with its tag
(`MCP_REPLICA_TAG`, e.g. `r1-<32 hex>`) and nginx maps the tag to that replica, with the
others as backups that restore the session from Redis when it is down. The SSE transport's
POSTs carry no header of ours, so the message path main.py hands out names the replica
(`/r/r1/messages/?session_id=...`); any replica accepts that path as `/messages/`.

`render()` fills `deploy/nginx.conf.template`; `python -m product_mcp.mcp_server.replicas`
prints the config for a list of replicas (launch.py --mcp-replicas N uses it too).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from uuid import uuid4

from starlette.types import ASGIApp, Receive, Scope, Send

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx.conf.template"
TAG = re.compile(r"^[a-z0-9]{1,16}$")
_TAGGED_PATH = re.compile(r"^/r/[a-z0-9]{1,16}(/messages/.*)$")


def session_minter(tag: str) -> Callable[[], str | None]:
    """New session ids as `<tag>-<32 hex>` (None without a tag: the SDK's own ids)."""
    if not tag:
        return lambda: None
    return lambda: f"{tag}-{uuid4().hex}"


def tag_of(session_id: str) -> str | None:
    tag, sep, _ = session_id.partition("-")
    return tag if sep and TAG.match(tag) else None


class ReplicaPaths:
    """GET /sse hands out `/r/<tag>/messages/` as its message path; `/r/<any>/messages/`
    is served as `/messages/` (so the path works on any replica, and without nginx)."""

    def __init__(self, app: ASGIApp, tag: str) -> None:
        self.app = app
        self.prefix = f"/r/{tag}"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope.get("path", "")
            tagged = _TAGGED_PATH.match(path)
            if tagged:
                path = tagged.group(1)
                scope = {**scope, "path": path, "raw_path": path.encode()}
            elif path == "/sse":
                scope = {**scope, "root_path": scope.get("root_path", "") + self.prefix}
        await self.app(scope, receive, send)


def render(listen: str, replicas: Sequence[tuple[str, str]], prefix: str) -> str:
    """deploy/nginx.conf.template for `replicas` [(tag, host:port)], listening on `listen`,
    with its pid and temp files under `prefix`."""
    if not replicas:
        raise ValueError("at least one replica")
    for tag, _ in replicas:
        if not TAG.match(tag):
            raise ValueError(f"replica tag {tag!r}: 1 to 16 lowercase letters or digits")
    line = "        server {} max_fails=0;"
    servers = "\n".join(line.format(addr) for _, addr in replicas)
    session_map, sse_map, owners = [], [], []
    for tag, addr in replicas:
        session_map.append(f'        "~^{tag}-"  mcp_{tag};')
        sse_map.append(f'        "~^/r/{tag}/"  mcp_{tag};')
        backups = "".join(
            f"        server {other} max_fails=0 backup;\n" for t, other in replicas if t != tag
        )
        owners.append(
            f"    upstream mcp_{tag} {{\n        server {addr} max_fails=0;\n{backups}    }}"
        )
    text = TEMPLATE.read_text(encoding="utf-8")
    for name, value in {
        "LISTEN": listen,
        "PREFIX": prefix.rstrip("/") or "/",
        "SERVERS": servers,
        "SESSION_MAP": "\n".join(session_map),
        "SSE_MAP": "\n".join(sse_map),
        "OWNER_UPSTREAMS": "\n".join(owners),
    }.items():
        text = text.replace(f"@@{name}@@", value)
    return text


def _replica(value: str) -> tuple[str, str]:
    tag, sep, addr = value.partition("=")
    if not sep or not TAG.match(tag) or ":" not in addr:
        raise argparse.ArgumentTypeError(f"expected TAG=HOST:PORT, got {value!r}")
    return tag, addr


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Print the nginx config for main.py replicas.")
    p.add_argument("--listen", default="8083", help="nginx listen address (default 8083)")
    p.add_argument("--replica", type=_replica, action="append", required=True,
                   help="TAG=HOST:PORT of one main.py (its MCP_REPLICA_TAG); repeat")  # fmt: skip
    p.add_argument("--prefix", default="/var/lib/nginx", help="folder for pid and temp files")
    a = p.parse_args(argv)
    sys.stdout.write(render(a.listen, a.replica, a.prefix))


if __name__ == "__main__":
    main()
