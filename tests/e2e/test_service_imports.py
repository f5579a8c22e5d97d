"""Each service imports only what its settings use (issue #10: idle memory).

Why: every library a service imports stays in its memory for good. api.py has no use for the
MCP SDK (~23 MiB) nor, on a database already at this release's revision, for Alembic (~10 MiB);
main.py needs redis (~20 MiB) only with REDIS_URL; web.py needs openai (~20 MiB) only once an
LLM key is set. Each check runs in a fresh interpreter (this process has imported everything),
builds the app with the default settings, starts it where starting is what loads a library,
and lists which of the heavy libraries got loaded. A check with the setting turned on shows
the probe sees the library when it is there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from product_mcp.shop import Shop, make_engine

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["alembic", "mcp", "openai", "psycopg", "redis"]

PROBE = """
import json, sys
{build}
print(json.dumps(sorted(m for m in {heavy} if m in sys.modules)))
"""

API = """
from starlette.testclient import TestClient
import api
with TestClient(api.create_app({url!r})) as client:
    assert client.get("/api/products").status_code == 200
"""

MAIN = """
import main
app = main.build_app(main.parse_args([]))
"""

WEB = """
import web
app = web.create_app()
"""


def loaded(build: str, tmp: Path, **env: str) -> list[str]:
    """The heavy libraries a fresh interpreter has loaded after running `build`."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": "", "OPENAI_API_KEY": "", **env}
    full.pop("TESTS_FRESH_PROCESSES", None)
    code = PROBE.format(build=build, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp, env=full, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_api_loads_neither_the_mcp_sdk_nor_alembic_on_a_current_database(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    engine = make_engine(f"sqlite:///{db}")
    Shop(engine).init()  # at this release's revision: nothing to migrate
    engine.dispose()
    assert loaded(API.format(url=f"sqlite:///{db}"), tmp_path) == []


def test_api_loads_alembic_when_it_has_to_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert loaded(API.format(url=url), tmp_path) == ["alembic"]


def test_main_loads_redis_only_with_redis_url(tmp_path: Path) -> None:
    assert loaded(MAIN, tmp_path) == ["mcp"]
    with_redis = loaded(MAIN, tmp_path, REDIS_URL="redis://127.0.0.1:6379/0")
    assert with_redis == ["mcp", "redis"]


def test_web_loads_openai_only_with_a_key(tmp_path: Path) -> None:
    mcp_json = tmp_path / "mcp.json"
    mcp_json.write_text('{"mcpServers": {}}')
    assert loaded(WEB, tmp_path, MCP_CONFIG_PATH=str(mcp_json)) == ["mcp"]
    keyed = loaded(WEB, tmp_path, MCP_CONFIG_PATH=str(mcp_json), OPENAI_API_KEY="k")
    assert keyed == ["mcp", "openai"]
