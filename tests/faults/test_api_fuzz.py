"""Issue 7, API side: schemathesis against api.py's own OpenAPI schema (a real process: its CLI
fuzzes a URL), and Hypothesis properties of the purchase logic (the app in process); each on
SQLite and on PostgreSQL (`db_kind`, tests/databases.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.databases import fresh_database
from tests.inproc import api_on_fresh_database
from tests.servers import ROOT, Service
from tests.stack import Stack

# What the API promises for any input: no 5xx, and every answer is one the schema documents.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    ]
)


STAFF_TOKEN = "fuzz-staff-token"  # so the staff routes (issue 13) are fuzzed past their guard


@pytest.fixture(scope="module")
def fuzz_api(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with fresh_database(db_kind, tmp, "fuzz") as url, Stack(tmp) as s:
        yield s.api(database_url=url, env={"ADMIN_TOKEN": STAFF_TOKEN})


def test_schemathesis_every_operation(fuzz_api: Service) -> None:
    """Examples, coverage, fuzzing and stateful (link-following) phases over every operation,
    each run once."""
    schemathesis = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{fuzz_api.url}/openapi.json",
            "--checks",
            CHECKS,
            # A fixed number of cases per operation and phase, one pass each, seeded: the
            # same ~1,450 requests on every machine (a --max-time box repeated the fuzzing
            # and stateful phases until it ran out: more cases on a fast machine, fewer on a
            # busy one, and ~30 s of CPU per database either way).
            "--max-examples",
            "30",
            "--seed",
            "20261124",
            "--header",
            f"Authorization: Bearer {STAFF_TOKEN}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Selected: 16/16" in run.stdout
    for phase in ("Coverage", "Fuzzing", "Stateful"):  # each phase ran, and found nothing
        assert f"✅ {phase}" in run.stdout, run.stdout[-3000:]
    assert "Server error" not in fuzz_api.log()


items = st.lists(
    st.fixed_dictionaries({"productId": st.integers(-2, 6), "quantity": st.integers(-3, 120)}),
    max_size=5,
)


@pytest.fixture(scope="module")
def prop_api(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with api_on_fresh_database(db_kind, tmp_path_factory.mktemp("prop"), "prop") as client:
        yield client


@given(purchases=st.lists(st.tuples(st.text(max_size=5), items), max_size=12))
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_stock_and_totals_add_up(prop_api: TestClient, purchases: list) -> None:
    """For any sequence of purchases, valid or not: stock = before - ordered >= 0, and each
    new order's total is the exact sum of price x quantity."""
    c = prop_api
    prices = {p["id"]: p["price"] for p in c.get("/api/products").json()}
    before = {i["productId"]: i["quantity"] for i in c.get("/api/inventory").json()}
    known = {o["id"] for o in c.get("/api/orders").json()}
    for name, its in purchases:
        r = c.post("/api/purchase", json={"customerName": name, "items": its})
        assert r.status_code in (200, 400, 404, 422), r.text
    after = {i["productId"]: i["quantity"] for i in c.get("/api/inventory").json()}
    new = [o for o in c.get("/api/orders").json() if o["id"] not in known]
    ordered = dict.fromkeys(before, 0)
    for order in new:
        cents = 0
        for item in order["items"]:
            ordered[item["productId"]] += item["quantity"]
            cents += round(prices[item["productId"]] * 100) * item["quantity"]
        assert order["totalAmount"] == cents / 100
    for pid, start in before.items():
        assert after[pid] == start - ordered[pid] >= 0
