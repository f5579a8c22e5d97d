"""The one-command start: launch.py brings up the trio, prints where, and stops it cleanly."""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from product_mcp.core.config import load_settings
from product_mcp.core.serve import bind_problem
from tests.mcp_helpers import INIT
from tests.servers import ROOT, free_port

READY = "product-mcp is ready"


def launch(
    tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], dict[str, int]]:
    ports = {"api": free_port(), "mcp": free_port(), "web": free_port()}
    args = [f"--{name}-port={port}" for name, port in ports.items()]
    inherited = {k: v for k, v in os.environ.items() if k != "MCP_CONFIG_PATH"}
    env = {
        **inherited,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shop.db'}",
        "OPENAI_API_KEY": "",
        "MCP_AUTH_TOKEN": "",
        "NO_COLOR": "1",
        **(env or {}),
    }
    proc = subprocess.Popen(
        [sys.executable, "launch.py", *args, *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return proc, ports


@contextmanager
def launched(
    tmp_path: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], dict[str, int]]]:
    """launch(), and whatever happens in the block, nothing it started outlives it: the
    services run in their own sessions, so killing the launcher alone would orphan them."""
    proc, ports = launch(tmp_path, *extra, env=env)
    try:
        yield proc, ports
    finally:
        if proc.poll() is None:
            kids = child_pids(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for kid in kids:
                with suppress(ProcessLookupError):
                    os.killpg(kid, signal.SIGKILL)


_LINES: weakref.WeakKeyDictionary[subprocess.Popen[str], queue.Queue[str | None]] = (
    weakref.WeakKeyDictionary()
)


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 90) -> str:
    """The launcher's output up to the line holding `marker`; an AssertionError (never a hang)
    if it does not come within `timeout` s. A thread reads the lines: a launcher that goes
    quiet without exiting blocks that thread, not the test."""
    lines = _LINES.get(proc)
    if lines is None:
        assert proc.stdout is not None
        stdout, lines = proc.stdout, queue.Queue()
        _LINES[proc] = lines

        def pump(sink: queue.Queue[str | None] = lines) -> None:
            for line in stdout:
                sink.put(line)
            sink.put(None)

        threading.Thread(target=pump, daemon=True).start()
    out: list[str] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            lines.put(None)  # the end, for any later call too
            break
        out.append(line)
        if marker in line:
            return "".join(out)
    raise AssertionError(f"{marker!r} not seen; output:\n{''.join(out)}")


def child_pids(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in found.split()]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def mcp_initialize(url: str) -> httpx.Response:
    headers = {"Accept": "application/json, text/event-stream"}
    return httpx.post(url, json=INIT, headers=headers, timeout=10)


