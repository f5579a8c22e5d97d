"""Every setting of the three services in one typed model: environment first, then `.env`.

Why one model: `.env.example`, the README's settings table and each service's start-up summary
are all made from (or checked against) this class, so they cannot drift. Settings are read when
a service starts (`load_settings()`), never on import, so tests and tools can import any module
without a `.env` leaking in. A bad value stops the service with one sentence naming the
variable, not a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from product_mcp.core.protocol import HeaderTimeoutProtocol

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = ROOT / ".env"

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Transport = Literal["both", "streamable-http", "sse", "stdio"]
TRANSPORTS: tuple[Transport, ...] = ("both", "streamable-http", "sse", "stdio")


MAX_API_WORKERS = 64
SHUTDOWN_GRACE_S = 10  # seconds requests still running at SIGTERM get to finish


class Settings(BaseSettings):
    """One field per environment variable; the field's description is its help text."""

    model_config = SettingsConfigDict(
        env_file=ENV_FILE, env_file_encoding="utf-8", extra="ignore", validate_default=True
    )

    # api.py
    DATABASE_URL: str = Field(
        "sqlite:///shop.db", description="SQLAlchemy URL of the shop database"
    )
    SQLITE_SYNCHRONOUS: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = Field(
        "FULL", description="SQLite fsync level: FULL survives power loss"
    )
    API_HOST: str = Field("127.0.0.1", description="api.py bind address (0.0.0.0 exposes it)")
    API_PORT: Port = Field(8000, description="api.py port")
    API_WORKERS: int = Field(
        1,
        ge=1,
        le=MAX_API_WORKERS,
        description="api.py worker processes (forked from one that loaded the app)",
    )
    ADMIN_TOKEN: SecretStr = Field(
        SecretStr(""),
        description="staff token for api.py's catalogue routes (Bearer); empty: they are off",
    )
    CHANGE_RETENTION: Seconds = Field(
        7 * 24 * 3600, description="seconds api.py keeps change-feed events (older: resync)"
    )
    CHANGE_HEARTBEAT: Seconds = Field(
        15, description="seconds between heartbeats on an idle change stream"
    )
    CHANGE_STREAMS_PER_CLIENT: int = Field(
        8, ge=1, description="open GET /api/changes streams one client address may hold"
    )
    # main.py
    PRODUCT_API_URL: str = Field(
        "http://127.0.0.1:8000/api", description="where main.py finds the API"
    )
    PRODUCT_API_TIMEOUT: Seconds = Field(10, description="seconds main.py waits for the API")
    MCP_HOST: str = Field("127.0.0.1", description="main.py bind address")
    MCP_PORT: Port = Field(8083, description="main.py port")
    MCP_TRANSPORT: Transport = Field("both", description="both, streamable-http, sse or stdio")
    MCP_ALLOWED_HOSTS: str = Field("", description="extra Host names main.py accepts (comma list)")
    MCP_AUTH_TOKEN: SecretStr = Field(
        SecretStr(""), description="if set, main.py requires Authorization: Bearer"
    )
    MCP_MAX_SESSIONS: int = Field(
        10_000, ge=1, description="open Streamable HTTP sessions main.py keeps at most"
    )
    MCP_MAX_SESSIONS_PER_CLIENT: int = Field(
        100,
        ge=1,
        description="sessions one client address may hold; more close its oldest",
    )
    MCP_MAX_SUBSCRIPTIONS: int = Field(
        1000,
        ge=1,
        description="resources/subscribe URIs one legacy session may hold (and keep in Redis)",
    )
    MCP_INIT_TIMEOUT: Seconds = Field(
        30, description="seconds a new session has to finish its handshake"
    )
    MCP_HANDSHAKE_GRACE: Seconds = Field(
        10,
        description="seconds a request sent before notifications/initialized waits for it "
        "before it is refused",
    )
    MCP_SESSION_IDLE_TIMEOUT: Seconds = Field(
        1800, description="seconds an unused session stays open"
    )
    MCP_SEND_TIMEOUT: Seconds = Field(
        30, description="seconds a client may stop reading its stream before it is dropped"
    )
    MCP_QUICK_REPLY: Seconds = Field(
        0.2,
        le=10,
        description="seconds a tool's answer may take and still go out as one JSON body "
        "(later ones stream, so progress can show)",
    )
    MCP_REPLICA_TAG: str = Field(
        "",
        pattern=r"^[a-z0-9]{0,16}$",
        description="this replica's name behind the balancer (launch.py sets it); empty: alone",
    )
    REDIS_URL: str = Field(
        "", description="Redis for sessions and replay events shared by replicas; empty: memory"
    )
    REDIS_PREFIX: str = Field("product-mcp:", description="prefix of every Redis key main.py uses")

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        """Read as redis-py reads it, so a URL it cannot use stops the start with a sentence
        (found from outside: a traceback from main.py's lifespan instead)."""
        if value:
            from redis.connection import parse_url

            try:
                parse_url(value)
            except ValueError as e:
                # redis-py's words may quote a piece of a password ("... as 'pa'")
                why = "" if "@" in value else f" ({e})"
                raise ValueError(f"is not a Redis URL redis-py can use{why}") from None
        return value

    REDIS_EVENT_TTL: Seconds = Field(
        900, description="seconds a session's replay events stay in Redis after its last one"
    )
    REDIS_SESSION_EVENT_BYTES: int = Field(
        8 * 1024 * 1024, ge=1024, description="bytes of replay events one session keeps in Redis"
    )
    # every service
    MAX_CONNECTIONS: int = Field(
        1000, ge=1, description="open connections each service accepts; more get 503"
    )
    KEEP_ALIVE_TIMEOUT: Seconds = Field(
        5, description="seconds an idle keep-alive connection stays open"
    )
    HEADER_TIMEOUT: Seconds = Field(
        10, description="seconds a client has to send a request's headers"
    )
    BODY_TIMEOUT: Seconds = Field(
        30, description="seconds a client has to send a request's body, once its headers are in"
    )
    MAX_CONNECTIONS_PER_CLIENT: int = Field(
        256,
        ge=1,
        description="open connections one client address may hold (127.0.0.1 and ::1 exempt)",
    )
    # web.py
    WEB_HOST: str = Field("127.0.0.1", description="web.py bind address")
    WEB_PORT: Port = Field(8002, description="web.py port")
    MCP_CONFIG_PATH: str = Field("mcp.json", description="MCP servers web.py connects to")
    WEB_CALLS_PER_CLIENT: int = Field(
        8, ge=1, description="chats and tool calls one client address may run at once; more: 429"
    )
    WEB_SEND_TIMEOUT: Seconds = Field(
        60,
        description="seconds a page may stop reading its reply before its turn ends and it is "
        "dropped",
    )
    OPENAI_API_KEY: SecretStr = Field(
        SecretStr(""), description="LLM key; without it chat is off, tools still work"
    )
    OPENAI_API_BASE: str = Field(
        "https://api.deepseek.com/v1", description="OpenAI-compatible base URL"
    )
    LLM_MODEL: str = Field("deepseek-chat", description="chat model name")
    MAX_TOOL_ROUNDS: int = Field(8, ge=1, le=100, description="tool-call rounds per chat turn")
    TOOL_APPROVAL: Literal["ask", "auto"] = Field(
        "ask", description="ask: confirm tools that change things; auto: run"
    )
    TOOL_CALL_TIMEOUT: Seconds = Field(30, description="seconds web.py waits for one tool call")
    MCP_PING_INTERVAL: Seconds = Field(
        15, description="seconds between web.py's liveness pings to servers"
    )
    LLM_TIMEOUT: Seconds = Field(60, description="seconds web.py waits for the LLM")
    LLM_MAX_RETRIES: int = Field(1, ge=0, le=10, description="retries of a failed LLM request")
    CORS_ORIGINS: str = Field("", description="origins allowed to call web.py (comma list)")
    CURRENCY: str = Field(
        "USD",
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code prices are shown in (the page, purchase confirmations)",
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        """`X=` in the environment means "the default", as it did before (and beats `.env`)."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != ""}
        return data

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("TOOL_APPROVAL"), str):
            data = {**data, "TOOL_APPROVAL": data["TOOL_APPROVAL"].strip().lower()}
        if isinstance(data, dict) and isinstance(data.get("CURRENCY"), str):
            data = {**data, "CURRENCY": data["CURRENCY"].strip().upper()}
        return data

    @staticmethod
    def split(value: str) -> list[str]:
        """A comma list setting as a list, blanks dropped."""
        return [v.strip() for v in value.split(",") if v.strip()]

    def value(self, name: str) -> str:
        """The printable value of a setting: secrets and URL passwords masked."""
        raw = getattr(self, name)
        if isinstance(raw, SecretStr):
            return "(set)" if raw.get_secret_value() else "(not set)"
        return mask_url(str(raw))

    def server_limits(self) -> dict[str, Any]:
        """uvicorn's connection limits for any of the services (and the header and body
        deadlines, set on the protocol class so that worker processes importing it by name
        share them)."""
        HeaderTimeoutProtocol.header_timeout = self.HEADER_TIMEOUT
        HeaderTimeoutProtocol.body_timeout = self.BODY_TIMEOUT
        HeaderTimeoutProtocol.per_client = self.MAX_CONNECTIONS_PER_CLIENT
        return {
            "limit_concurrency": self.MAX_CONNECTIONS,
            "timeout_keep_alive": self.KEEP_ALIVE_TIMEOUT,
            "http": HeaderTimeoutProtocol,
            # No route takes a WebSocket: an upgrade was handed to uvicorn's WebSocket
            # protocol, answered 403, and never gave the address's connection count back.
            "ws": "none",
            # What is still running at SIGTERM gets this long, then is cancelled: a chat reply
            # streaming on held web.py's shutdown for minutes (found from outside).
            "timeout_graceful_shutdown": SHUTDOWN_GRACE_S,
        }

    def summary(self, names: list[str], overrides: dict[str, object] | None = None) -> str:
        """One line per setting, secrets masked: what a service prints when it starts."""
        lines = {n: self.value(n) for n in names}
        lines |= {k: mask_url(str(v)) for k, v in (overrides or {}).items()}
        return "\n".join(f"  {n} = {v}" for n, v in lines.items())


def mask_url(value: str) -> str:
    """Hide the password of a URL (`postgresql://user:***@host/db`)."""
    try:
        parts = urlsplit(value)
        password, port = parts.password, parts.port
    except ValueError:  # e.g. a port that is not a number: hide whatever sits before the @
        return re.sub(r"://.*@", "://***@", value)  # all before the last @: any password
    if not password:
        return value
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{port}" if port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _sentence(err: dict[str, Any]) -> str:
    """One pydantic error as the sentence a user reads: the variable, the rule, the value."""
    name = ".".join(str(p) for p in err["loc"]) or "settings"
    given = err.get("input")
    got = f", got {given!r}" if isinstance(given, str | int | float) else ""
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind == "int_parsing":
        return f"{name} must be an integer{got}"
    if kind == "float_parsing":
        return f"{name} must be a number{got}"
    if kind == "literal_error":
        return f"{name} must be one of {str(ctx.get('expected', '')).replace(chr(39), '')}{got}"
    if isinstance(given, str) and name.endswith("_URL"):
        got = f", got {mask_url(given)!r}"  # a URL's password stays out of the sentence
    if kind == "value_error":
        return f"{name} {ctx.get('error', err['msg'])}{got}"
    if kind == "finite_number":
        return f"{name} must be a finite number{got}"
    if kind == "string_pattern_mismatch" and name == "CURRENCY":
        return f"CURRENCY must be a three-letter ISO 4217 code such as USD or EUR{got}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than"):
        field = Settings.model_fields.get(name)
        low, high = _bounds(field.metadata if field else [])
        if low is not None and high is not None:
            return f"{name} must be between {low} and {high}{got}"
        return f"{name} must be {_rule(kind, ctx)}{got}"
    return f"{name}: {err['msg']}{got}"


def _bounds(metadata: list[Any]) -> tuple[Any, Any]:
    low = next((m.ge for m in metadata if getattr(m, "ge", None) is not None), None)
    high = next((m.le for m in metadata if getattr(m, "le", None) is not None), None)
    return low, high


def _rule(kind: str, ctx: dict[str, Any]) -> str:
    if kind == "greater_than":
        return f"greater than {ctx.get('gt', 0):g}"
    if kind == "greater_than_equal":
        return f"at least {ctx.get('ge', 0):g}"
    return f"at most {ctx.get('le', 0):g}"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings once, at a service's start; a bad value exits with one sentence."""
    try:
        return Settings(**overrides)
    except ValidationError as e:
        raise SystemExit("; ".join(_sentence(err) for err in e.errors())) from None


def env_example() -> str:
    """The text of `.env.example`, made from the model."""
    lines = ["# product-mcp settings: copy to .env and edit. Real environment variables win."]
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        lines += [f"# {field.description}", f"{name}={default}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    # `uv run python -m product_mcp.core.config` rewrites .env.example from the model.
    (ROOT / ".env.example").write_text(env_example())
