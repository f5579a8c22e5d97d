"""Read mcp.json in the shapes people already have (Cursor, Claude Desktop/Code, VS Code).

A bad entry never stops the app: it becomes a `ConfigError` that names the server and the key,
and the other servers still load.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import SplitResult, urlsplit

from models import MAX_MCP_SERVERS
from product_mcp.core.errors import encodable

Transport = Literal["http", "sse", "stdio"]

_TYPE_ALIASES: dict[str, Transport] = {
    "http": "http",
    "streamable-http": "http",
    "streamable_http": "http",
    "streamablehttp": "http",
    "sse": "sse",
    "stdio": "stdio",
}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class ServerConfig:
    """One MCP server to connect to, already normalised."""

    name: str
    transport: Transport
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def target(self) -> str:
        """Where it lives, for display: the URL, or the command line."""
        if self.transport == "stdio":
            return " ".join([self.command or "", *self.args]).strip()
        return self.url or ""


@dataclass(frozen=True)
class ConfigError:
    """A problem in mcp.json, located as precisely as we can."""

    message: str
    server: str | None = None
    key: str | None = None

    def __post_init__(self) -> None:  # said back as JSON: no lone surrogate may stay
        object.__setattr__(self, "message", encodable(self.message))
        for name in ("server", "key"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else encodable(value))

    def __str__(self) -> str:
        where = []
        if self.server is not None:
            where.append(f"server {self.server!r}")
        if self.key is not None:
            where.append(f"key {self.key!r}")
        return (
            f"mcp.json: {', '.join(where)}: {self.message}"
            if where
            else f"mcp.json: {self.message}"
        )


@dataclass
class McpConfig:
    servers: list[ServerConfig] = field(default_factory=list)
    errors: list[ConfigError] = field(default_factory=list)
    path: str | None = None


class _EntryError(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _expand(value: str, key: str, environ: Mapping[str, str]) -> str:
    """Claude Code style `${VAR}` / `${VAR:-default}` expansion; a missing VAR is an error."""

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise _EntryError(key, f"environment variable {name} is not set")

    out = _VAR.sub(sub, value)
    if not _unicode(out):  # a lone surrogate: from a JSON escape, or an undecodable variable
        raise _EntryError(key, "must be valid Unicode text (no lone surrogates)")
    if "\x00" in out:
        raise _EntryError(key, "must not contain NUL characters")
    return out


def _unicode(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (every answer about this server must be: one
    name with a lone surrogate made /api/servers and every chat turn a 500; found outside)."""
    return encodable(text) == text


def _string(entry: Mapping[str, Any], key: str, environ: Mapping[str, str]) -> str | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _EntryError(key, "must be a non-empty string")
    return _expand(value, key, environ)


def _string_map(entry: Mapping[str, Any], key: str, environ: Mapping[str, str]) -> dict[str, str]:
    value = entry.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _EntryError(key, "must be an object of strings")
    for name in getattr(value, "twice", ()):
        raise _EntryError(f"{key}.{name}", "given twice")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not _unicode(k) or "\x00" in k or (key == "env" and (not k or "=" in k)):
            raise _EntryError(f"{key}.{k}", "not a valid name")  # (review) failed at the start
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise _EntryError(f"{key}.{k}", "must be a string")
        out[str(k)] = _expand(str(v), f"{key}.{k}", environ)
    return out


def _string_list(entry: Mapping[str, Any], key: str, environ: Mapping[str, str]) -> list[str]:
    value = entry.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _EntryError(key, "must be a list of strings")
    return [_expand(v, f"{key}[{i}]", environ) for i, v in enumerate(value)]


def _parse_entry(
    name: str, entry: Any, base_dir: Path | None, environ: Mapping[str, str]
) -> ServerConfig:
    if not isinstance(entry, dict):
        raise _EntryError("(entry)", "must be an object with 'url' or 'command'")
    for key in getattr(entry, "twice", ()):  # json keeps the last, silently
        raise _EntryError(key, "given twice")
    type_key = "type" if "type" in entry else "transport" if "transport" in entry else None
    declared: Transport | None = None
    if type_key is not None:
        raw = entry[type_key]
        if not isinstance(raw, str) or raw.strip().lower() not in _TYPE_ALIASES:
            raise _EntryError(type_key, f"must be one of 'http', 'sse', 'stdio' (got {raw!r})")
        declared = _TYPE_ALIASES[raw.strip().lower()]

    url = _string(entry, "url", environ)
    command = _string(entry, "command", environ)
    if declared is None:
        if command is not None:
            declared = "stdio"
        elif url is not None:
            path = _split(url, entry["url"]).path.rstrip("/")
            declared = "sse" if path.endswith("/sse") else "http"
        else:
            raise _EntryError("url", "missing: give 'url' (HTTP/SSE) or 'command' (stdio)")

    if declared == "stdio":
        if command is None:
            raise _EntryError("command", "missing: a stdio server needs 'command'")
        cwd = _string(entry, "cwd", environ)
        if cwd is None and base_dir is not None:
            cwd = str(base_dir)
        elif cwd is not None and base_dir is not None and not os.path.isabs(cwd):
            cwd = str(base_dir / cwd)
        return ServerConfig(
            name=name,
            transport="stdio",
            command=command,
            args=_string_list(entry, "args", environ),
            env=_string_map(entry, "env", environ),
            cwd=cwd,
        )

    if url is None:
        raise _EntryError("url", f"missing: a {declared} server needs 'url'")
    parts = _split(url, entry["url"])
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _EntryError("url", f"must be an http:// or https:// URL (got {entry['url']!r})")
    headers = _string_map(entry, "headers", environ)
    for header, value in headers.items():
        _check_header(header, value)
    return ServerConfig(name=name, transport=declared, url=url, headers=headers)


