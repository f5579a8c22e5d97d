"""The web chat's long-lived parts, built once from the settings and shared by every route.

Why one object: the routes in web.py take it as a FastAPI dependency instead of closing over
locals of one long `create_app`, so each route reads top to bottom on its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from models import HISTORY_LIMITS
from product_mcp.chat.approvals import Approvals
from product_mcp.chat.elicitation import Elicitations
from product_mcp.chat.events import PageEvents
from product_mcp.chat.live import StockWatch
from product_mcp.chat.llm import NO_LLM_MESSAGE, LLMSettings
from product_mcp.chat.loop import ChatEngine
from product_mcp.chat.manager import McpManager
from product_mcp.chat.mcp_config import McpConfig, load_config
from product_mcp.chat.turns import Turns
from product_mcp.core.config import Settings

log = logging.getLogger("web")


@dataclass
class ChatServices:
    settings: Settings
    config: McpConfig
    manager: McpManager
    engine: ChatEngine
    llm: LLMSettings
    approvals: Approvals = field(default_factory=Approvals)
    turns: Turns = field(default_factory=Turns)
    events: PageEvents = field(default_factory=PageEvents)

    @property
    def elicitations(self) -> Elicitations:
        return self.manager.elicitations

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatServices:
        config = load_config(settings.MCP_CONFIG_PATH)
        for err in config.errors:
            log.warning("%s", err)
        llm = llm_settings(settings)
        events = PageEvents()
        manager = McpManager(
            config,
            call_timeout=settings.TOOL_CALL_TIMEOUT,
            ping_interval=settings.MCP_PING_INTERVAL,
            elicitations=Elicitations(llm.approval_timeout),
            watch=StockWatch(events),
        )
        return cls(settings, config, manager, ChatEngine(manager, llm), llm, events=events)

    def public_config(self) -> dict[str, Any]:
        """What the page needs to know: LLM state, approval default, every limit it obeys."""
        return {
            "llmConfigured": self.llm.configured,
            "llmMessage": None if self.llm.configured else NO_LLM_MESSAGE,
            "model": self.llm.model,
            "toolApproval": self.settings.TOOL_APPROVAL,
            "currency": self.settings.CURRENCY,
            "maxToolRounds": self.llm.max_tool_rounds,
            "historyLimits": HISTORY_LIMITS,
            "configPath": self.config.path,
            "configErrors": [str(e) for e in self.config.errors],
        }


def llm_settings(settings: Settings) -> LLMSettings:
    return LLMSettings(
        api_key=settings.OPENAI_API_KEY.get_secret_value().strip() or None,
        base_url=settings.OPENAI_API_BASE.strip() or None,
        model=settings.LLM_MODEL.strip(),
        timeout=settings.LLM_TIMEOUT,
        max_retries=settings.LLM_MAX_RETRIES,
        max_tool_rounds=settings.MAX_TOOL_ROUNDS,
    )


async def services(request: Request) -> ChatServices:
    """FastAPI dependency: the app's ChatServices. Async on purpose: FastAPI runs a plain
    `def` dependency in its thread pool, a thread hop (and two loop wake-ups) per request."""
    return request.app.state.chat
