"""What one benchmark's evaluation produced, and the rows, metrics and curves reported from it.

:class:`BenchmarkOutcome` is filled by the oracle (comparisons, bad videos, rationales) and by
the score recovery (:class:`ranking.Recovery`); :func:`result_rows` turns it into
``results.csv`` rows, :func:`metrics` into the logged ``<stage>/<bench>/...`` keys,
:func:`bad_rows` into ``bad_videos.csv`` and :func:`convergence_curves` into its Fig. 4 curves.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from callbacks import tables
from ranking import ConvergenceResult, Recovery, convergence, correlations

BAD_COLUMNS = ("benchmark", "index", "video", "reason")
NO_CORRELATION = {"srcc": np.nan, "plcc": np.nan, "krcc": np.nan, "plcc_logistic": np.nan}


@dataclass
class BenchmarkOutcome:
    """What one benchmark's evaluation produced (all arrays over the benchmark's N items)."""

    name: str
    group: str
    names: list[str]
    mos: np.ndarray  # (N,) float on the 1-5 scale, NaN when unknown
    bad: dict[int, str]  # item -> reason (decode failure, encode pass)
    mos_raw: np.ndarray | None = None  # (N,) MOS on the user's own scale (predict anchors)
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))  # (E, 2)
    margins: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (E,), NaN = failed
    forced: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (answers,) bool
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # aggregator -> (N,)
    recovery: Recovery | None = None  # the graph the scores came from (pairwise only)
    valid: np.ndarray | None = None  # (N,) bool: scored items
    degree: np.ndarray | None = None  # (N,) usable comparisons per item
    antisymmetry: float = float("nan")
    rationales: list[tuple[str, str, float, str]] = field(default_factory=list)

    @property
    def forced_frac(self) -> float:
        """Share of the answers used whose template the system closed (NaN without answers)."""
        return float(self.forced.mean()) if len(self.forced) else float("nan")


def result_rows(outcome: BenchmarkOutcome, stage: str, checkpoint: str) -> list[dict[str, Any]]:
    """One ``results.csv`` row per aggregator: correlations with MOS and graph counts."""
    valid = outcome.valid if outcome.valid is not None else np.zeros(len(outcome.names), bool)
    ok = valid & np.isfinite(outcome.mos)
    rows = []
    for agg, scores in outcome.scores.items():
        corr = correlations(scores[ok], outcome.mos[ok]) if ok.sum() >= 3 else NO_CORRELATION
        rows.append(
            {
                "stage": stage,
                "benchmark": outcome.name,
                "group": outcome.group,
                "aggregator": agg,
                **{k: corr[k] for k in NO_CORRELATION},
                "n_items": len(outcome.names),
                "n_scored": int(valid.sum()),
                "n_pairs": int(np.isfinite(outcome.margins).sum()),
                "n_bad": len(outcome.bad),
                "n_forced": int(outcome.forced.sum()),
                "antisymmetry": outcome.antisymmetry,
                "checkpoint_id": checkpoint,
            }
        )
    return rows


def metrics(
    rows: Sequence[Mapping[str, Any]], outcomes: Mapping[str, BenchmarkOutcome], stage: str
) -> dict[str, float]:
    """``<stage>/<bench>/<agg>_srcc|plcc``, ``antisymmetry``, ``forced_frac`` and the group
    averages ``<stage>/avg_<group>/<agg>_srcc|plcc``; undefined (NaN) values are left out."""
    out: dict[str, float] = {}
    for row in rows:
        for m in tables.METRICS:
            out[f"{stage}/{row['benchmark']}/{row['aggregator']}_{m}"] = float(row[m])
        out[f"{stage}/{row['benchmark']}/antisymmetry"] = float(row["antisymmetry"])
    for name, outcome in outcomes.items():
        out[f"{stage}/{name}/forced_frac"] = outcome.forced_frac
    layout = tables.column_layout(rows)
    for agg in {r["aggregator"] for r in rows}:
        values = tables.metric_values(rows, agg)
        for group, cols in layout.items():
            if not cols:  # a group without benchmarks has no average
                continue
            for m in tables.METRICS:
                out[f"{stage}/avg_{group}/{agg}_{m}"] = tables.group_average(values, cols, m)
    return {k: v for k, v in out.items() if np.isfinite(v)}


def bad_rows(outcomes: Mapping[str, BenchmarkOutcome]) -> list[dict[str, Any]]:
    """``bad_videos.csv`` rows: every video that could not be compared, with the reason."""
    return [
        {"benchmark": o.name, "index": i, "video": o.names[i], "reason": r}
        for o in outcomes.values()
        for i, r in sorted(o.bad.items())
    ]


def unscored_rows(outcome: BenchmarkOutcome) -> list[dict[str, Any]]:
    """``bad_videos.csv`` rows of decodable videos left without a score (every answer failed)."""
    scored = outcome.valid if outcome.valid is not None else np.zeros(len(outcome.names), bool)
    reason = "no valid comparison (every answer failed the response format)"
    return [
        {"benchmark": outcome.name, "index": i, "video": v, "reason": reason}
        for i, v in enumerate(outcome.names)
        if i not in outcome.bad and not scored[i]
    ]


def convergence_curves(
    outcome: BenchmarkOutcome, aggregators: Sequence[str], steps: int, draw_threshold: float
) -> ConvergenceResult | None:
    """Fig. 4 protocol on one benchmark: each aggregator's SRCC/PLCC over ``steps`` prefixes of
    the usable edge stream, in the order the sampler asked them (:func:`ranking.convergence`).

    ``None`` when there is nothing to converge to: ``steps <= 0``, no pairwise graph (pointwise
    model), fewer than 4 usable edges or 3 scored items, or an item without a MOS (predict).
    """
    rec = outcome.recovery
    if steps <= 0 or rec is None:
        return None
    mos = outcome.mos[rec.valid]
    if len(rec.pairs) < 4 or len(mos) < 3 or not np.isfinite(mos).all():
        return None
    with warnings.catch_warnings():  # early prefixes are disconnected by design
        warnings.simplefilter("ignore", RuntimeWarning)
        return convergence(
            rec.pairs, rec.margins, mos, aggregators, steps=min(steps, len(rec.pairs)), draw_threshold=draw_threshold
        )
