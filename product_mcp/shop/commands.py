"""api.py's commands besides serving: `api.py import FILE`, the `--no-migrate` check, and the
check that the database can be used at all before anything starts.

Why apart: api.py is the readable front of the REST routes; these run once and exit, and
share nothing with a request but the shop.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path as FilePath

from sqlalchemy.exc import DBAPIError

from models import MAX_IMPORT_BYTES
from product_mcp.core.config import load_settings, mask_url
from product_mcp.shop import Shop, make_engine
from product_mcp.shop.importer import ImportRejected
from product_mcp.shop.importer import parse as parse_catalogue
from product_mcp.shop.migrate import SchemaNotCurrent, require_current


def import_file(argv: list[str]) -> None:
    """`api.py import FILE`: the bulk import of POST /api/products/import, straight into the
    database (migrated first, as api.py's start would); every error printed with its row."""
    parser = argparse.ArgumentParser(
        prog="api.py import", description="Import a CSV or JSON catalogue (by SKU)."
    )
    parser.add_argument("file", type=FilePath, help="catalogue.csv or catalogue.json")
    parser.add_argument("--database-url", default=load_settings().DATABASE_URL)
    args = parser.parse_args(argv)
    try:
        data = args.file.read_bytes()
    except OSError as e:
        raise SystemExit(f"api.py import: cannot read {args.file}: {e.strerror}") from None
    if len(data) > MAX_IMPORT_BYTES:
        raise SystemExit(f"api.py import: {args.file} is over {MAX_IMPORT_BYTES} bytes")
    kind = "json" if args.file.suffix.lower() == ".json" else "csv"
    check_database(args.database_url)
    engine = make_engine(args.database_url)
    try:
        shop = Shop(engine)
        # The tutorial's four demo products are for a shop started empty, not for one filled
        # from a catalogue (found from outside: they were on sale beside the import).
        shop.init(seed_empty=False)
        report = shop.import_products(parse_catalogue(data, kind))
    except ImportRejected as e:
        for err in e.errors:
            if err.row:  # row 0 is the file itself: its sentence is the one below
                print(f"row {err.row}, {err.field}: {err.message}", file=sys.stderr)
        raise SystemExit(f"api.py import: {e.message}") from None
    finally:
        engine.dispose()
    print(
        f"imported {args.file}: {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged"
    )


def require_current_schema(database_url: str) -> None:
    """--no-migrate: exit with a sentence naming both revisions unless the schema is current."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            require_current(conn)
    except SchemaNotCurrent as e:
        raise SystemExit(f"api.py --no-migrate: {e.message}") from None
    finally:
        engine.dispose()


def check_database(database_url: str) -> None:
    """Exit with one sentence naming DATABASE_URL when the URL cannot be used (not a URL, a
    database SQLAlchemy has no driver for) or the database does not answer: else each worker's
    start printed a traceback of its own. A password in the URL is masked."""
    shown = mask_url(database_url)
    try:
        engine = make_engine(database_url)
    except Exception as e:  # ArgumentError, NoSuchModuleError, a driver that will not import
        raise SystemExit(f"DATABASE_URL {shown!r} cannot be used: {_first_line(e)}") from None
    try:
        with engine.connect():
            pass
    except DBAPIError as e:
        reason = _first_line(e.orig or e)
        raise SystemExit(f"cannot reach the database at {shown} (DATABASE_URL): {reason}") from None
    finally:
        engine.dispose()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
