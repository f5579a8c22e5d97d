"""Starting a service as a new user would: bad ports, busy ports, settings, unreachable peers.

Each case was a trap found by trying the quick start by hand (issue #10); the process is the
point here, so every test runs the real script.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from product_mcp.core import mcp_compat, serve
from product_mcp.core.config import Settings, load_settings
from product_mcp.shop import commands
from tests.servers import ROOT, dead_port, free_port
from tests.stack import Stack
from tests.web_helpers import write_config

SCRIPTS = {"api.py": "API_PORT", "main.py": "MCP_PORT", "web.py": "WEB_PORT"}


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 60) -> str:
    """Run a script to completion (it is expected to refuse to start); stdout+stderr."""
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode != 0, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    return out


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        yield blocker.getsockname()[1]


@pytest.mark.parametrize("script", list(SCRIPTS))
def test_out_of_range_port_flag_is_refused(script: str) -> None:
    out = run([script, "--port", "99999"])
    assert "must be between 1 and 65535, got 99999" in out


def test_worker_counts_and_timeouts_on_the_command_line_are_checked_as_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Found from outside: `api.py --workers 0` and `-1` started (the banner said
    API_WORKERS = 0), `--workers 100` started 100, and `launch.py --timeout -5` started the
    services before giving up "within -5s", though API_WORKERS=0 was refused."""
    out = run(["api.py", "--workers", "0"])
    assert "argument --workers: must be between 1 and 64, got 0" in out
    import launch  # the launcher's flags, without starting anything

    settings = load_settings()
    for flags, why in (
        (["--api-workers", "65"], "must be between 1 and 64, got 65"),
        (["--api-workers", "-1"], "must be between 1 and 64, got -1"),
        (["--timeout", "-5"], "must be more than 0 seconds, got -5"),
        (["--timeout", "0"], "must be more than 0 seconds, got 0"),
        (["--timeout", "inf"], "must be a finite number of seconds, got inf"),
        (["--timeout", "nan"], "must be a finite number of seconds, got nan"),
    ):
        with pytest.raises(SystemExit):
            launch.parse_args(flags, settings)
        assert why in capsys.readouterr().err, flags
    assert serve.int_arg(1, 64)("64") == 64 and serve.seconds_arg("0.5") == 0.5
    with pytest.raises(argparse.ArgumentTypeError, match="must be an integer, got 'x'"):
        serve.int_arg(1, 64)("x")


def test_a_host_this_machine_does_not_have_is_not_called_a_busy_port() -> None:
    out = run(["launch.py", "--host", "999.1.1.1", "--api-port", "1", "--mcp-port", "2"])
    assert "cannot listen on 999.1.1.1:1: this machine has no such address" in out
    assert "in use" not in out


@pytest.mark.parametrize(("script", "var"), list(SCRIPTS.items()))
def test_out_of_range_port_setting_is_refused(script: str, var: str) -> None:
    out = run([script], env={var: "70000"})
    assert f"{var} must be between 1 and 65535, got '70000'" in out


