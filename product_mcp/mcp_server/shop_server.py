"""`ShopServer`: the SDK's MCPServer with two things done right for every client.

Why a subclass, overriding only public methods (no private SDK attribute is touched):
- A caller's mistake in `prompts/get` (unknown prompt, unknown or missing argument) is a
  JSON-RPC -32602 Invalid params with a sentence, as the spec says. MCPServer raises a plain
  ValueError there, which goes out as code 0 on session-based connections and as -32603
  "Internal server error" on 2026-07-28, each with a traceback in the log.
- An unknown resource is what the client's protocol calls it: -32002 "Resource not found" up
  to 2025-11-25, -32602 from 2026-07-28 on (the SDK answers -32602 to every version; found
  from outside).
- A tool call whose arguments fail validation is an error naming each field and its problem
  in a sentence ("productId: input should be greater than or equal to 1 (got -1)"), not
  pydantic's report with its model name and documentation links; an argument the tool does
  not take is refused, not ignored (a model would believe it had filtered by it); a tool's
  own error (the API's words) is not prefixed with "Error executing tool <name>: ".
- Every tool's input schema says that it takes nothing else (`additionalProperties: false`).
- Every tool's input and output schema is self-contained: pydantic writes nested models as
  `$ref` into `$defs`, which OpenAI's strict mode and several other providers refuse, so
  `tools/list` inlines them, once per schema, for all tools alike.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, GetPromptResult, InputRequiredResult
from mcp.types import Tool as MCPTool
from pydantic import ValidationError

from product_mcp.mcp_server.protocol import modern

logger = logging.getLogger(__name__)
RESOURCE_NOT_FOUND = -32002  # up to 2025-11-25 (2026-07-28 retired it for -32602)

# Keywords whose value maps names (not keywords) to schemas.
_NAME_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas"})


def _closed(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is None or "additionalProperties" in schema:
        return schema
    return {**schema, "additionalProperties": False}


class UninlinableSchema(ValueError):
    """A schema whose `$ref`s cannot be replaced by their targets (recursive or external)."""


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every local `$ref` replaced by its definition and `$defs` dropped.

    Keywords next to a `$ref` (a field's own description, default) win over the definition's.
    A recursive model cannot be written without `$ref`: that raises UninlinableSchema.
    """
    defs: dict[str, Any] = schema.get("$defs", {})

    def target(ref: str, seen: frozenset[str]) -> dict[str, Any]:
        if not ref.startswith("#/$defs/"):
            raise UninlinableSchema(f"reference {ref!r} is not a local definition")
        name = ref.removeprefix("#/$defs/").replace("~1", "/").replace("~0", "~")
        if name in seen:
            raise UninlinableSchema(f"definition {name!r} refers to itself")
        if name not in defs:
            raise UninlinableSchema(f"reference {ref!r} points nowhere")
        return walk(defs[name], seen | {name})

    def walk(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [walk(v, seen) for v in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        if "$ref" in node:
            out.update(target(node["$ref"], seen))
        for key, value in node.items():
            if key in ("$ref", "$defs"):
                continue
            if key in _NAME_MAPS and isinstance(value, dict):
                out[key] = {name: walk(sub, seen) for name, sub in value.items()}
            else:
                out[key] = walk(value, seen)
        return out

    return walk(schema, frozenset())


class ShopServer(MCPServer[None]):
    """MCPServer whose prompt errors are -32602, whose tool argument errors are sentences and
    whose tool schemas have no `$ref`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # id(original schema) -> (original, inlined); the original is kept so its id stays
        # unique. Registered schemas never change, so each is inlined once.
        self._inlined: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._takes: dict[str, list[str]] = {}  # tool -> its arguments, read from tools/list

    def _self_contained(self, tool: str, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is None or "$defs" not in schema:
            return schema
        cached = self._inlined.get(id(schema))
        if cached is None or cached[0] is not schema:
            try:
                inlined = inline_refs(schema)
            except UninlinableSchema as e:  # still a valid schema, just not for strict clients
                logger.warning("Tool %r keeps $ref in its schema: %s", tool, e)
                inlined = schema
            cached = self._inlined[id(schema)] = (schema, inlined)
        return cached[1]

    async def list_tools(self) -> list[MCPTool]:
        """Every tool, with its input and output schemas self-contained, and its input schema
        closed (`additionalProperties: false`): call_tool refuses an argument the tool does not
        take, so the schema says so, and a client validating against it refuses it first."""
        return [
            tool.model_copy(
                update={
                    "input_schema": _closed(self._self_contained(tool.name, tool.input_schema)),
                    "output_schema": self._self_contained(tool.name, tool.output_schema),
                }
            )
            for tool in await super().list_tools()
        ]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[None, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """The tool's result. An argument the tool does not take is refused; arguments that
        do not fit its input schema are one sentence per field (the SDK raises a ToolError
        whose cause is the arguments' ValidationError)."""
        if name not in self._takes:  # a tool not seen yet: read them all once more
            tools = await super().list_tools()
            self._takes = {t.name: list(t.input_schema.get("properties", {})) for t in tools}
        takes = self._takes.get(name)  # None: an unknown tool, which the SDK refuses
        unknown = [a for a in arguments if a not in takes] if takes is not None else []
        if unknown:  # ignored, a model would think it had filtered by them
            raise ToolError(
                f"Invalid {_argument(unknown)} for {name}: {', '.join(unknown[:5])} "
                f"(it takes {', '.join(takes) or 'no arguments'})"
            )
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as e:
            cause = e.__cause__
            if type(e) is not ToolError:
                raise
            if isinstance(cause, ValidationError):
                raise ToolError(f"Invalid arguments for {name}: {_problems(cause)}") from cause
            if isinstance(cause, ToolError):  # the tool's own words (an ApiError quoting the
                raise ToolError(str(cause)) from cause  # API), not "Error executing tool X: "
            raise

    async def read_resource(
        self, uri: Any, context: Context[None, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        try:
            return await super().read_resource(uri, context)
        except ResourceNotFoundError as e:
            if context is None or modern(context.protocol_version):
                raise
            raise MCPError(RESOURCE_NOT_FOUND, str(e), {"uri": str(uri)}) from None

    async def get_prompt(
        self,
        name: str,
        arguments: dict[str, Any] | None = None,
        context: Context[None, Any] | None = None,
    ) -> GetPromptResult | InputRequiredResult:
        """The prompt, or -32602 naming what is wrong with the request."""
        prompts = {p.name: p for p in await self.list_prompts()}
        prompt = prompts.get(name)
        if prompt is None:
            available = ", ".join(prompts) or "none"
            raise MCPError(INVALID_PARAMS, f"Unknown prompt: {name} (available: {available})")
        declared = prompt.arguments or []
        given = arguments or {}
        unknown = [a for a in given if a not in {d.name for d in declared}]
        if unknown:
            takes = ", ".join(d.name for d in declared) or "no arguments"
            raise MCPError(
                INVALID_PARAMS,
                f"Unknown {_argument(unknown)} for prompt {name}: {', '.join(unknown)} "
                f"(it takes {takes})",
            )
        missing = [d.name for d in declared if d.required and d.name not in given]
        if missing:
            raise MCPError(
                INVALID_PARAMS,
                f"Missing required {_argument(missing)} for prompt {name}: {', '.join(missing)}",
            )
        try:
            return await super().get_prompt(name, arguments, context)
        except ValueError as e:
            invalid = _validation_error(e)
            if invalid is None:
                raise  # the prompt itself failed: a server error, logged as one
            fields = {err["loc"] for err in invalid.errors()}
            raise MCPError(
                INVALID_PARAMS,
                f"Invalid {_argument(list(fields))} for prompt {name}: {_problems(invalid)}",
            ) from None


def _argument(names: list[str]) -> str:
    return "argument" if len(names) == 1 else "arguments"


def _validation_error(exc: BaseException | None) -> ValidationError | None:
    """The pydantic ValidationError behind a rendering failure (the arguments' fault), if any."""
    while exc is not None:
        if isinstance(exc, ValidationError):
            return exc
        exc = exc.__cause__
    return None


def _problems(invalid: ValidationError, most: int = 5) -> str:
    """`items[0].quantity: input should be ... (got 0); ...`: the first `most` problems."""
    errors = invalid.errors(include_url=False)
    parts = []
    for err in errors[:most]:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
        # A validator's own ValueError reads "Value error, <its sentence>": its sentence only.
        msg = (
            str(err.get("ctx", {}).get("error", err["msg"]))
            if err["type"] == "value_error"
            else err["msg"]
        )
        msg = msg[:1].lower() + msg[1:]
        got = "" if err["type"] == "missing" else f" (got {_shown(err.get('input'))})"
        parts.append(f"{where.lstrip('.') or 'arguments'}: {msg}{got}")
    if len(errors) > most:
        parts.append(f"and {len(errors) - most} more")
    return "; ".join(parts)


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
