"""The purchase rows alone, for A/B work on the purchase path: 32 clients on SQLite (with 4
change-feed followers, as in the full run where 4 main.py processes follow api.py, and with
none) and on PostgreSQL with 1 and 4 API workers (no followers, as bench/scale.py; and 4
workers with 4 followers, whose reads wait for running appenders, changes.py).

Why its own section: the full run takes minutes and starts every service; the purchase path's
cost is api.py's CPU per purchase (read from /proc, the steadiest figure on a shared machine)
and each row's consistency check (0 oversell, 0 lost). Followers here are SSE readers in this
process (their cost is the bench's, not api.py's); each must get every event once, in order.

    uv run python -m bench.purchase_rows [--smoke]
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path

import httpx

from bench.measure import Bench, run_alone
from bench.procs import make_db, make_shop, start_many
from bench.purchases import purchases
from bench.scale import missing, pg_database
from tests.servers import free_port, wait_workers

FOLLOWERS = 4
SSE = {"Accept": "text/event-stream"}


async def follow(url: str, seqs: list[int]) -> None:
    """One SSE follower of api.py's change feed, noting every seq it gets."""
    async with (
        httpx.AsyncClient(timeout=None) as http,
        http.stream("GET", f"{url}/api/changes", headers=SSE) as r,
    ):
        async for line in r.aiter_lines():
            if line.startswith("id: "):
                seqs.append(int(line[4:]))


async def row(b: Bench, name: str, url: str, db: Path | str, stock: int, **kw: int) -> None:
    """Start api.py on `url`, optionally with followers, and run the 32-client purchases."""
    workers, followers = kw.get("workers", 1), kw.get("followers", 0)
    port = free_port()
    args = ["api.py", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    b.procs |= start_many({name: (args, port, {"DATABASE_URL": url}, "/healthz")})
    if workers > 1:
        wait_workers(b.procs[name], workers)
    seen: list[list[int]] = [[] for _ in range(followers)]
    tasks = [asyncio.create_task(follow(b.procs[name].url, s)) for s in seen]
    await asyncio.sleep(1.0 if followers else 0)
    label = "POST /api/purchase, 32 clients" + (
        f", {followers} feed followers" if followers else ""
    )
    if url.startswith("postgresql"):
        label += f", PG, {workers} worker" + ("s" if workers > 1 else "")
    try:
        await purchases(b, name, db, stock, f"purchases_ab_{name}", label)
        await asyncio.sleep(1.0)  # the followers' last batch
    finally:
        for t in tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        b.procs.pop(name).stop()
    bought = b.checks[f"purchases_ab_{name}".replace("purchases_32", "purchase")]["succeeded"]
    b.checks[f"followers_{name}"] = [s == sorted(set(s)) and len(s) == bought for s in seen]


async def purchase_rows(b: Bench) -> None:
    stock = b.sizes.purchase_attempts * 3 // 4
    widget = [("Bench Widget", 100, "the purchase benchmark's product", stock)]
    work = Path(tempfile.mkdtemp(prefix="product-mcp-purchases-"))
    for name, followers in (("sqlite_f4", FOLLOWERS), ("sqlite_f0", 0)):
        db = work / f"{name}.db"
        make_db(db, 0, widget)
        await row(b, name, f"sqlite:///{db}", db, stock, followers=followers)
    why = missing()
    if why:
        print(f"  (PostgreSQL rows skipped: {why})", flush=True)
        return
    for workers, followers in ((1, 0), (4, 0), (4, FOLLOWERS)):
        name = f"pg_w{workers}_f{followers}"
        with pg_database(name) as url:
            make_shop(url, 0, widget)
            await row(b, name, url, url, stock, workers=workers, followers=followers)


def main() -> None:
    run_alone(purchase_rows, __doc__.splitlines()[0])


if __name__ == "__main__":
    main()