@pytest.mark.parametrize("by_flag", [True, False])
@pytest.mark.parametrize(("script", "var"), list(SCRIPTS.items()))
def test_busy_port_is_a_sentence(
    script: str, var: str, by_flag: bool, busy_port: int, tmp_path: Path
) -> None:
    """The sentence names what moves the port: `--port` when it was given (it wins over the
    setting: "set API_PORT" could not help, found from outside), else the setting."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'shop.db'}", var: str(busy_port)}
    if script == "web.py":
        # A server web.py could reach: it must not even try before it knows it can bind.
        env["MCP_CONFIG_PATH"] = str(
            write_config(tmp_path / "mcp.json", {"s": {"url": "http://127.0.0.1:9/mcp"}})
        )
    port = ["--port", str(busy_port)] if by_flag else []
    out = run([script, "--host", "127.0.0.1", *port], env=env)
    move = "pass another --port" if by_flag else f"set {var}"
    assert f"port {busy_port} is in use: {move} or stop the other process" in out
    assert "Errno" not in out
    # the banner, naming the address it would serve, comes only once the port is ours
    assert f":{busy_port}" not in out.replace(f"port {busy_port} is in use", "")
    assert "connecting" not in out.lower() and "127.0.0.1:9" not in out  # web.py: no session


def test_bad_settings_name_the_variable() -> None:
    cases = {
        "TOOL_APPROVAL": ("sometimes", "TOOL_APPROVAL must be one of ask or auto, got 'sometimes'"),
        "LLM_TIMEOUT": ("soon", "LLM_TIMEOUT must be a number, got 'soon'"),
        "API_WORKERS": ("0", "API_WORKERS must be between 1 and 64, got '0'"),
        "TOOL_CALL_TIMEOUT": ("0", "TOOL_CALL_TIMEOUT must be greater than 0, got '0'"),
        # Found from outside: these were tracebacks from main.py's lifespan, or accepted.
        "HEADER_TIMEOUT": ("inf", "HEADER_TIMEOUT must be a finite number, got 'inf'"),
        "REDIS_URL": (
            "garbage",
            "REDIS_URL is not a Redis URL redis-py can use (Redis URL must specify one of the "
            "following schemes (redis://, rediss://, unix://)), got 'garbage'",
        ),
    }
    for var, (value, sentence) in cases.items():
        with pytest.raises(SystemExit) as stop:
            load_settings(**{var: value})
        assert str(stop.value) == sentence

    for secret in ("s3cret", "pa/ssw0rd", "abc#defgh"):  # the password stays out of it
        with pytest.raises(SystemExit) as stop:
            load_settings(REDIS_URL=f"redis://:{secret}@127.0.0.1:notaport/0")
        said = str(stop.value)
        assert said.startswith("REDIS_URL is not a Redis URL redis-py can use, got"), said
        assert "redis://***@127.0.0.1" in said and not {secret, secret[:3]} & set(said.split("'"))
        assert secret not in said
    assert load_settings(REDIS_URL="rediss://u:p@cache.example:6380/2").REDIS_URL

    assert load_settings(CURRENCY=" eur ").CURRENCY == "EUR"  # issue 14: codes, any case
    with pytest.raises(SystemExit) as stop:
        load_settings(CURRENCY="euros")
    assert str(stop.value) == (
        "CURRENCY must be a three-letter ISO 4217 code such as USD or EUR, got 'EUROS'"
    )


def test_empty_variable_means_default_and_env_beats_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LLM_MODEL=from-dotenv\nMCP_PORT=9999\nWEB_PORT=9998\n")
    monkeypatch.setenv("MCP_PORT", "")  # set but empty: the default, not .env's value
    monkeypatch.setenv("WEB_PORT", "8123")
    monkeypatch.delenv("LLM_MODEL", raising=False)
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.LLM_MODEL == "from-dotenv"
    assert settings.MCP_PORT == 8083
    assert settings.WEB_PORT == 8123


def test_secrets_and_url_passwords_are_masked() -> None:
    settings = Settings(
        OPENAI_API_KEY="sk-123",  # type: ignore[arg-type]
        DATABASE_URL="postgresql+psycopg://shop:hunter2@db:5432/shop",
    )
    text = settings.summary(["OPENAI_API_KEY", "MCP_AUTH_TOKEN", "DATABASE_URL"])
    assert "sk-123" not in text and "hunter2" not in text
    assert "OPENAI_API_KEY = (set)" in text and "MCP_AUTH_TOKEN = (not set)" in text
    assert "shop:***@db:5432" in text


def test_sdk_internals_check_names_what_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert mcp_compat.missing() == []  # the pinned SDK has everything we rely on
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    monkeypatch.delattr(StreamableHTTPSessionManager, "_admit_session")
    with pytest.raises(SystemExit) as stop:
        mcp_compat.check()
    assert "StreamableHTTPSessionManager._admit_session" in str(stop.value)
    assert "mcp>=2.3,<2.4" in str(stop.value)


def test_api_workers_fall_back_to_spawning_on_another_uvicorn(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """api.py forks its workers through uvicorn's private `_subprocess.spawn`: while it runs,
    that is the fork context; a uvicorn without it still gets its workers, spawned, and
    the log says so."""
    from uvicorn import _subprocess

    spawn = _subprocess.spawn
    with serve._forked_workers():
        assert _subprocess.spawn.Process.__mro__[1].__name__ == "ForkProcess"
    assert _subprocess.spawn is spawn
    monkeypatch.delattr(_subprocess, "spawn")
    with serve._forked_workers():
        assert not hasattr(_subprocess, "spawn")
    assert "workers are spawned, not forked" in caplog.text


def test_sdk_check_sees_an_attribute_assignment_go() -> None:
    """The check reads the SDK's bytecode: an attribute stored in a method, a closure or a
    property setter counts; a class that stopped storing it is caught."""

    class Before:
        def __init__(self) -> None:
            self._closed: bool = False

        @property
        def state(self) -> int:
            return 0

        @state.setter
        def state(self, value: int) -> None:
            def later() -> None:
                self._task_group = value

            later()

    class After:
        def __init__(self) -> None:
            self.closed = False  # renamed: what we read is gone

    assert mcp_compat._assigns(Before, "_closed")
    assert mcp_compat._assigns(Before, "_task_group")
    assert not mcp_compat._assigns(After, "_closed")
    assert not mcp_compat._assigns(Before, "closed")


def test_unreachable_api_is_named_in_tool_errors(tmp_path: Path) -> None:
    """main.py with nothing at PRODUCT_API_URL says where it looked."""
    from tests.mcp_helpers import connect, text_of

    with dead_port() as port, Stack(tmp_path) as s:
        dead = f"http://127.0.0.1:{port}/api"
        svc = s.mcp(dead.removesuffix("/api"))  # PRODUCT_API_URL = dead
        import anyio

        async def call() -> str:
            async with connect("legacy", svc.url) as client:
                return text_of(await client.call_tool("get_products", {}))

        text = anyio.run(call)
        assert f"product API at {dead}" in text


def test_web_warns_with_the_url_it_tried(tmp_path: Path) -> None:
    with dead_port() as port, Stack(tmp_path) as s:
        dead = f"http://127.0.0.1:{port}/mcp"
        web = s.web({"shop": {"url": dead}})
        deadline = time.monotonic() + 20
        while dead not in web.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert f"shop ({dead})" in web.log()
        servers = httpx.get(f"{web.url}/api/servers").json()["servers"]
        assert servers[0]["url"] == dead and servers[0]["status"] != "connected"


def test_a_database_api_py_cannot_use_is_a_sentence(tmp_path: Path) -> None:
    """Not a traceback from the start-up of each worker (found trying it from outside). The
    sentences in process; that api.py and `api.py import` check first, as processes."""
    with dead_port() as port:
        for url, sentence in (
            ("foo://", "DATABASE_URL 'foo://' cannot be used"),
            ("not a url", "DATABASE_URL 'not a url' cannot be used"),
            (
                f"postgresql+psycopg://shop:secret@127.0.0.1:{port}/shop",
                f"cannot reach the database at postgresql+psycopg://shop:***@127.0.0.1:{port}/shop",
            ),
            (
                f"sqlite:///{tmp_path / 'no-such-dir' / 'shop.db'}",
                "cannot reach the database at sqlite:///",
            ),
        ):
            with pytest.raises(SystemExit) as stop:
                commands.check_database(url)
            assert sentence in str(stop.value) and "secret" not in str(stop.value)
        out = run(["api.py", "--port", str(free_port())], env={"DATABASE_URL": "foo://"})
        assert "DATABASE_URL 'foo://' cannot be used" in out and len(out.splitlines()) <= 3, out
        unreachable = f"postgresql+psycopg://shop:secret@127.0.0.1:{port}/shop"
        out = run(["api.py", "import", "deploy/sample-catalog.csv", "--database-url", unreachable])
        assert "cannot reach the database at" in out and "secret" not in out, out
