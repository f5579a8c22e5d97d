"""Reading a catalogue file for bulk import: CSV or JSON, checked row by row before any write.

Why apart from the writes: every row is parsed and validated first, and all the errors come back
at once (row and field each), so a file with one bad line changes nothing and says exactly what
to fix. Rows are numbered from 1 in file order (CSV: the header line is not a row).

Format (the same fields in both): `sku` (required: the key a re-import updates by), `name`,
`price`, optional `description` and `stock` (an existing product keeps its stock when the
stock is left empty). CSV needs a header line naming its columns; JSON is a list of objects.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from models import MAX_IMPORT_ROWS, Description, ProductName, Sku, Stock, UnitPrice
from product_mcp.core.errors import ShopError

FIELDS = ("sku", "name", "description", "price", "stock")
EXTRA = "(extra cells)"
MAX_ERRORS = 100  # listed in one answer; the count says how many there were


class ImportRow(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    name: ProductName
    description: Description = ""
    price: UnitPrice
    stock: Stock | None = None


@dataclass(frozen=True)
class RowError:
    row: int
    field: str
    message: str


class ImportRejected(ShopError):
    """The file (or some of its rows) is invalid: nothing was imported."""

    status = 422

    def __init__(self, errors: list[RowError]) -> None:
        first = errors[0]
        super().__init__(
            f"The catalogue {first.message}; nothing was imported"
            if first.row == 0
            else f"{len(errors)} error(s) in the catalogue, nothing was imported; first: row "
            f"{first.row}, {first.field}: {first.message}"
        )
        self.errors = errors

    @property
    def body(self) -> dict[str, Any]:
        return {
            "errors": [
                {"row": e.row, "field": e.field, "message": e.message}
                for e in self.errors[:MAX_ERRORS]
            ]
        }


def _file_error(message: str) -> ImportRejected:
    return ImportRejected([RowError(0, "file", message)])


def parse(data: bytes, kind: str) -> list[ImportRow]:
    """The rows of a CSV (`kind` "csv") or JSON file, all valid, or ImportRejected."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _file_error("is not UTF-8 text") from None
    raw = _json_records(text) if kind == "json" else _csv_records(text)
    if not raw:
        raise _file_error("has no products")
    if len(raw) > MAX_IMPORT_ROWS:
        raise _file_error(f"has {len(raw)} products; at most {MAX_IMPORT_ROWS} per import")
    rows: list[ImportRow] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    for n, record in enumerate(raw, start=1):
        try:
            row = ImportRow.model_validate(record)
        except ValidationError as e:
            errors += [_row_error(n, record, err) for err in e.errors()]
            continue
        if row.sku in seen:
            errors.append(RowError(n, "sku", f"{row.sku} is also row {seen[row.sku]}"))
            continue
        seen[row.sku] = n
        rows.append(row)
    if errors:
        raise ImportRejected(errors)
    return rows


def _row_error(n: int, record: Any, err: Any) -> RowError:
    field = ".".join(str(p) for p in err["loc"]) or "row"
    cell = record.get(field) if isinstance(record, dict) else None
    if isinstance(cell, NotANumber):
        return RowError(n, field, cell.message)
    if field == EXTRA:
        return RowError(n, "row", "has more cells than the header has columns")
    if field == "row":
        return RowError(n, "row", "must be an object with sku, name and price")
    # pydantic prefixes a validator's own sentence with "Value error, "
    return RowError(n, field, str(err["msg"]).removeprefix("Value error, "))


def _json_records(text: str) -> list[Any]:
    try:
        records = json.loads(text)
    except ValueError as e:
        raise _file_error(f"is not JSON ({e})") from None
    except RecursionError:  # "[[[[..." 100,000 deep was a 500 (found from outside)
        raise _file_error("nests deeper than the parser can follow") from None
    if not isinstance(records, list):
        raise _file_error("must be a JSON list of products")
    return records


def _csv_records(text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=EXTRA)
    try:
        header = reader.fieldnames or []
        if not header:
            raise _file_error("is empty: its first line must be the header (sku,name,price,...)")
        unknown = [h for h in header if h not in FIELDS]
        if unknown:
            raise _file_error(
                f"header must name columns among {', '.join(FIELDS)}; got {', '.join(header)}"
            )
        return [_csv_values(r) for r in reader]
    except csv.Error as e:
        raise _file_error(f"is not valid CSV ({e})") from None


def _csv_values(record: dict[str, Any]) -> dict[str, Any]:
    """CSV cells are text: numbers become numbers (a cell that is not one is marked, and
    reported as such), missing or empty optional cells are left out."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        if key == EXTRA:
            out[key] = value
            continue
        if value is None:
            continue
        value = value.strip()
        if key in ("description", "stock") and value == "":
            continue
        if key == "price":
            out[key] = _number(value, float, "must be a number such as 12.50")
        elif key == "stock":
            out[key] = _number(value, int, "must be a whole number")
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class NotANumber:
    """A CSV cell that should have been a number; its field's error says why."""

    message: str


def _number(value: str, kind: type, message: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        return NotANumber(f"{message}, got {value[:40]!r}")
