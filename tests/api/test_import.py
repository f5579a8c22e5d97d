"""Issue 13, bulk import: POST /api/products/import (CSV and JSON) in process on SQLite and on
PostgreSQL, and `api.py import FILE` as a process: rows checked one by one with every error
named by row and field, all or nothing, idempotent by SKU, the body bounded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from models import MAX_IMPORT_BYTES
from product_mcp.shop import Shop, make_engine
from tests.api.helpers import stock
from tests.databases import ModuleDatabase
from tests.inproc import api_app
from tests.servers import ROOT, start

TOKEN = "import-token"
STAFF = {"Authorization": f"Bearer {TOKEN}"}
SAMPLE = ROOT / "deploy" / "sample-catalog.csv"
CSV = {**STAFF, "Content-Type": "text/csv"}


@pytest.fixture
def api(database: ModuleDatabase) -> Iterator[TestClient]:
    with api_app(database.fresh(), admin_token=TOKEN) as client:
        yield client


def _import(api: TestClient, body: str | bytes, kind: str = "text/csv", **kw: object) -> dict:
    r = api.post(
        "/api/products/import", content=body, headers={**STAFF, "Content-Type": kind}, **kw
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_sample_catalogue_imports_and_reimport_changes_nothing(api: TestClient) -> None:
    first = _import(api, SAMPLE.read_bytes())
    assert (first["created"], first["updated"], first["unchanged"]) == (6, 0, 0)
    assert [p["id"] for p in first["products"]] == [5, 6, 7, 8, 9, 10]
    lamp = next(p for p in first["products"] if p["sku"] == "DESK-LAMP-BRASS")
    assert lamp == {
        "id": 6,
        "name": "Brass Desk Lamp",
        "price": 45.5,
        "sku": "DESK-LAMP-BRASS",
        "description": "Warm 2700 K light, heavy brass base, dimmable",
        "stock": 12,
    }
    assert stock(api)[10] == 0  # empty stock cell: a new product starts at 0
    assert [p["id"] for p in api.get("/api/products", params={"q": "lamp"}).json()] == [6]
    again = _import(api, SAMPLE.read_bytes())
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 6)
    assert again["products"] == first["products"]
    assert len(api.get("/api/products").json()) == 10


def test_reimport_updates_by_sku_and_keeps_stock_left_empty(api: TestClient) -> None:
    _import(api, "sku,name,price,stock\nA-1,Kettle,20,5\nA-2,Toaster,30,7\n")
    api.post(
        "/api/purchase", json={"customerName": "Al", "items": [{"productId": 5, "quantity": 2}]}
    )
    report = _import(
        api,
        json.dumps(
            [
                {"sku": "A-1", "name": "Kettle", "price": 22.5},  # price only: stock stays 3
                {"sku": "A-2", "name": "Toaster", "price": 30, "stock": 9},  # stock only
                {"sku": "A-3", "name": "Blender", "price": 55, "description": "1.5 l jug"},
            ]
        ),
        "application/json",
    )
    assert (report["created"], report["updated"], report["unchanged"]) == (1, 2, 0)
    assert stock(api)[5] == 3 and stock(api)[6] == 9 and stock(api)[7] == 0
    assert api.get("/api/products/5").json()["price"] == 22.5


def test_any_bad_row_rejects_the_whole_file(api: TestClient) -> None:
    _import(api, "sku,name,price\nKEEP-1,Kept,1\n")
    bad = (
        "sku,name,description,price,stock\n"
        "NEW-1,Fine,,10,1\n"  # valid, and still not imported
        "NEW-2,,x,abc,-1\n"
        "bad sku,Name,,1,1\n"
        "NEW-1,Again,,1,1\n"
        "NEW-4,Extra,,1,1,surplus\n"
        "NEW-5,Cents,,1.001,1\n"
    )
    r = api.post("/api/products/import", content=bad, headers=CSV)
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"row": 2, "field": "name", "message": "String should have at least 1 character"},
        {"row": 2, "field": "price", "message": "must be a number such as 12.50, got 'abc'"},
        {"row": 2, "field": "stock", "message": "Input should be greater than or equal to 0"},
        {"row": 3, "field": "sku", "message": "String should match pattern "
         "'^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'"},
        {"row": 4, "field": "sku", "message": "NEW-1 is also row 1"},
        {"row": 5, "field": "row", "message": "has more cells than the header has columns"},
        # a validator's own sentence, without pydantic's "Value error, " before it
        {"row": 6, "field": "price", "message": "must have at most 2 decimal places"},
    ]  # fmt: skip
    assert r.json()["detail"].startswith("7 error(s) in the catalogue, nothing was imported")
    assert len(api.get("/api/products").json()) == 5
    # A row that passes on its own but meets an archived product: still nothing imported.
    api.delete("/api/products/5", headers=STAFF)
    r = api.post("/api/products/import", content="sku,name,price\nNEW-1,A,1\nKEEP-1,B,2\n",
                 headers=CSV)  # fmt: skip
    assert r.status_code == 422
    assert r.json()["errors"] == [
        {"row": 2, "field": "sku", "message": "KEEP-1 is product ID 5, which was archived"}
    ]
    assert [p["id"] for p in api.get("/api/products").json()] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("body", "kind", "status", "detail"),
    [
        ("", "text/csv", 422, "The catalogue is empty: its first line must be the header"),
        ("sku,name,price\n", "text/csv", 422, "The catalogue has no products; nothing was"),
        ("name,colour\n", "text/csv", 422, "header must name columns among"),
        (b"\xff\xfe", "text/csv", 422, "is not UTF-8 text"),
        ("{}", "application/json", 422, "must be a JSON list of products"),
        ("[1", "application/json", 422, "is not JSON"),
        ("[3]", "application/json", 422, "row 1, row: must be an object with sku, name and price"),
        # 100,000 deep was a 500 (found from outside, session 17)
        ("[" * 100_000 + "]" * 100_000, "application/json", 422, "nests deeper than the parser"),
        ("sku,name,price\n", "text/plain", 415, "text/csv or application/json"),
    ],
)
def test_bad_files_are_refused_with_a_sentence(
    api: TestClient, body: str | bytes, kind: str, status: int, detail: str
) -> None:
    r = api.post("/api/products/import", content=body, headers={**STAFF, "Content-Type": kind})
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]


def test_import_is_bounded_and_guarded(api: TestClient) -> None:
    big = "sku,name,price\n" + "x" * MAX_IMPORT_BYTES
    r = api.post("/api/products/import", content=big, headers=CSV)
    assert r.status_code == 413
    assert r.json()["detail"] == f"Request body exceeds {MAX_IMPORT_BYTES} bytes"
    rows = "sku,name,price\n" + "".join(f"S{i},P{i},1\n" for i in range(10_001))
    r = api.post("/api/products/import", content=rows, headers=CSV)
    assert r.status_code == 422 and "at most 10000 per import" in r.json()["detail"]
    r = api.post("/api/products/import", content="sku,name,price\nA,B,1\n",
                 headers={"Content-Type": "text/csv"})  # fmt: skip
    assert r.status_code == 401
    assert api.post("/api/purchase", content="x" * 70_000).status_code == 413  # others: 64 KiB


def test_command_line_import(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"sku": "A", "name": "", "price": 1}]))
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for path, code, expected in [
        (SAMPLE, 0, f"imported {SAMPLE}: 6 created, 0 updated, 0 unchanged"),
        (SAMPLE, 0, f"imported {SAMPLE}: 0 created, 0 updated, 6 unchanged"),
        (bad, 1, "api.py import: 1 error(s) in the catalogue, nothing was imported; first: "
         "row 1, name: String should have at least 1 character"),
        (empty, 1, "api.py import: The catalogue is empty: its first line must be the header "
         "(sku,name,price,...); "
         "nothing was imported"),
    ]:  # fmt: skip
        svc = start(["api.py", "import", str(path), "--database-url", url], port=0,
                    health_path=None)  # fmt: skip
        try:
            assert svc.proc.wait(120) == code, svc.log()
        finally:
            svc.stop()
        assert svc.log().strip().splitlines()[-1] == expected
        assert "Traceback" not in svc.log() and "row 0" not in svc.log()  # the file, no row
    shop = Shop(make_engine(url))
    try:  # the catalogue alone: the tutorial's demo products seed only a shop started empty
        names = [line.split(",")[1] for line in SAMPLE.read_text().splitlines()[1:]]
        assert sorted(p.name for p in shop.list_products()) == sorted(names)
    finally:
        shop.engine.dispose()
