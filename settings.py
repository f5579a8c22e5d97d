"""Every setting of the three services in one table: environment first, then `.env`, then default.

One registry keeps `.env.example`, the README's settings table and each service's start-up
summary honest: a test checks that all three list exactly these names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from dotenv import load_dotenv

load_dotenv()  # .env in the working directory; real environment variables win


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    secret: bool = False


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("DATABASE_URL", "sqlite:///shop.db", "SQLAlchemy URL of the shop database"),
        Setting("SQLITE_SYNCHRONOUS", "FULL", "SQLite fsync level: FULL survives power loss"),
        Setting("API_HOST", "127.0.0.1", "api.py bind address (0.0.0.0 exposes it)"),
        Setting("API_PORT", "8000", "api.py port"),
        Setting("API_WORKERS", "1", "api.py worker processes"),
        Setting("PRODUCT_API_URL", "http://127.0.0.1:8000/api", "where main.py finds the API"),
        Setting("PRODUCT_API_TIMEOUT", "10", "seconds main.py waits for the API"),
        Setting("MCP_HOST", "127.0.0.1", "main.py bind address"),
        Setting("MCP_PORT", "8083", "main.py port"),
        Setting("MCP_TRANSPORT", "both", "both, streamable-http, sse or stdio"),
        Setting("MCP_ALLOWED_HOSTS", "", "extra Host names main.py accepts (comma list)"),
        Setting("MCP_AUTH_TOKEN", "", "if set, main.py requires Authorization: Bearer", True),
        Setting("WEB_HOST", "127.0.0.1", "web.py bind address"),
        Setting("WEB_PORT", "8002", "web.py port"),
        Setting("MCP_CONFIG_PATH", "mcp.json", "MCP servers web.py connects to"),
        Setting("OPENAI_API_KEY", "", "LLM key; without it chat is off, tools still work", True),
        Setting("OPENAI_API_BASE", "https://api.deepseek.com/v1", "OpenAI-compatible base URL"),
        Setting("LLM_MODEL", "deepseek-chat", "chat model name"),
        Setting("MAX_TOOL_ROUNDS", "8", "tool-call rounds per chat turn"),
        Setting("TOOL_APPROVAL", "ask", "ask: confirm tools that change things; auto: run"),
        Setting("TOOL_CALL_TIMEOUT", "30", "seconds web.py waits for one tool call"),
        Setting("MCP_PING_INTERVAL", "15", "seconds between web.py's liveness pings to servers"),
        Setting("LLM_TIMEOUT", "60", "seconds web.py waits for the LLM"),
        Setting("LLM_MAX_RETRIES", "1", "retries of a failed LLM request"),
        Setting("CORS_ORIGINS", "", "origins allowed to call web.py (comma list)"),
    ]
}


def get(name: str) -> str:
    """The value in force for a registered setting."""
    return os.environ.get(name) or SETTINGS[name].default


def get_int(name: str, minimum: int = 0) -> int:
    """An integer setting; a bad value stops the service with a sentence, not a traceback."""
    raw = get(name)
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SystemExit(f"{name} must be at least {minimum}, got {value}")
    return value


def mask(name: str, value: str) -> str:
    """Hide secrets and URL passwords in anything printed."""
    if SETTINGS[name].secret:
        return "(set)" if value else "(not set)"
    parts = urlsplit(value)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    return value


def summary(names: list[str], overrides: dict[str, object] | None = None) -> str:
    """One line per setting, secrets masked: what a service prints when it starts."""
    values = {n: get(n) for n in names} | {k: str(v) for k, v in (overrides or {}).items()}
    return "\n".join(f"  {n} = {mask(n, v)}" for n, v in values.items())


def env_example() -> str:
    """The text of `.env.example`."""
    lines = ["# product-mcp settings: copy to .env and edit. Real environment variables win."]
    for s in SETTINGS.values():
        lines += [f"# {s.help}", f"{s.name}={s.default}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    # `uv run python -m settings` rewrites .env.example from the registry above.
    from pathlib import Path

    Path(__file__).with_name(".env.example").write_text(env_example())
