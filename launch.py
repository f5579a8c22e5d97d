"""Start the whole assistant: api.py, then main.py, then web.py, each once the one before answers.

`uv run python launch.py` prints every address when all are up; Ctrl-C stops all three. If one
dies, the launcher says which and why (its last log lines) and stops the rest with exit 1.
`--mcp-replicas N` (N > 1) starts N main.py on internal loopback ports and nginx on the MCP
port in front of them, configured from deploy/nginx.conf.template (see docs/scale.md).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import shutil
import socket
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from product_mcp.core.config import MAX_API_WORKERS, Settings, load_settings, mask_url
from product_mcp.core.serve import bind_problem, int_arg, port_arg, port_given, seconds_arg
from product_mcp.core.supervisor import SERVER_NAME, Child, Launcher

ROOT = Path(__file__).resolve().parent
SETTING = {"api": "API_PORT", "mcp": "MCP_PORT", "lb": "MCP_PORT", "web": "WEB_PORT"}


def parse_args(argv: Sequence[str] | None, settings: Settings) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default=None, help="bind address for all three (default 127.0.0.1)")
    p.add_argument("--api-port", type=port_arg, default=None, help="default: API_PORT")
    p.add_argument("--mcp-port", type=port_arg, default=None, help="default: MCP_PORT")
    p.add_argument("--web-port", type=port_arg, default=None, help="default: WEB_PORT")
    p.add_argument("--database-url", default=settings.DATABASE_URL)
    p.add_argument(
        "--api-workers",
        type=int_arg(1, MAX_API_WORKERS),
        default=settings.API_WORKERS,
        help="api.py worker processes (env API_WORKERS)",
    )
    p.add_argument(
        "--mcp-replicas",
        type=int,
        default=1,
        choices=range(1, 17),
        metavar="N",
        help="N > 1: N main.py behind nginx on the MCP port (1 to 16)",
    )
    p.add_argument(
        "--redis-url",
        default=settings.REDIS_URL,
        help="Redis shared by the replicas for sessions and events (env REDIS_URL)",
    )
    p.add_argument("--no-web", action="store_true", help="run the API and MCP server only")
    p.add_argument("--timeout", type=seconds_arg, default=60, help="seconds each service may take")
    a = p.parse_args(argv)
    a.moved_by = {}  # service -> what moves its port: the flag, if given (core/serve)
    for name in ("api", "mcp", "web"):
        setting = SETTING[name]
        port, a.moved_by[name] = port_given(
            getattr(a, f"{name}_port"), getattr(settings, setting), f"--{name}-port", setting
        )
        setattr(a, f"{name}_port", port)
    a.moved_by["lb"] = a.moved_by["mcp"]
    return a


def reach(host: str) -> str:
    """The address to reach a service bound to `host` from this machine."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def plan(a: argparse.Namespace, settings: Settings, scratch: Path) -> list[Child]:
    api_host = a.host or settings.API_HOST
    mcp_host = a.host or settings.MCP_HOST
    web_host = a.host or settings.WEB_HOST
    api_args = ["api.py", "--host", api_host, "--port", str(a.api_port)]
    children = [
        Child("api", [*api_args, "--workers", str(a.api_workers)], a.api_port,
              {"DATABASE_URL": a.database_url}, reach(api_host), api_host),
    ]  # fmt: skip
    mcp_env = {"PRODUCT_API_URL": f"http://{reach(api_host)}:{a.api_port}/api"}
    if a.redis_url:
        mcp_env["REDIS_URL"] = a.redis_url
    if a.mcp_replicas > 1:
        children += replicas(a, settings, mcp_host, mcp_env, scratch)
    else:
        children.append(
            Child("mcp", ["main.py", "--host", mcp_host, "--port", str(a.mcp_port)], a.mcp_port,
                  mcp_env, reach(mcp_host), mcp_host)
        )  # fmt: skip
    if a.no_web:
        return children
    path = scratch / "mcp.json"
    url = f"http://{reach(mcp_host)}:{a.mcp_port}/mcp"
    path.write_text(json.dumps(web_config(settings, url), indent=2))
    children.append(
        Child("web", ["web.py", "--host", web_host, "--port", str(a.web_port)], a.web_port,
              {"MCP_CONFIG_PATH": str(path)}, reach(web_host), web_host)
    )  # fmt: skip
    return children


