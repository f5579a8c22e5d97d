"""Text a database cannot store gets the same answer on SQLite and PostgreSQL, never a 500.

PostgreSQL's text type refuses NUL, and neither driver can encode a lone surrogate (JSON's
"\\ud800") as UTF-8. schemathesis found `GET /api/orders?customer=%00...` answering 500 on
PostgreSQL only; a purchase by a name with a lone surrogate answered 500 on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from api import create_app
from tests.databases import DATABASES, fresh_database


@pytest.fixture(scope="module", params=DATABASES)
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    tmp: Path = tmp_path_factory.mktemp("text")
    with (
        fresh_database(request.param, tmp, "unstorable") as url,
        TestClient(create_app(url), raise_server_exceptions=False) as c,
    ):
        yield c


@pytest.mark.parametrize("name", ["a\x00b", "\x00", "ÉMILE\x00"])
def test_customer_lookup_with_nul_finds_nothing(client: TestClient, name: str) -> None:
    r = client.get("/api/orders", params={"customer": name})
    assert (r.status_code, r.json()) == (200, [])


def test_purchase_by_a_name_with_a_lone_surrogate_is_refused(client: TestClient) -> None:
    body = b'{"customerName": "a\\ud800b", "items": [{"productId": 1, "quantity": 1}]}'
    r = client.post("/api/purchase", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"detail": "Invalid request: customer name is not valid Unicode text"}
    assert client.get("/api/inventory/1").json()["quantity"] == 100


def test_purchase_by_a_name_with_nul_is_refused_by_validation(client: TestClient) -> None:
    r = client.post(
        "/api/purchase",
        json={"customerName": "a\x00b", "items": [{"productId": 1, "quantity": 1}]},
    )
    assert r.status_code == 422
    assert "control characters" in r.text
