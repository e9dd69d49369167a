"""Table 2 as markdown from ablation records: mean ± std over seeds, the paper's panel layout."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks import table2_claims
from callbacks import tables


def _mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` (sample std over seeds; the mean alone for one seed; N/A when missing).

    >>> _mean_std([0.8, 0.9]), _mean_std([0.5]), _mean_std([])
    ('0.850 ± 0.071', '0.500', 'N/A')
    """
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals or len(vals) < len(values):
        return "N/A"
    mean = statistics.fmean(vals)
    return f"{mean:.3f} ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else f"{mean:.3f}"


def seed_cells(
    values: Mapping[int, Mapping[str, Mapping[str, float]]], layout: Mapping[str, list[str]], metric: str
) -> list[str]:
    """One Table 2 row: per split and per group average (averaged per seed first), mean ± std."""
    cells: list[str] = []
    for group in (tables.IN_DOMAIN, tables.OUT_OF_DOMAIN):
        cols = layout[group]
        if not cols:
            continue
        cells += [_mean_std([v.get(c, {}).get(metric, math.nan) for v in values.values()]) for c in cols]
        cells.append(_mean_std([tables.group_average(v, cols, metric) for v in values.values()]))
    return cells


def markdown(
    records: Sequence[Mapping[str, Any]],
    groups: Mapping[str, str],
    variants: Mapping[str, tuple[str, str, str, str]],
) -> str:
    """The paper's Table 2 layout from ablation records: sections, SRCC then PLCC, mean ± std.

    ``groups``: split -> ``in_domain`` / ``out_of_domain``; ``variants``: row name -> (section,
    label, tested job, aggregator), in table order (``benchmarks.ablations.VARIANTS``).
    """
    per_row: dict[str, dict[int, dict[str, dict[str, float]]]] = {}
    for r in records:
        cell = {m: math.nan if r[m] is None else float(r[m]) for m in tables.METRICS}
        per_row.setdefault(r["variant"], {}).setdefault(int(r["seed"]), {})[r["split"]] = cell
    sections: dict[str, list[tuple[str, Any]]] = {}
    for variant, (section, label, _, _) in variants.items():
        if variant in per_row:
            sections.setdefault(section, []).append((label, per_row[variant]))
    splits = [s for s in groups if any(r["split"] == s for r in records)]  # the configs' order first
    splits += sorted({r["split"] for r in records} - set(splits))
    layout = tables.column_layout([{"benchmark": s, "group": groups.get(s)} for s in splits])
    seeds = sorted({int(r["seed"]) for r in records})
    head = f"Synthetic benchmark, mean ± std over seeds {seeds} (benchmarks/ablations.py).\n\n"
    return head + tables.panel_table(list(sections.items()), layout, first_header="Variant", cells=seed_cells)


def write(
    records: Sequence[Mapping[str, Any]],
    results: Path,
    groups: Mapping[str, str],
    variants: Mapping[str, tuple[str, str, str, str]],
) -> Path:
    """``results`` (JSON records) and ``table2.md`` beside it: the table, then the paper's claims
    checked on the records (``benchmarks/table2_claims.py``); returns the table's path."""
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"records": list(records)}, indent=1) + "\n", encoding="utf-8")
    table = results.parent / "table2.md"
    claims = table2_claims.claims_markdown(table2_claims.check_claims(records, groups))
    table.write_text(
        f"{markdown(records, groups, variants)}\n### The paper's claims on these runs\n\n"
        f"{table2_claims.__doc__.split(chr(10) + chr(10))[1].strip()}\n\n{claims}",
        encoding="utf-8",
    )
    return table
