"""The bench's scale rows (bench/scale.py: PostgreSQL, nginx, Redis) with tiny N, in a module of
their own so that xdist runs them beside the other half (test_bench_smoke.py). No timing
asserted; required in CI, skipped with a reason elsewhere."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_bench_smoke import SCALE_ROWS, assert_consistent, run_smoke
from tests.web_helpers import IN_CI


def test_bench_smoke_scale_rows(tmp_path: Path) -> None:
    _, result = run_smoke(tmp_path, "scale")
    skipped = result["checks"].get("scale_skipped")
    assert not (skipped and IN_CI), f"the scale rows need PostgreSQL, Redis and nginx: {skipped}"
    rows = {r["key"]: r for r in result["rows"]}
    assert set(rows) == (set() if skipped else SCALE_ROWS)
    for row in rows.values():
        assert row["p50_ms"] is not None and row["p50_ms"] > 0, row
    if not skipped:
        for check in ("purchase_pg_w1", "purchase_pg_w4"):
            assert_consistent(result["checks"][check])
