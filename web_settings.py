"""web.py's configuration, read and validated once from the shared registry (`settings.get`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import settings
from chat import LLMSettings

LOOPBACK = ("127.0.0.1", "localhost", "::1")
WEB_SETTINGS = [
    "WEB_HOST",
    "WEB_PORT",
    "MCP_CONFIG_PATH",
    "OPENAI_API_KEY",
    "OPENAI_API_BASE",
    "LLM_MODEL",
    "MAX_TOOL_ROUNDS",
    "TOOL_APPROVAL",
    "TOOL_CALL_TIMEOUT",
    "MCP_PING_INTERVAL",
    "LLM_TIMEOUT",
    "LLM_MAX_RETRIES",
    "CORS_ORIGINS",
]


def _number(name: str, raw: str, *, integer: bool = False, minimum: float = 0) -> float:
    try:
        value = int(raw) if integer else float(raw)
    except ValueError as e:
        raise SystemExit(
            f"{name} must be {'an integer' if integer else 'a number'}: {raw!r}"
        ) from e
    if value < minimum or (minimum == 0 and not integer and value == 0):
        raise SystemExit(f"{name} is out of range: {raw!r}")
    return value


@dataclass(frozen=True)
class WebSettings:
    host: str = "127.0.0.1"
    port: int = 8002
    mcp_config_path: str = "mcp.json"
    tool_approval: Literal["auto", "ask"] = "ask"
    tool_call_timeout: float = 30.0
    mcp_ping_interval: float = 15.0
    cors_origins: list[str] = field(default_factory=list)
    llm: LLMSettings = field(default_factory=LLMSettings)

    @classmethod
    def from_env(cls) -> WebSettings:
        g = settings.get
        approval = g("TOOL_APPROVAL").strip().lower()
        if approval not in ("auto", "ask"):
            raise SystemExit(f"TOOL_APPROVAL must be 'auto' or 'ask', got {approval!r}")
        return cls(
            host=g("WEB_HOST").strip(),
            port=int(_number("WEB_PORT", g("WEB_PORT"), integer=True, minimum=1)),
            mcp_config_path=g("MCP_CONFIG_PATH").strip(),
            tool_approval=approval,  # type: ignore[arg-type]
            tool_call_timeout=_number("TOOL_CALL_TIMEOUT", g("TOOL_CALL_TIMEOUT")),
            mcp_ping_interval=_number("MCP_PING_INTERVAL", g("MCP_PING_INTERVAL")),
            cors_origins=[o.strip() for o in g("CORS_ORIGINS").split(",") if o.strip()],
            llm=LLMSettings(
                api_key=g("OPENAI_API_KEY").strip() or None,
                base_url=g("OPENAI_API_BASE").strip() or None,
                model=g("LLM_MODEL").strip(),
                timeout=_number("LLM_TIMEOUT", g("LLM_TIMEOUT")),
                max_retries=int(_number("LLM_MAX_RETRIES", g("LLM_MAX_RETRIES"), integer=True)),
                max_tool_rounds=int(
                    _number("MAX_TOOL_ROUNDS", g("MAX_TOOL_ROUNDS"), integer=True, minimum=1)
                ),
            ),
        )
