"""The `make demo` summary: SFT vs MC-GRPO test figures, side by side, and each stage's wall time.

Reads the ``results.csv`` that ``run.py test`` wrote for the SFT and the MC-GRPO checkpoints
(SRCC/PLCC of every score recovery, from the model's OWN generated comparisons) and the stage
times ``scripts/demo.sh`` measured; prints one table and writes them all to a JSON file::

    python scripts/demo_summary.py --sft RUN/sft_test/version_0/eval/results.csv \
        --mcgrpo RUN/test/version_0/eval/results.csv --times synthetic=40 sft=90 ... \
        --out benchmarks/results/demo.json
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python scripts/demo_summary.py` from anywhere
    sys.path.insert(0, str(ROOT))

from callbacks.tables import group_of  # noqa: E402
from ranking import AGGREGATOR_NAMES  # noqa: E402

AGGREGATORS = AGGREGATOR_NAMES  # the one registry (ranking/aggregate.py)


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv`` (test stage), numbers as floats (NaN for empty/"nan")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results.csv (did `run.py test` finish?)")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "srcc" not in rows[0]:
        raise ValueError(f"{path}: not a results.csv of `run.py test` (no srcc column)")
    out = []
    for row in rows:
        item: dict[str, Any] = dict(row)
        for key in ("srcc", "plcc", "n_pairs", "n_forced", "n_items", "n_scored"):
            try:
                item[key] = float(row.get(key) or "nan")
            except ValueError:
                raise ValueError(
                    f"{path}: column {key!r} of {row.get('benchmark')} is not a number: {row.get(key)!r}"
                ) from None
        out.append(item)
    return out


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per benchmark and aggregator SRCC/PLCC, forced answers, and the group averages.

    >>> rows = [{"benchmark": "a", "group": "in_domain", "aggregator": "lsq", "srcc": 0.5,
    ...          "plcc": 0.4, "n_pairs": 10.0, "n_forced": 1.0},
    ...         {"benchmark": "b", "group": "out_of_domain", "aggregator": "lsq", "srcc": 0.1,
    ...          "plcc": 0.2, "n_pairs": 10.0, "n_forced": 0.0}]
    >>> s = summarise(rows)
    >>> s["averages"]["lsq"]["in_domain"]["srcc"], s["averages"]["lsq"]["out_of_domain"]["srcc"]
    (0.5, 0.1)
    >>> s["forced"], s["comparisons"]
    (1, 20)
    """
    benchmarks: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = benchmarks.setdefault(row["benchmark"], {"group": group_of(row.get("group"), row["benchmark"])})
        entry[row["aggregator"]] = {"srcc": row["srcc"], "plcc": row["plcc"]}
        if row["aggregator"] == "lsq":
            entry["comparisons"], entry["forced"] = int(row["n_pairs"]), int(row["n_forced"])
    averages: dict[str, dict[str, dict[str, float]]] = {}
    for agg in AGGREGATORS:
        for group in ("in_domain", "out_of_domain"):
            members = [b[agg] for b in benchmarks.values() if b["group"] == group and agg in b]
            if members:
                averages.setdefault(agg, {})[group] = {
                    m: float(sum(x[m] for x in members) / len(members)) for m in ("srcc", "plcc")
                }
    return {
        "benchmarks": benchmarks,
        "averages": averages,
        "comparisons": sum(b.get("comparisons", 0) for b in benchmarks.values()),
        "forced": sum(b.get("forced", 0) for b in benchmarks.values()),
    }


def _fmt(value: float) -> str:
    return "N/A" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.3f}"


def render(summaries: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: rows = benchmark x aggregator, columns = checkpoints (SRCC)."""
    names = list(summaries)
    first = summaries[names[0]]
    lines = [f"{'benchmark':<22} {'recovery':<8} " + " ".join(f"{n:>9}" for n in names)]
    for bench, entry in first["benchmarks"].items():
        for agg in AGGREGATORS:
            if agg in entry:
                cells = [
                    summaries[n]["benchmarks"].get(bench, {}).get(agg, {}).get("srcc", float("nan")) for n in names
                ]
                lines.append(f"{bench:<22} {agg:<8} " + " ".join(f"{_fmt(c):>9}" for c in cells))
    for group in ("in_domain", "out_of_domain"):
        for agg in AGGREGATORS:
            cells = [summaries[n]["averages"].get(agg, {}).get(group, {}).get("srcc", float("nan")) for n in names]
            lines.append(f"{'avg ' + group:<22} {agg:<8} " + " ".join(f"{_fmt(c):>9}" for c in cells))
    lines.append(
        f"{'forced / comparisons':<31} "
        + " ".join(f"{summaries[n]['forced']:>4}/{summaries[n]['comparisons']:<4}" for n in names)
    )
    return "\n".join(lines)


def parse_times(items: Sequence[str]) -> dict[str, float]:
    """``["sft=12", ...]`` -> ``{"sft": 12.0}`` (seconds), with a clear error for a bad item.

    >>> parse_times(["sft=12", "test=3.5"])
    {'sft': 12.0, 'test': 3.5}
    """
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            raise ValueError(f"--times: {item!r} is not NAME=SECONDS") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft", required=True, help="results.csv of `run.py test` on the SFT checkpoint")
    ap.add_argument("--mcgrpo", required=True, help="results.csv of `run.py test` on the MC-GRPO checkpoint")
    ap.add_argument("--times", nargs="*", default=[], help="stage wall times, NAME=SECONDS")
    ap.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    args = ap.parse_args(argv)
    summaries = {"sft": summarise(read_results(args.sft)), "mcgrpo": summarise(read_results(args.mcgrpo))}
    times = parse_times(args.times)
    print("SRCC of the leaderboards from the model's own generated comparisons (test splits):")
    print(render(summaries))
    if times:
        print("stage wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()))
    if args.out:
        record = {
            "checkpoints": summaries,
            "stage_seconds": times,
            "total_seconds": sum(times.values()),
            "machine": {"cpus": _cpus(), "python": platform.python_version()},
        }
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"written: {args.out}")
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


if __name__ == "__main__":
    raise SystemExit(main())
