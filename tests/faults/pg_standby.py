"""A throw-away PostgreSQL primary with a synchronous streaming standby, for failover tests.

Why not the shared server on :5432: a promotion test stops the primary hard (`pg_ctl stop -m
immediate`: to its clients, a crashed server) and turns the standby into the new primary, so it
needs two servers of its own. Both are real clusters on free 127.0.0.1 ports, in one temp
folder; the standby is a `pg_basebackup -R` of the primary, streaming, and the primary runs
`synchronous_standby_names='*'`, so a commit the primary acknowledged is on the standby
(the standby itself runs without it: once promoted it has no standby to wait for). Both run
with fsync=off: what is tested is PostgreSQL stopping, never the machine, and an immediate stop
loses nothing the OS was handed; with fsync the standby's first start alone synced the copied
cluster for a second.

PostgreSQL refuses to run as root: as root every command runs as the OS user `postgres`
(`runuser`), in a temp folder that user owns; anyone else runs them as themselves. The binaries are
PostgreSQL 15's (`TEST_POSTGRES_BIN` names another folder). Missing binaries or user skip
the test, and fail it when `CI=true` (`need_standby_tools`).

    template = init_template(root)           # initdb once (per module)
    with replicated(template, root) as pair:  # primary + standby, both stopped afterwards
        pair.primary.stop(); pair.standby.promote()
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tests.servers import free_port
from tests.web_helpers import need

PG_BIN = Path(os.environ.get("TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
OS_USER = "postgres"  # who runs the servers when we are root


def standby_tools_missing() -> str | None:
    """Why a primary/standby pair cannot be made here, or None if it can."""
    missing = [t for t in TOOLS if not (PG_BIN / t).exists()]
    if missing:
        return f"PostgreSQL server binaries missing in {PG_BIN}: {', '.join(missing)}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root and there is no OS user {OS_USER!r} to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return f"running as root and runuser (to run PostgreSQL as {OS_USER!r}) is missing"
    return None


def need_standby_tools() -> None:
    reason = standby_tools_missing()
    need(reason is None, reason or "")


def _as_owner(cmd: list[str], timeout: float = 60) -> str:
    """`cmd` as the OS user `postgres` when we are root (as ourselves otherwise): its output,
    or an error carrying it."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", OS_USER, "--", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def run(tool: str, *args: str | int | Path) -> str:
    """A PostgreSQL tool from PG_BIN, run as the servers' user."""
    return _as_owner([str(PG_BIN / tool), *map(str, args)])


@contextmanager
def temp_root(label: str) -> Iterator[Path]:
    """A temp folder the servers' user owns (pytest's tmp_path is root's and closed to them),
    removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=f"{label}-"))
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam(OS_USER)
            os.chown(root, user.pw_uid, user.pw_gid)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def init_template(root: Path) -> Path:
    """An initdb'd data folder (trust for local and 127.0.0.1, replication included: initdb's
    defaults, as are wal_level=replica and max_wal_senders=10), copied for each pair."""
    data = root / "template"
    run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
        "--no-sync", "--no-instructions")  # fmt: skip
    return data


@dataclass
class Cluster:
    """One PostgreSQL server: its data folder, port and log."""

    data: Path
    port: int

    @property
    def log(self) -> Path:
        return self.data.parent / f"{self.data.name}.log"

    def conninfo(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def start(self, **settings: str) -> None:
        options = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "fsync": "off",
            "unix_socket_directories": str(self.data.parent),
            **settings,
        }
        flags = shlex.join(arg for k, v in options.items() for arg in ("-c", f"{k}={v}"))
        run("pg_ctl", "start", "-w", "-D", self.data, "-l", self.log, "-o", flags)

    def stop(self, mode: str = "immediate") -> None:
        """`immediate`: no shutdown checkpoint, connections cut, as if the server crashed."""
        run("pg_ctl", "stop", "-w", "-D", self.data, "-m", mode)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def promote(self) -> None:
        """End recovery: this standby becomes a primary (returns once it accepts writes)."""
        run("pg_ctl", "promote", "-w", "-D", self.data)

    def query(self, sql: str, database: str = "postgres") -> list[tuple[object, ...]]:
        with psycopg.connect(self.conninfo(database), autocommit=True, connect_timeout=5) as c:
            cur = c.execute(sql)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Replicated:
    primary: Cluster
    standby: Cluster

    def url(self, database: str) -> str:
        """api.py's URL naming both servers, as an operator would write it: libpq tries them
        in order, and api.py's `postgres_url` adds `target_session_attrs=read-write` (so only
        the one that accepts writes is kept: it follows a promotion)."""
        hosts = ",".join(f"127.0.0.1:{c.port}" for c in (self.primary, self.standby))
        return f"postgresql+psycopg://postgres@/{database}?host={hosts}"

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{c.log_text()}"
            for name, c in (("primary", self.primary), ("standby", self.standby))
        )


def wait_sync(primary: Cluster, timeout: float = 30) -> None:
    """Until the primary reports a synchronous standby streaming to it."""
    deadline = time.monotonic() + timeout
    while not primary.query(
        "SELECT 1 FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'sync'"
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("the standby never became synchronous")
        time.sleep(0.05)


@contextmanager
def replicated(template: Path, root: Path, databases: tuple[str, ...] = ()) -> Iterator[Replicated]:
    """A primary copied from `template` and its synchronous standby, with `databases` created;
    both stopped (immediate) and their folders removed afterwards, whatever happens."""
    primary, standby = free_port(), free_port()
    pair = Replicated(
        Cluster(root / f"primary-{primary}", primary), Cluster(root / f"standby-{standby}", standby)
    )
    with ExitStack() as cleanup:
        for c in (pair.standby, pair.primary):  # unwound backwards: the primary stops first
            cleanup.callback(_remove, c)
        _as_owner(["cp", "-a", str(template), str(pair.primary.data)])
        pair.primary.start(synchronous_standby_names="*")
        run("pg_basebackup", "-h", "127.0.0.1", "-p", pair.primary.port, "-U", "postgres",
            "-D", pair.standby.data, "-R", "-X", "stream", "-c", "fast", "--no-sync")  # fmt: skip
        pair.standby.start(synchronous_standby_names="")
        wait_sync(pair.primary)
        for name in databases:
            pair.primary.query(f'CREATE DATABASE "{name}"')
        yield pair


def _remove(cluster: Cluster) -> None:
    if cluster.running():
        with suppress(RuntimeError, subprocess.TimeoutExpired):
            cluster.stop("immediate")
    shutil.rmtree(cluster.data, ignore_errors=True)
    cluster.log.unlink(missing_ok=True)
