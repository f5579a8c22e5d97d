"""An order's lines name their products, in every answer that carries an order: the purchase,
its replay and GET /api/orders (and so main.py's create_purchase and get_orders).

Found from outside (sessions 16 and 17): an order made without the page having shown the
product read "2 × product #3" in the chat (lines carried ids only). Added next to the seed's
fields (`productId`, `quantity`), never instead of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.databases import DATABASES
from tests.inproc import api_on_fresh_database


@pytest.mark.parametrize("db_kind", DATABASES)
def test_order_lines_name_their_products(tmp_path: Path, db_kind: str) -> None:
    with api_on_fresh_database(db_kind, tmp_path, "order_names") as api:
        body = {"customerName": "Named", "items": [{"productId": 3, "quantity": 2},
                                                   {"productId": 1, "quantity": 1}]}  # fmt: skip
        headers = {"Idempotency-Key": "named-1"}
        bought = api.post("/api/purchase", json=body, headers=headers)
        assert bought.status_code == 200, bought.text
        lines = [
            {"productId": 3, "quantity": 2, "name": "Portable Power Bank"},
            {"productId": 1, "quantity": 1, "name": "Galaxy Smart Watch"},
        ]
        assert bought.json()["items"] == lines
        replay = api.post("/api/purchase", json=body, headers=headers)
        assert replay.json()["items"] == lines and replay.json()["id"] == bought.json()["id"]
        [listed] = api.get("/api/orders", params={"customer": "Named"}).json()
        assert listed["items"] == lines
        confirmed = api.post("/api/purchase", json={**body, "expectedTotalAmount": 1897})
        assert confirmed.json()["items"] == lines, confirmed.text  # the transaction's way
