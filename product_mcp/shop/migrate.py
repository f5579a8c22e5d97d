"""Schema versions: bring a database to this release's Alembic revision, or say why not.

Alembic is configured in code (no alembic.ini): `config()` points it at `migrations/` and hands
`env.py` the caller's connection. `Database.init` calls `upgrade` (or `require_current` for
`api.py --no-migrate`) inside one transaction that holds the shop's migration lock, so API
workers starting together migrate once: the first does the work, the others wait for the lock
and find the database current.

Alembic itself (~10 MiB of a process that never migrates) is imported only when there is work
for it: a database already at this release's revision is recognised with one plain query and
the revision ids read from `migrations/versions/` (`known_head`; a test checks it agrees with
Alembic's own answer).

From the command line (`DATABASE_URL` or `--database-url` names the database):

    uv run python -m product_mcp.shop.migrations           # upgrade to this release, seed
    uv run python -m product_mcp.shop.migrations current   # the database's revision, and ours
    uv run python -m product_mcp.shop.migrations revision -m "add x" [--autogenerate]
"""

from __future__ import annotations

import argparse
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, inspect, text

from product_mcp.core.errors import ProductMcpError
from product_mcp.shop.schema import PG_SEARCH_TABLE, PG_SEARCH_WORDS, SEARCH_TABLE

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

PG_SEARCH = (PG_SEARCH_TABLE, PG_SEARCH_WORDS)
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps
_REVISION = re.compile(r"^revision\s*(?::[^=]*)?=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN = re.compile(r"^down_revision\s*(?::[^=]*)?=\s*(.+)$", re.MULTILINE)


class SchemaNotCurrent(ProductMcpError):
    """The database is not at the revision this release needs, and may not be migrated."""

    status = 503


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """What autogenerate compares: not the full-text index, which the migrations made by hand
    (FTS5 on SQLite; on PostgreSQL the `product_search` table and its words) and `metadata`
    leaves out."""
    if type_ == "table":
        # with FTS5's shadow tables
        return not str(name).startswith(SEARCH_TABLE) and name not in PG_SEARCH
    return True


def config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, in code; with a connection, env.py migrates that one."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("file_template", "%%(rev)s")  # revision ids read 0002_add_x
    cfg.attributes["connection"] = connection
    return cfg


def scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(config())


def head() -> str:
    """The revision this release needs."""
    revision = scripts().get_current_head()
    assert revision is not None
    return revision


def current(conn: Connection) -> str | None:
    """The database's revision; None if it has none (empty, or from before migrations)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


@cache
def known_head() -> str | None:
    """This release's revision read from the files in `migrations/versions/` without Alembic:
    the one revision no other names as its `down_revision`; None if that is not plain."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        found = _REVISION.search(source)
        if found is None:
            continue
        revisions.add(found.group(1))
        down = _DOWN.search(source)
        if down is not None:
            parents.update(re.findall(r"[\"']([^\"']+)[\"']", down.group(1)))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_known_head(conn: Connection) -> str | None:
    """The revision, if the database is plainly at `known_head()` (one row saying so)."""
    target = known_head()
    if target is None or not inspect(conn).has_table(VERSION_TABLE):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    return target if rows == [target] else None


def describe(conn: Connection, revision: str | None) -> str:
    """The database's state in words, for the sentences below."""
    if revision is not None:
        return f"at revision {revision}"
    if "products" in inspect(conn).get_table_names():
        return "from before schema migrations (no revision)"
    return "empty (no revision)"


def _known(revision: str | None) -> bool:
    from alembic.util import CommandError

    if revision is None:
        return True
    try:
        return scripts().get_revision(revision) is not None
    except CommandError:  # alembic's ResolutionError for an id it has no file for
        return False


def upgrade(conn: Connection) -> tuple[str | None, str]:
    """Migrate the database on `conn` to `head()`, in the caller's transaction; returns the
    revisions before and after. A revision this release does not know (a newer release
    migrated the database) is refused rather than guessed at."""
    done = _at_known_head(conn)
    if done is not None:
        return done, done
    from alembic import command

    before, target = current(conn), head()
    if not _known(before):
        raise SchemaNotCurrent(
            f"the database is at revision {before}, which this release does not know "
            f"(a newer release migrated it?); this release needs {target}"
        )
    if before != target:
        command.upgrade(config(conn), "head")
    return before, target


def require_current(conn: Connection) -> str:
    """Refuse, with a sentence naming both revisions, a database not at `head()`; returns it."""
    done = _at_known_head(conn)
    if done is not None:
        return done
    revision, target = current(conn), head()
    if revision != target:
        raise SchemaNotCurrent(
            f"the database is {describe(conn, revision)} but this release needs revision "
            f"{target}: start api.py without --no-migrate to upgrade it in place, or run "
            f"`uv run python -m product_mcp.shop.migrations`"
        )
    return target


def main() -> None:
    from product_mcp.core.config import load_settings
    from product_mcp.shop import Shop, make_engine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "action", nargs="?", default="upgrade", choices=["upgrade", "current", "revision"]
    )
    parser.add_argument("--database-url", default=None)
    parser.add_argument("-m", "--message", default="change")
    parser.add_argument("--autogenerate", action="store_true")
    args = parser.parse_args()
    from alembic import command

    if args.action == "revision":  # a new file in migrations/versions/, e.g. 0002_add_x.py
        slug = re.sub(r"[^a-z0-9]+", "_", args.message.lower()).strip("_")[:24]
        number = len(list(scripts().walk_revisions())) + 1
        command.revision(
            config(),
            message=args.message,
            autogenerate=args.autogenerate,
            rev_id=f"{number:04d}_{slug}",
        )
        return
    engine = make_engine(args.database_url or load_settings().DATABASE_URL)
    try:
        if args.action == "upgrade":
            Shop(engine).init()
        with engine.connect() as conn:
            print(f"database {describe(conn, current(conn))}; this release needs {head()}")
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
