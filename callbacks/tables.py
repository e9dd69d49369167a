"""Result rows (CSV) and markdown tables in the layout of the paper's Tables 1 and 2.

A *result row* is one (benchmark, aggregator) outcome of one run::

    {"stage": "test", "benchmark": "konvid", "group": "out_of_domain", "aggregator": "lsq",
     "srcc": 0.87, "plcc": 0.88, "krcc": ..., "n_items": ..., "n_pairs": ..., "n_bad": ...}

Tables put benchmarks in columns grouped In-domain | Out-of-domain, each group followed by its
``Avg.`` column, with an SRCC panel above a PLCC panel (paper Table 1). Known benchmarks take the
paper's column order and labels; others follow in the order they appear.

Collation of several test runs into the paper's Table 2::

    python -m callbacks.tables RUN_DIR... [--names LABEL...] [--out FILE]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

IN_DOMAIN, OUT_OF_DOMAIN = "in_domain", "out_of_domain"
METRICS = ("srcc", "plcc")
CSV_COLUMNS = (
    "stage",
    "benchmark",
    "group",
    "aggregator",
    "srcc",
    "plcc",
    "krcc",
    "plcc_logistic",
    "n_items",
    "n_scored",
    "n_pairs",
    "n_bad",
    "n_forced",
    "antisymmetry",
    "checkpoint_id",
)
# normalised benchmark key -> (label, group); the paper's column order
PAPER_COLUMNS: dict[str, tuple[str, str]] = {
    "lsvqtest": ("LSVQ-Test", IN_DOMAIN),
    "lsvq1080p": ("LSVQ-1080p", IN_DOMAIN),
    "konvid1k": ("KoNViD", OUT_OF_DOMAIN),
    "livevqc": ("LIVE-VQC", OUT_OF_DOMAIN),
    "liveytgaming": ("YT-Gaming", OUT_OF_DOMAIN),
    "waterlooivc4k": ("W-IVC-4K", OUT_OF_DOMAIN),
    "vdpve": ("VDPVE", OUT_OF_DOMAIN),
}
ALIASES = {
    "konvid": "konvid1k",
    "ytgaming": "liveytgaming",
    "wivc4k": "waterlooivc4k",
    "waterloo4k": "waterlooivc4k",
    "lsvq": "lsvqtest",
    "lsvqtest1080p": "lsvq1080p",
    "vqc": "livevqc",
}
AGGREGATOR_LABELS = {
    "winrate": "Win-rate Ranking",
    "elo": "Elo Rating",
    "lsq": "Least-squares Recovery",
    "bt": "Bradley–Terry",
    "direct": "Pointwise Score",
}
Section = tuple[str | None, Sequence[tuple[str, Mapping[str, Mapping[str, float]]]]]


def normalise(benchmark: str) -> str:
    """Lower-case alphanumeric key with the paper aliases resolved.

    >>> normalise("LSVQ-1080p"), normalise("KoNViD-1k"), normalise("yt_gaming")
    ('lsvq1080p', 'konvid1k', 'liveytgaming')
    """
    key = re.sub(r"[^a-z0-9]", "", benchmark.lower())
    return ALIASES.get(key, key)


def display_name(benchmark: str) -> str:
    """The paper's column label for a benchmark (the name itself when unknown).

    >>> display_name("waterloo_ivc_4k"), display_name("synthetic")
    ('W-IVC-4K', 'synthetic')
    """
    return PAPER_COLUMNS.get(normalise(benchmark), (benchmark, ""))[0]


def group_of(group: str | None, benchmark: str = "") -> str:
    """``in_domain`` or ``out_of_domain`` from a free-form group label (or the paper's split).

    >>> group_of("OOD"), group_of("in-domain"), group_of(None, "vdpve")
    ('out_of_domain', 'in_domain', 'out_of_domain')
    """
    if group:
        g = group.lower()
        return OUT_OF_DOMAIN if ("out" in g or "ood" in g) else IN_DOMAIN
    return PAPER_COLUMNS.get(normalise(benchmark), ("", IN_DOMAIN))[1] or IN_DOMAIN


def column_layout(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Benchmarks per group in column order: the paper's order first, then by appearance."""
    paper = list(PAPER_COLUMNS)
    seen: dict[str, str] = {}
    for row in rows:
        seen.setdefault(str(row["benchmark"]), group_of(row.get("group"), str(row["benchmark"])))

    def rank(name: str) -> tuple[int, int]:
        key = normalise(name)
        return (paper.index(key), 0) if key in paper else (len(paper), list(seen).index(name))

    return {g: sorted([b for b, gg in seen.items() if gg == g], key=rank) for g in (IN_DOMAIN, OUT_OF_DOMAIN)}


def metric_values(rows: Sequence[Mapping[str, Any]], aggregator: str) -> dict[str, dict[str, float]]:
    """``{benchmark: {"srcc": .., "plcc": ..}}`` for one aggregator."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.get("aggregator") == aggregator:
            out[str(row["benchmark"])] = {m: _float(row.get(m)) for m in METRICS}
    return out


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def group_average(values: Mapping[str, Mapping[str, float]], benchmarks: Sequence[str], metric: str) -> float:
    """Mean of a metric over a group's benchmarks (NaN when any is missing, as the paper's N/A).

    >>> group_average({"a": {"srcc": 0.8}, "b": {"srcc": 0.6}}, ["a", "b"], "srcc")
    0.7
    """
    vals = [values.get(b, {}).get(metric, float("nan")) for b in benchmarks]
    if not vals or not all(math.isfinite(v) for v in vals):
        return float("nan")
    return round(sum(vals) / len(vals), 10)


def _fmt(value: float) -> str:
    return f"{value:.3f}" if math.isfinite(value) else "N/A"


def _cells(values: Mapping[str, Mapping[str, float]], layout: Mapping[str, list[str]], metric: str) -> list[str]:
    cells: list[str] = []
    for group in (IN_DOMAIN, OUT_OF_DOMAIN):
        cols = layout[group]
        if not cols:
            continue
        cells += [_fmt(values.get(b, {}).get(metric, float("nan"))) for b in cols]
        cells.append(_fmt(group_average(values, cols, metric)))
    return cells


def panel_table(
    sections: Sequence[Section],
    layout: Mapping[str, list[str]],
    first_header: str = "Method",
    cells: Callable[[Any, Mapping[str, list[str]], str], list[str]] | None = None,
) -> str:
    """One markdown table: group header, benchmark header, SRCC panel, then PLCC panel.

    Args:
        sections: ``(title or None, [(row label, {benchmark: {"srcc", "plcc"}}), ...])``.
        layout: :func:`column_layout` output.
        first_header: label of the first column ("Method" in Table 1, "Variant" in Table 2).
        cells: ``(row values, layout, metric) -> cells`` of one row, the group averages included
            (default: one number per cell; ``benchmarks/ablations.py`` writes mean ± std over seeds).
    """
    cells = cells or _cells
    groups = [(g, layout[g]) for g in (IN_DOMAIN, OUT_OF_DOMAIN) if layout[g]]
    width = 1 + sum(len(cols) + 1 for _, cols in groups)
    top = [first_header]
    names = [""]
    for group, cols in groups:
        top += ["In-domain" if group == IN_DOMAIN else "Out-of-domain"] + [""] * len(cols)
        names += [display_name(b) for b in cols] + ["Avg."]
    lines = [_md_row(top), _md_row(["---"] * width), _md_row(names)]
    for metric in METRICS:
        lines.append(_md_row([f"**{metric.upper()}**"] + [""] * (width - 1)))
        for title, rows in sections:
            if title:
                lines.append(_md_row([f"*{title}*"] + [""] * (width - 1)))
            lines += [_md_row([label] + cells(vals, layout, metric)) for label, vals in rows]
    return "\n".join(lines) + "\n"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table1_markdown(rows: Sequence[Mapping[str, Any]], method: str = "VersusQ (ours)", aggregator: str = "lsq") -> str:
    """Paper Table 1 layout for one run (its primary aggregator as the method row)."""
    return panel_table([(None, [(method, metric_values(rows, aggregator))])], column_layout(rows))


def recovery_section(rows: Sequence[Mapping[str, Any]]) -> Section:
    """Table 2 "Score recovery from comparisons" rows (win-rate, Elo, LSQ, then Bradley–Terry)."""
    present = {r.get("aggregator") for r in rows}
    body = [(AGGREGATOR_LABELS[a], metric_values(rows, a)) for a in ("winrate", "elo", "lsq", "bt") if a in present]
    return ("Score recovery from comparisons", body)


def table2_recovery_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """Paper Table 2 "Score recovery" panel for one run."""
    return panel_table([recovery_section(rows)], column_layout(rows), first_header="Variant")


def write_csv(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, columns: Sequence[str] = ()) -> None:
    """The package's one CSV writer: ``columns`` first, then any other key in order of appearance.

    Missing values are written empty; with neither rows nor columns the file is empty.
    """
    fields = list(columns)
    for row in rows:
        fields += [k for k in row if k not in fields]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        if fields:
            writer.writeheader()
        writer.writerows(rows)


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read result rows written by :func:`write_csv` (metrics as floats)."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"benchmark", "aggregator", "srcc", "plcc"} <= set(rows[0]):
        raise ValueError(
            f"{path}: not a results.csv (needs columns benchmark, aggregator, srcc, plcc; found {sorted(rows[0])})"
        )
    for row in rows:
        for metric in ("srcc", "plcc", "krcc", "plcc_logistic", "antisymmetry", "forced_frac"):
            if metric in row:
                row[metric] = _float(row[metric])
    return rows


def write_results(
    rows: Sequence[Mapping[str, Any]],
    out: str | os.PathLike,
    prefix: str = "",
    method: str = "VersusQ (ours)",
) -> str:
    """``results.csv``, ``table1.md`` and ``table2_recovery.md`` under ``out``; returns the text."""
    out = Path(out)
    write_csv(rows, out / f"{prefix}results.csv", CSV_COLUMNS)
    primary = "direct" if any(r.get("aggregator") == "direct" for r in rows) else "lsq"
    table1 = table1_markdown(rows, method, primary)
    (out / f"{prefix}table1.md").write_text(table1, encoding="utf-8")
    text = f"Table 1 layout ({primary}):\n{table1}"
    if primary == "lsq":
        table2 = table2_recovery_markdown(rows)
        (out / f"{prefix}table2_recovery.md").write_text(table2, encoding="utf-8")
        text += f"\nTable 2, score recovery:\n{table2}"
    return text


def write_run_info(path: str | os.PathLike, info: Mapping[str, Any]) -> None:
    """The run's model switches and checkpoint (read back by :func:`collate`)."""
    Path(path).write_text(json.dumps(dict(info), indent=1, default=str), encoding="utf-8")


