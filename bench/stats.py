"""What the bench reports: percentiles, the table rows, and the console, JSON and Markdown output.

Kept apart from the measuring so bench/results/latest.json and latest.md have one definition.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.measure import Bench

HEADER = (
    f"{'path':<46} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'/s':>7} {'x direct':>7}  "
    "server CPU ms/call  notes"
)


def pct(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of samples in seconds, returned in ms."""
    s = sorted(samples)
    k = max(0, min(len(s) - 1, round(q / 100 * len(s) + 0.5) - 1))
    return s[k] * 1000


@dataclass
class Row:
    """One line of the table (and one object in the JSON)."""

    key: str
    label: str
    n: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    per_s: float | None = None
    x_direct: float | None = None
    cpu_ms: dict[str, float] = field(default_factory=dict)
    note: str = ""


def format_row(r: Row) -> str:
    def f(v: float | None, spec: str = ".2f") -> str:
        return "-" if v is None else format(v, spec)

    cpu = " ".join(f"{k}={v:g}" for k, v in r.cpu_ms.items())
    return (
        f"{r.label:<46} {r.n:>6} {f(r.p50_ms):>8} {f(r.p95_ms):>8} {f(r.per_s, '.0f'):>7} "
        f"{f(r.x_direct):>7}  {cpu}  {r.note}"
    ).rstrip()


def print_report(b: Bench, tg: list[dict[str, Any]], elapsed: float) -> None:
    """The whole table, the targets and the run's length, on stdout."""
    print("\n" + HEADER)
    for row in b.rows:
        print(format_row(row))
    print("\ntargets:")
    for t in tg:
        mark = {True: "met", False: "MISSED", None: "-"}[t["met"]]
        print(f"  {mark:<7} {t['target']}: {t['value']} {t['unit']} (goal {t['goal']})")
    print(f"\nwhole run: {elapsed:.0f} s")


def result(
    b: Bench, tg: list[dict[str, Any]], info: dict[str, Any], elapsed: float
) -> dict[str, Any]:
    """The JSON document: everything measured, with the machine and the sizes."""
    return {
        "smoke": b.smoke,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(elapsed, 1),
        "machine": info,
        "sizes": b.sizes.__dict__,
        "rows": [r.__dict__ for r in b.rows],
        "targets": tg,
        "checks": b.checks,
        "memory": b.memory,
        "cold_start": b.cold,
    }


def markdown(b: Bench, tg: list[dict[str, Any]]) -> str:
    """The table and the targets as Markdown, for the README."""

    def f(v: float | None, spec: str = ".2f") -> str:
        return "" if v is None else format(v, spec)

    lines = [
        "| path | n | p50 ms | p95 ms | per s | × direct | server CPU ms/call | notes |",
        "|---|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in b.rows:
        cpu = ", ".join(f"{k} {v:g}" for k, v in r.cpu_ms.items())
        lines.append(
            f"| {r.label} | {r.n or ''} | {f(r.p50_ms)} | {f(r.p95_ms)} | {f(r.per_s, '.0f')} "
            f"| {f(r.x_direct)} | {cpu} | {r.note} |"
        )
    lines += ["", "| target | goal | measured | met |", "|---|---|---|---|"]
    for t in tg:
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(f"| {t['target']} | {t['goal']} {t['unit']} | {t['value']} | {met} |")
    return "\n".join(lines) + "\n"


def write(out: Path, b: Bench, tg: list[dict[str, Any]], doc: dict[str, Any]) -> None:
    """The JSON at `out` and the Markdown next to it (same name, .md)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(b, tg))
    print(f"wrote {out} and {out.with_suffix('.md').name}")