def test_launcher_runs_the_trio_and_stops_on_sigint(tmp_path: Path) -> None:
    with launched(tmp_path) as (proc, ports):
        out = read_until(proc, "=" * 64 + "\n", timeout=90)
        out += read_until(proc, "=" * 64)
        assert READY in out
        api, mcp, web = (f"http://127.0.0.1:{ports[n]}" for n in ("api", "mcp", "web"))
        for url in (f"{api}/docs", f"{mcp}/mcp", f"{mcp}/sse", f"{web}/"):
            assert url in out
        assert f'"url": "{mcp}/mcp"' in out  # the paste-ready mcp.json snippet
        assert re.search(r"^api \| ", out, re.M) and re.search(r"^mcp \| ", out, re.M)

        assert httpx.get(f"{api}/api/products").json()[0]["name"] == "Galaxy Smart Watch"
        r = mcp_initialize(f"{mcp}/mcp")
        assert r.status_code == 200 and "serverInfo" in r.text
        assert r.headers.get("mcp-session-id")
        with httpx.stream("GET", f"{mcp}/sse", timeout=10) as sse:
            assert sse.status_code == 200
            first = next(sse.iter_lines())
            assert first.startswith("event: endpoint")
        page = httpx.get(f"{web}/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        servers = httpx.get(f"{web}/api/servers").json()
        assert isinstance(servers, dict | list)

        kids = child_pids(proc.pid)
        assert len(kids) == 3
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0
        deadline = time.monotonic() + 10
        while not all(gone(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(gone(k) for k in kids)


def test_a_launcher_killed_outright_takes_its_services_with_it(tmp_path: Path) -> None:
    """Found from outside: `kill -9` of the launcher left api.py and main.py running (in
    sessions of their own) and holding the ports, so the next launch said "port in use"."""
    with launched(tmp_path, "--no-web") as (proc, ports):
        read_until(proc, READY)
        kids = child_pids(proc.pid)
        assert len(kids) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15
        while not all(gone(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(gone(k) for k in kids), [k for k in kids if not gone(k)]
        for port in (ports["api"], ports["mcp"]):  # free for the next launch
            assert bind_problem("127.0.0.1", port, "PORT") is None


def test_api_py_killed_outright_takes_its_workers_and_the_launcher_with_it(
    tmp_path: Path,
) -> None:
    """Found from outside: `kill -9` of api.py (with --api-workers 2) went unnoticed: its
    orphaned workers kept the port, and the launcher's pipe, open, so the launcher (Python
    3.11's asyncio reports a process's end once its pipes close) never said api.py had died,
    and left the workers running when it was stopped."""
    with launched(tmp_path, "--no-web", "--api-workers", "2") as (proc, ports):
        read_until(proc, READY)
        api = next(k for k in child_pids(proc.pid) if "api.py" in cmdline(k))
        deadline = time.monotonic() + 30
        while len(child_pids(api)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = child_pids(api)
        assert len(workers) == 2, workers
        os.kill(api, signal.SIGKILL)
        out = read_until(proc, "launcher: api (api.py)", timeout=30)
        assert proc.wait(30) == 1, out
        deadline = time.monotonic() + 15
        while not all(gone(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(gone(w) for w in workers), [w for w in workers if not gone(w)]
        assert bind_problem("127.0.0.1", ports["api"], "PORT") is None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_auth_token_reaches_web_through_the_generated_config(tmp_path: Path) -> None:
    with launched(tmp_path, env={"MCP_AUTH_TOKEN": "s3cret-token"}) as (proc, ports):
        out = read_until(proc, READY)
        out += read_until(proc, "=" * 64)
        assert "s3cret-token" not in out  # masked in every service's settings line
        mcp = f"http://127.0.0.1:{ports['mcp']}"
        assert mcp_initialize(f"{mcp}/mcp").status_code == 401
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            servers = httpx.get(f"http://127.0.0.1:{ports['web']}/api/servers").json()
            entries = servers["servers"] if isinstance(servers, dict) else servers
            if entries and entries[0]["status"] == "connected":
                break
            time.sleep(0.2)
        assert entries[0]["status"] == "connected", entries
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0


def test_web_follows_the_started_mcp_port_even_with_a_copied_env(tmp_path: Path) -> None:
    """`.env.example` copied to `.env` sets MCP_CONFIG_PATH=mcp.json (port 8083); a launcher
    started with another MCP port must still wire web.py to its own main.py, and say ready
    only once web.py is connected to it."""
    with launched(tmp_path, env={"MCP_CONFIG_PATH": "mcp.json"}) as (proc, ports):
        out = read_until(proc, READY)
        servers = httpx.get(f"http://127.0.0.1:{ports['web']}/api/servers").json()["servers"]
        ours = next(s for s in servers if s["name"] == "product-mcp")
        assert ours["url"] == f"http://127.0.0.1:{ports['mcp']}/mcp"
        assert ours["status"] == "connected", (ours, out)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0


def test_port_in_use_is_reported_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Named by what moves it: the flag when given (found from outside: "set MCP_PORT" after
    `--mcp-port`, which wins over it), else the setting."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        proc, _ports = launch(tmp_path, f"--mcp-port={taken}")
        out, _ = proc.communicate(timeout=30)
        assert f"port {taken} is in use: pass another --mcp-port or stop the other" in out
        import launch as launcher  # the env route: the flag left out (no services started)

        settings = load_settings().model_copy(update={"MCP_PORT": taken})
        a = launcher.parse_args(["--no-web", f"--api-port={free_port()}"], settings)
        assert launcher.run(a, settings, launcher.plan(a, settings, tmp_path)) == 2
    assert proc.returncode != 0
    said = capsys.readouterr().err
    assert f"port {taken} is in use: set MCP_PORT or stop the other process" in said
    assert "Started server process" not in out  # nothing was started


def test_a_dying_service_stops_the_rest(tmp_path: Path) -> None:
    bad = tmp_path / "not-a-dir" / "x"
    bad.parent.write_text("a file where a directory should be")
    proc, _ = launch(tmp_path, f"--database-url=sqlite:///{bad}/shop.db", "--no-web")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert "launcher: api (api.py)" in out
    assert "last lines of api" in out
    assert "mcp |" not in out  # never started after the API failed


def test_readme_quick_start_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\n.*?```bash\n(.*?)```", readme, re.S)
    assert block, "README has no Quick start bash block"
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) >= 2
    for command in commands:
        for part in command.split("&&"):
            words = shlex.split(part)
            for i, word in enumerate(words):
                if word.endswith((".py", ".sh")) or word.startswith(("./", ".ci/")):
                    assert (ROOT / word).exists(), f"{word} in {command!r} does not exist"
                if word == "python" and i + 1 < len(words) and words[i + 1].endswith(".py"):
                    script = (ROOT / words[i + 1]).read_text()
                    for flag in (w for w in words[i + 2 :] if w.startswith("--")):
                        assert flag.split("=")[0] in script, f"{flag} unknown to {words[i + 1]}"


def test_env_example_lists_every_setting() -> None:
    from product_mcp.core.config import Settings, env_example

    example = (ROOT / ".env.example").read_text()
    assert example == env_example(), "regenerate: uv run python -m product_mcp.core.config"
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`{name}`" in readme, f"{name} missing from the README settings table"


def test_a_replica_is_healed_however_often_it_dies_but_a_crash_loop_is_not() -> None:
    """A replica behind the balancer that dies now and then is always started again (the
    launcher once gave up after its 5th restart, whenever those were: the 3rd rolling restart
    of two replicas left one dead); 5 deaths within 30 s is a crash loop and ends it."""
    from product_mcp.core import supervisor

    replica = supervisor.Child("mcp1", ["main.py"], 1, env={"MCP_REPLICA_TAG": "r1"})
    now = time.monotonic()
    replica.restarts.extend(now - 600 + 70 * i for i in range(supervisor.RESTARTS))
    assert supervisor.may_restart(replica)
    replica.restarts.extend(now - 5 + i for i in range(supervisor.RESTARTS))
    assert not supervisor.may_restart(replica)
    assert not supervisor.may_restart(supervisor.Child("api", ["api.py"], 2))


def test_a_replica_port_is_held_from_its_pick_to_its_start(tmp_path: Path) -> None:
    """CI once failed with "mcp1: port 45649 is in use": the launcher picked a free loopback
    port for each replica and started the replica seconds later (after api.py's migrations),
    and meanwhile the port was taken (an outgoing connection's source port). The launcher now
    binds the socket when it picks the port and hands that socket to main.py (`--fd`), so
    nothing else can bind the port in between."""
    import launch
    from product_mcp.core.config import load_settings

    settings = load_settings()
    args = launch.parse_args(["--mcp-replicas", "2", "--no-web"], settings)
    children = launch.plan(args, settings, tmp_path)
    replicas = [c for c in children if "MCP_REPLICA_TAG" in c.env]
    assert len(replicas) == 2
    try:
        for child in replicas:
            for reuse in (False, True):  # a plain bind, and uvicorn's (SO_REUSEADDR)
                with socket.socket() as other:
                    if reuse:
                        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    try:
                        other.bind(("127.0.0.1", child.port))
                    except OSError:
                        continue
                    raise AssertionError(f"{child.name}'s port {child.port} could be taken")
    finally:
        for child in replicas:
            if child.sock is not None:
                child.sock.close()


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('{"mcpServers": {"a": {"url": "http://x/mcp"},}}', "invalid JSON at line 1 column"),
        ('{"mcpServer": {"a": {"url": "http://x/mcp"}}}', "key 'mcpServers': missing"),
        ("[]", "top level must be a JSON object"),
    ],
)
def test_a_broken_mcp_json_is_refused_by_name(tmp_path: Path, text: str, said: str) -> None:
    """Found from outside: the launcher read the user's mcp.json, and when it was not valid
    it carried on with product-mcp alone: the user's other servers vanished without a word
    (web.py on its own reports the file). It now refuses to start, saying what is wrong."""
    config = tmp_path / "mine.json"
    config.write_text(text)
    proc, _ports = launch(tmp_path, env={"MCP_CONFIG_PATH": str(config)})
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2, out
    assert f"launcher: {config}: mcp.json: {said}" in out, out
    assert "Started server process" not in out  # nothing was started


def test_servers_in_a_vs_code_mcp_json_are_kept(tmp_path: Path) -> None:
    """VS Code's format names the block `servers`: web.py reads it, and so does the launcher
    (it kept `mcpServers` only: those servers vanished)."""
    import launch as launcher

    config = tmp_path / "vscode.json"
    config.write_text('{"servers": {"other": {"type": "http", "url": "http://127.0.0.1:9/mcp"}}}')
    settings = load_settings().model_copy(update={"MCP_CONFIG_PATH": str(config)})
    servers = launcher.web_config(settings, "http://127.0.0.1:1/mcp")["mcpServers"]
    assert servers["other"]["url"] == "http://127.0.0.1:9/mcp"
    assert servers["product-mcp"] == {"url": "http://127.0.0.1:1/mcp"}
    # What web.py runs with, warning, the launcher does not refuse (review): a block given
    # twice, more servers than web.py loads (product-mcp comes first, so it is loaded)
    many = {f"s{i}": {"url": f"http://127.0.0.1:9/{i}"} for i in range(70)}
    config.write_text('{"mcpServers": {}, "mcpServers": ' + json.dumps(many) + "}")
    servers = launcher.web_config(settings, "http://127.0.0.1:1/mcp")["mcpServers"]
    assert next(iter(servers)) == "product-mcp" and len(servers) == 71