# ---------------------------------------------------------------- Table 2 collation
SCORING, RECOVERY, RECIPE = (
    "Scoring target",
    "Score recovery from comparisons",
    "Training recipe (margin target + LSQ)",
)
ROW_ORDER = (
    "Pointwise Score (NTP)",
    "Pointwise Score (head)",
    "Pairwise Margin (NTP)",
    "Pairwise Margin (head)",
    "SFT w/o Reasoning",
    "SFT w/ Reasoning",
    "GRPO from SFT",
    "MC-GRPO from SFT",
)


def find_results(run: str | os.PathLike) -> Path:
    """``results.csv`` of a run given its log dir, its ``eval/`` dir, or the csv itself."""
    p = Path(run)
    candidates = [p] if p.is_file() else [p / "results.csv", p / "eval" / "results.csv"]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"no results.csv for run {run} (looked at {', '.join(str(c) for c in candidates)})")


def run_info(csv_path: Path) -> dict[str, Any]:
    """Model switches of a run: ``run_info.json`` beside the csv, else LightningCLI's config."""
    import yaml

    info_file = csv_path.parent / "run_info.json"
    if info_file.is_file():
        return json.loads(info_file.read_text(encoding="utf-8"))
    for folder in (csv_path.parent, csv_path.parent.parent):
        if (folder / "config.yaml").is_file():
            config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
            return dict((config.get("model") or {}).get("init_args") or {})
    return {}