def _split(url: str, written: str) -> SplitResult:
    """The URL's parts, or an error naming it as `written` in the file (before `${VAR}`
    expansion: an error must not show a token a variable put in it; review)."""
    bad = next((i for i, c in enumerate(url) if ord(c) < 0x21 or ord(c) == 0x7F), None)
    if bad is not None:
        why = f"must not contain spaces or control characters (U+{ord(url[bad]):04X} at {bad})"
        raise _EntryError("url", f"{why}: {written!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsed lazily: 99999 raises here)
    except ValueError as e:
        raise _EntryError("url", f"not a valid URL: {e} (got {written!r})") from None
    return parts


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 field name
_FIELD_VALUE = re.compile(r"^[\t\x20-\x7e]*$")  # what httpx sends: ASCII, one line


def _check_header(name: str, value: str) -> None:
    """An HTTP header the client can send: httpx refused these at every reconnect, with its
    own words ("Illegal header value", a UnicodeEncodeError)."""
    if not _TOKEN.fullmatch(name):
        raise _EntryError(f"headers.{name}", "not a valid HTTP header name")
    if not _FIELD_VALUE.fullmatch(value):
        raise _EntryError(
            f"headers.{name}",
            "must be one line of ASCII text (no line breaks or control characters)",
        )


def parse_config(
    data: Any, *, base_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> McpConfig:
    """Normalise an already-decoded mcp.json document; never raises for bad content."""
    environ = os.environ if environ is None else environ
    cfg = McpConfig()
    if not isinstance(data, dict):
        cfg.errors.append(ConfigError("top level must be a JSON object with 'mcpServers'"))
        return cfg
    for key in getattr(data, "twice", ()):
        if key in ("mcpServers", "servers"):  # json kept the last block, silently
            cfg.errors.append(ConfigError("given twice: only the last is read", key=key))
    sections = [k for k in ("mcpServers", "servers") if k in data]
    if not sections:
        cfg.errors.append(ConfigError("missing: no 'mcpServers' (or 'servers')", key="mcpServers"))
        return cfg
    seen: set[str] = set()
    for section in sections:
        block = data[section]
        if not isinstance(block, dict):
            cfg.errors.append(ConfigError("must be an object of name → server", key=section))
            continue
        for name in getattr(block, "twice", ()):
            cfg.errors.append(ConfigError("defined twice", server=name))
        for name, entry in block.items():
            if name in getattr(block, "twice", ()):
                continue
            if name in seen:
                cfg.errors.append(ConfigError("defined twice", server=name))
                continue
            seen.add(name)
            if not _unicode(name):
                problem = "server name must be valid Unicode text (no lone surrogates)"
                cfg.errors.append(ConfigError(problem, server=name))
                continue
            if not name.strip():
                cfg.errors.append(ConfigError("server name must not be empty", server=name))
                continue
            if isinstance(entry, dict) and entry.get("disabled") is True:
                continue
            try:
                cfg.servers.append(_parse_entry(name, entry, base_dir, environ))
            except _EntryError as e:
                cfg.errors.append(ConfigError(e.message, server=name, key=e.key))
    if len(cfg.servers) > MAX_MCP_SERVERS:  # each is a session (or a process) kept open
        left = cfg.servers[MAX_MCP_SERVERS:]
        del cfg.servers[MAX_MCP_SERVERS:]
        names = ", ".join(repr(s.name) for s in left[:3]) + (", …" if len(left) > 3 else "")
        cfg.errors.append(
            ConfigError(f"at most {MAX_MCP_SERVERS} servers: {len(left)} not loaded ({names})")
        )
    return cfg


def load_config(path: str | os.PathLike[str]) -> McpConfig:
    """Read and parse the file; a missing or malformed file is reported, not raised (a file
    that is not UTF-8, a 5,000-digit number or 100,000 nested brackets once stopped web.py
    with a traceback)."""
    p = Path(path)
    data, error = read_document(p)
    cfg = McpConfig(errors=[error]) if error else parse_config(data, base_dir=p.resolve().parent)
    cfg.path = str(p)
    return cfg


def read_document(p: Path) -> tuple[Any, ConfigError | None]:
    """The file's JSON, or why it has none (launch.py reads the user's file with it too)."""
    try:
        text = _decoded(p.read_bytes())
    except FileNotFoundError:
        return None, ConfigError(f"file not found: {p}")
    except OSError as e:
        return None, ConfigError(f"cannot read {p}: {e}")
    except UnicodeDecodeError as e:
        where = f"byte 0x{e.object[e.start]:02x} at position {e.start}"
        return None, ConfigError(f"not UTF-8 text ({where}): save it as UTF-8")
    try:
        return json.loads(text, object_pairs_hook=_Object), None
    except json.JSONDecodeError as e:
        return None, ConfigError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}")
    except ValueError as e:  # Python's 4,300-digit limit for an integer
        return None, ConfigError(f"invalid JSON: a number too long ({e})")
    except RecursionError:
        return None, ConfigError("invalid JSON: nested too deeply")


def _decoded(raw: bytes) -> str:
    """UTF-8, with or without a BOM (Notepad writes one), or UTF-16 with its BOM (what
    Windows PowerShell 5's `echo ... > mcp.json` writes)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig")


class _Object(dict[str, Any]):
    """A JSON object that remembers the names it was given twice (json keeps the last)."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        seen: set[str] = set()
        twice = [k for k, _ in pairs if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
        self.twice = list(dict.fromkeys(twice))