def replicas(
    a: argparse.Namespace, settings: Settings, host: str, env: dict[str, str], scratch: Path
) -> list[Child]:
    """N main.py on free loopback ports, tagged r1..rN, and nginx in front on the MCP port."""
    from product_mcp.mcp_server.replicas import render  # imports the server wing: only here

    logging.getLogger("httpx").setLevel(logging.WARNING)  # the launcher's health polls
    socks = [loopback_socket() for _ in range(a.mcp_replicas)]
    ports = [int(s.getsockname()[1]) for s in socks]
    public = [f"{n}:{a.mcp_port}" for n in ("localhost", "127.0.0.1", reach(host))]
    allowed = ",".join(dict.fromkeys([*Settings.split(settings.MCP_ALLOWED_HOSTS), *public]))
    children = [
        Child(f"mcp{i}", ["main.py", "--host", "127.0.0.1", "--port", str(port)], port,
              {**env, "MCP_REPLICA_TAG": f"r{i}", "MCP_ALLOWED_HOSTS": allowed},
              hand_over=True, sock=sock)
        for i, (port, sock) in enumerate(zip(ports, socks, strict=True), 1)
    ]  # fmt: skip
    prefix = scratch / "nginx"
    prefix.mkdir()
    listen = f"[{host}]:{a.mcp_port}" if ":" in host else f"{host}:{a.mcp_port}"
    conf = prefix / "nginx.conf"
    ups = [(f"r{i}", f"127.0.0.1:{port}") for i, port in enumerate(ports, 1)]
    conf.write_text(render(listen, ups, str(prefix)))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    command = [nginx, "-e", "stderr", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"]
    children.append(
        Child("lb", ["nginx"], a.mcp_port, {}, reach(host), host, command)
    )  # fmt: skip
    return children


def loopback_socket() -> socket.socket:
    """A listening socket on a free loopback port, for a replica only nginx talks to. Held
    from now until the replica starts on it (`--fd`): CI once saw a replica's port, picked
    free, taken seconds later while api.py migrated (an outgoing connection's source port).
    Listening, nothing else can bind the port meanwhile; SO_REUSEADDR, because the launcher
    binds it again to restart the replica, past the dead one's closing connections."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    return sock


class BrokenConfig(Exception):
    """The user's mcp.json cannot be read as one (its path and what is wrong)."""


def web_config(settings: Settings, url: str) -> dict[str, Any]:
    """The user's mcp.json with its `product-mcp` entry pointed at the main.py we started.

    Whatever MCP_CONFIG_PATH says, web.py must talk to this main.py (its port and token): a
    copied `.env` naming the default port must not leave the chat on another server. Other
    servers in the file are kept; their relative stdio paths still resolve from the original
    file's folder.
    """
    from product_mcp.chat.mcp_config import parse_config, read_document

    source = Path(settings.MCP_CONFIG_PATH)
    if not source.is_absolute():
        source = ROOT / source
    sections = ("mcpServers", "servers")  # Claude's name, VS Code's
    servers: dict[str, Any] = {}
    if source.exists():  # none: product-mcp alone
        data, error = read_document(source)
        # A file with no servers to read, said before anything starts: carrying on with
        # product-mcp alone made the user's other servers vanish unsaid. What web.py runs
        # with and warns about (a block given twice, too many servers) it reports itself.
        usable = isinstance(data, dict) and any(isinstance(data.get(s), dict) for s in sections)
        if error or not usable:
            problem = error or next(e for e in parse_config(data).errors if not e.server)
            raise BrokenConfig(f"{source}: {problem}")
        for section in sections:
            if isinstance(data.get(section), dict):
                servers.update(data[section])
    for name, entry in servers.items():
        if isinstance(entry, dict) and "command" in entry:
            cwd = Path(str(entry.get("cwd", ".")))
            servers[name] = {**entry, "cwd": str(cwd if cwd.is_absolute() else source.parent / cwd)}
    entry: dict[str, Any] = {"url": url}
    if settings.MCP_AUTH_TOKEN.get_secret_value():
        entry["headers"] = {"Authorization": "Bearer ${MCP_AUTH_TOKEN}"}  # expanded by web.py
    servers.pop(SERVER_NAME, None)
    # first: web.py loads at most MAX_MCP_SERVERS, and this one is why the trio runs
    return {"mcpServers": {SERVER_NAME: entry, **servers}}


def ready_block(a: argparse.Namespace, settings: Settings, children: list[Child]) -> str:
    h = "127.0.0.1"
    entry: dict[str, object] = {"url": f"http://{h}:{a.mcp_port}/mcp"}
    if settings.MCP_AUTH_TOKEN.get_secret_value():
        entry["headers"] = {"Authorization": "Bearer <your MCP_AUTH_TOKEN>"}
    snippet = json.dumps({"mcpServers": {"product-mcp": entry}}, indent=2)
    lines = [
        "",
        "=" * 64,
        "product-mcp is ready",
        f"  API docs          http://{h}:{a.api_port}/docs",
        f"  MCP (Streamable)  http://{h}:{a.mcp_port}/mcp",
        f"  MCP (SSE)         http://{h}:{a.mcp_port}/sse",
    ]
    if not a.no_web:
        lines.append(f"  Chat page         http://{h}:{a.web_port}/")
    lines += ["", "Processes:"]
    what = {"api": "api.py", "lb": "nginx (balancer)", "web": "web.py"}
    for c in children:
        name = what.get(c.name) or f"main.py {c.env.get('MCP_REPLICA_TAG', '')}".strip()
        pid = c.proc.pid if c.proc else "?"
        lines.append(f"  {c.name:<5} {name:<17} http://{c.reach}:{c.port}  pid {pid}")
    if a.mcp_replicas > 1:
        shared = (
            f"sessions shared in Redis ({mask_url(a.redis_url)})"
            if a.redis_url
            else ("no --redis-url: a replica's sessions end with it")
        )
        lines.append(f"  {a.mcp_replicas} MCP replicas behind nginx; {shared}")
    lines += ["", "Cursor / Claude Desktop mcp.json:", snippet, "=" * 64, ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings()
    a = parse_args(argv, settings)
    with tempfile.TemporaryDirectory(prefix="product-mcp-") as scratch:
        try:
            children = plan(a, settings, Path(scratch))
        except BrokenConfig as e:
            sys.stderr.write(f"launcher: {e}: fix it, or set MCP_CONFIG_PATH to another file\n")
            return 2
        return run(a, settings, children)


def run(a: argparse.Namespace, settings: Settings, children: list[Child]) -> int:
    """Check ports, say what runs with which settings, then start and supervise the trio."""
    if a.mcp_replicas > 1 and not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        sys.stderr.write(
            "launcher: --mcp-replicas needs nginx: install it (apt-get install nginx)\n"
        )
        return 2
    # "port N is in use: set X_PORT ...", or why else it cannot be bound (a --host this
    # machine does not have was reported as a busy port)
    problems = [
        bind_problem(c.host, c.port, a.moved_by.get(c.name, "MCP_PORT"))
        for c in children
        if c.sock is None  # ours already
    ]
    for problem in filter(None, problems):
        sys.stderr.write(f"launcher: {problem}\n")
    if any(problems):
        return 2
    print("product-mcp settings:")
    print(
        settings.summary(
            ["OPENAI_API_BASE", "LLM_MODEL", "OPENAI_API_KEY"], {"DATABASE_URL": a.database_url}
        )
    )
    web_host = next((c.host for c in children if c.name == "web"), "127.0.0.1")
    if web_host in ("0.0.0.0", "::"):
        print(
            f"launcher: warning: web.py listens on {web_host}: it has no login, so anyone who "
            "can reach it can chat, spend the LLM key and place orders. Put it behind an "
            "authenticating proxy, or bind 127.0.0.1."
        )
    ready = functools.partial(ready_block, a, settings, children)
    return asyncio.run(Launcher(children, a.timeout, ready).run())


if __name__ == "__main__":
    sys.exit(main())