def variant_labels(info: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(section, label)`` rows a run fills in Table 2, from its model switches.

    >>> variant_labels({"target": "pointwise", "readout": "ntp", "phase": "mcgrpo"})
    [('Scoring target', 'Pointwise Score (NTP)')]
    >>> variant_labels({"target": "pairwise", "readout": "head", "phase": "mcgrpo"})
    [('Scoring target', 'Pairwise Margin (head)'), ('Training recipe (margin target + LSQ)', \
'MC-GRPO from SFT')]
    """
    if not info:
        return []
    target, readout = info.get("target", "pairwise"), info.get("readout", "head")
    if target == "pointwise" or readout == "ntp":
        kind = "Pointwise Score" if target == "pointwise" else "Pairwise Margin"
        return [(SCORING, f"{kind} ({'NTP' if readout == 'ntp' else 'head'})")]
    if info.get("phase", "sft") == "sft":
        return [(RECIPE, "SFT w/ Reasoning" if info.get("reasoning", True) else "SFT w/o Reasoning")]
    if info.get("freeze_head_in_grpo") or float(info.get("lambda_aux", 0.5) or 0.0) == 0.0:
        return [(RECIPE, "GRPO from SFT")]
    return [(SCORING, "Pairwise Margin (head)"), (RECIPE, "MC-GRPO from SFT")]


def collate(runs: Sequence[str | os.PathLike], names: Sequence[str] | None = None) -> str:
    """Merge several runs' ``results.csv`` into the paper's Table 2 layout (markdown).

    Each run fills the rows its model switches select (:func:`variant_labels`); ``names``
    overrides the row labels. The score-recovery panel comes from the MC-GRPO run (else the
    first run with outcome aggregators). Runs whose variant is unknown go to a "Runs" section.
    """
    sections: dict[str, list[tuple[str, str, dict[str, dict[str, float]]]]] = {
        SCORING: [],
        RECOVERY: [],
        RECIPE: [],
        "Runs": [],
    }
    all_rows: list[dict[str, Any]] = []
    recovery: tuple[bool, list[dict[str, Any]]] | None = None
    for k, run in enumerate(runs):
        path = find_results(run)
        rows = [r for r in read_csv(path) if r.get("stage", "test") in ("test", "")]
        all_rows += rows
        primary = "direct" if any(r["aggregator"] == "direct" for r in rows) else "lsq"
        values = metric_values(rows, primary)
        labels = variant_labels(run_info(path)) or [("Runs", Path(run).name)]
        for section, label in labels:
            sections[section].append((label, names[k] if names else label, values))
        is_main = any(label == "MC-GRPO from SFT" for _, label in labels)
        if {"winrate", "elo"} & {r["aggregator"] for r in rows} and (recovery is None or (is_main and not recovery[0])):
            recovery = (is_main, rows)
    if recovery is not None:
        sections[RECOVERY] = [(label, label, v) for label, v in recovery_section(recovery[1])[1]]
    order = {label: t for t, label in enumerate(ROW_ORDER)}
    body = []
    for title, rows in sections.items():
        rows = sorted(rows, key=lambda row: order.get(row[0], len(order))) if title != RECOVERY else rows
        if rows:
            body.append((title, [(shown, values) for _, shown, values in rows]))
    return panel_table(body, column_layout(all_rows), first_header="Variant")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m callbacks.tables RUN_DIR... [--names LABEL...] [--out FILE]``."""
    parser = argparse.ArgumentParser(
        prog="python -m callbacks.tables",
        description="merge test runs' results.csv into the paper's Table 2 layout (markdown)",
    )
    parser.add_argument("runs", nargs="+", help="run directories (log_dir, its eval/, or a csv)")
    parser.add_argument("--names", nargs="+", help="row labels, one per run (default: config)")
    parser.add_argument("--out", help="write the markdown here (default: print only)")
    args = parser.parse_args(argv)
    if args.names and len(args.names) != len(args.runs):
        parser.error(f"--names has {len(args.names)} labels for {len(args.runs)} runs")
    text = collate(args.runs, args.names)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
