"""Leaderboard of a user's videos: rows, confidence intervals, anchor mapping, files, summary.

Functions over arrays and lists (no Lightning): the predict stage of
:class:`callbacks.evaluation.ComparisonGraphEvaluation` calls :func:`write_leaderboards` after
the comparisons. The scores are the LSQ solution the evaluation already recovered
(:class:`ranking.Recovery`); only their standard errors are computed here.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from callbacks.journal import slug
from callbacks.outcome import BAD_COLUMNS, BenchmarkOutcome, bad_rows, unscored_rows
from callbacks.tables import write_csv
from ranking import Recovery, score_uncertainty

LEADERBOARD_COLUMNS = ("rank", "video", "score", "stderr", "ci_low", "ci_high", "n_comparisons")
Z_95 = 1.959963984540054  # two-sided 95 % normal quantile


def fit_affine(scores: np.ndarray, mos: np.ndarray) -> tuple[float, float]:
    """Least-squares ``mos ≈ a * score + b`` over the anchors with a finite MOS.

    Args:
        scores: (N,) leaderboard scores; mos: (N,) known MOS, NaN where unknown.

    Returns:
        ``(a, b)``.

    Raises:
        ValueError: fewer than two usable anchors, or all anchors share one score.

    >>> a, b = fit_affine(np.array([-1.0, 0.0, 1.0, 2.0]), np.array([1.0, np.nan, 5.0, 7.0]))
    >>> round(a, 6), round(b, 6)
    (2.0, 3.0)
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(mos, dtype=np.float64).reshape(-1)
    ok = np.isfinite(s) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(s[ok]) == 0:
        raise ValueError(
            f"need at least 2 anchor videos with a known MOS and different scores "
            f"to map scores to the MOS scale, got {int(ok.sum())}"
        )
    design = np.stack([s[ok], np.ones(int(ok.sum()))], axis=1)  # (K, 2)
    (a, b), *_ = np.linalg.lstsq(design, y[ok], rcond=None)
    return float(a), float(b)


def leaderboard_rows(
    names: Sequence[str],
    scores: np.ndarray,
    stderr: np.ndarray,
    n_comparisons: np.ndarray,
    mos: np.ndarray | None = None,
    mapping: tuple[float, float] | None = None,
    z: float = Z_95,
) -> list[dict[str, Any]]:
    """Rows sorted best first: rank, video, score, stderr, 95 % CI, comparisons (+ mos, mapped).

    Args:
        names: (N,) video names; scores, stderr, n_comparisons: (N,) per video.
        mos: optional (N,) known MOS (NaN where unknown); adds a ``mos`` column.
        mapping: optional ``(a, b)`` from :func:`fit_affine`; adds ``score_mapped`` and its CI.
        z: normal quantile of the interval (1.96 for 95 %).

    >>> rows = leaderboard_rows(["a", "b"], np.array([-0.5, 0.5]), np.array([0.1, 0.1]),
    ...                         np.array([3, 3]))
    >>> [(r["rank"], r["video"], r["ci_low"]) for r in rows]
    [(1, 'b', 0.304004), (2, 'a', -0.695996)]
    """
    s = np.asarray(scores, dtype=np.float64)
    se = np.asarray(stderr, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    rows = []
    for rank, k in enumerate(order.tolist(), start=1):
        row: dict[str, Any] = {
            "rank": rank,
            "video": names[k],
            "score": round(float(s[k]), 6),
            "stderr": round(float(se[k]), 6),
            "ci_low": round(float(s[k] - z * se[k]), 6),
            "ci_high": round(float(s[k] + z * se[k]), 6),
            "n_comparisons": int(n_comparisons[k]),
        }
        if mos is not None:
            row["mos"] = float(mos[k]) if math.isfinite(float(mos[k])) else ""
        if mapping is not None:
            a, b = mapping
            lo, hi = sorted((a * row["ci_low"] + b, a * row["ci_high"] + b))
            row.update(
                score_mapped=round(float(a * s[k] + b), 6),
                mapped_ci_low=round(lo, 6),
                mapped_ci_high=round(hi, 6),
            )
        rows.append(row)
    return rows


def lsq_with_stderr(recovery: Recovery) -> tuple[np.ndarray, np.ndarray]:
    """LSQ scores of the scored items, reused from ``recovery``, and their standard errors.

    Returns:
        ``(scores (K,), stderr (K,))`` over the ``K = recovery.valid.sum()`` scored items.

    >>> from ranking import recover_scores
    >>> r = recover_scores(np.array([[0, 1], [1, 2], [0, 2]]), np.array([1.0, 1.0, 1.5]), 3,
    ...                    ["lsq"])
    >>> s, se = lsq_with_stderr(r)
    >>> np.round(s, 3).tolist(), np.round(se, 3).tolist()
    ([0.833, 0.0, -0.833], [0.136, 0.136, 0.136])
    """
    k = int(recovery.valid.sum())
    if not len(recovery.pairs):
        return np.zeros(k), np.full(k, np.inf)
    scores = recovery.compact("lsq")
    return scores, score_uncertainty(recovery.pairs, recovery.margins, k, scores)


def build_leaderboard(
    names: Sequence[str],
    scored: np.ndarray,
    scores: np.ndarray,
    stderr: np.ndarray,
    degree: np.ndarray,
    known_mos: np.ndarray | None = None,
    anchors: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Leaderboard rows of the scored videos, mapped to a MOS scale when anchors allow it.

    Args:
        names: (N,) all videos; scored: (N,) bool, the K videos with a score.
        scores, stderr: (K,) of the scored videos; degree: (N,) comparisons per video.
        known_mos: optional (N,) MOS on the user's scale (NaN where unknown); these videos
            are anchors and get a ``mos`` column.
        anchors: more anchors ``{video: mos}`` (matched by :func:`anchor_mos`).

    >>> rows = build_leaderboard(["a", "b", "c"], np.array([True, False, True]),
    ...                          np.array([1.0, -1.0]), np.array([0.1, 0.1]), np.array([2, 0, 2]),
    ...                          anchors={"a": 4.0, "c": 2.0})
    >>> [(r["video"], r["score_mapped"]) for r in rows]
    [('a', 4.0), ('c', 2.0)]
    """
    idx = np.flatnonzero(scored)
    shown = [names[i] for i in idx]
    known = np.full(len(idx), np.nan) if known_mos is None else np.asarray(known_mos, float)[idx]
    anchor = np.where(np.isfinite(known), known, anchor_mos(shown, anchors or {}))
    mapping = fit_affine(scores, anchor) if np.isfinite(anchor).sum() >= 2 else None
    mos = known if np.isfinite(known).any() else None
    return leaderboard_rows(shown, scores, stderr, np.asarray(degree)[idx], mos, mapping)


def read_anchors(path: str | os.PathLike) -> dict[str, float]:
    """``{video: mos}`` from a csv with ``video`` and ``mos`` columns.

    Raises:
        ValueError: missing columns or a non-numeric MOS, naming the file and row.
    """
    out: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"video", "mos"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: anchors csv needs columns 'video' and 'mos', found {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                out[row["video"]] = float(row["mos"])
            except ValueError as err:
                raise ValueError(f"{path}: row {line}: mos {row['mos']!r} is not a number") from err
    return out


def anchor_mos(names: Sequence[str], anchors: Mapping[str, float]) -> np.ndarray:
    """(N,) MOS of the named anchors (matched by full name, then by file name), NaN elsewhere."""
    by_base = {Path(k).name: v for k, v in anchors.items()}
    return np.array([anchors.get(n, by_base.get(Path(n).name, float("nan"))) for n in names], dtype=np.float64)


def format_summary(rows: Sequence[Mapping[str, Any]], bad: Sequence[Mapping[str, Any]], top: int = 10) -> str:
    """Plain-text summary: the top rows and the bad videos with their reasons."""
    cols = [c for c in (*LEADERBOARD_COLUMNS, "score_mapped", "mos") if rows and c in rows[0]]
    lines = [
        f"Leaderboard ({len(rows)} videos, top {min(top, len(rows))}):",
        "  ".join(f"{c:>12}" if c != "video" else f"{c:<32}" for c in cols),
    ]
    for row in rows[:top]:
        lines.append("  ".join(f"{_cell(row[c]):<32}" if c == "video" else f"{_cell(row[c]):>12}" for c in cols))
    if bad:
        lines.append(f"{len(bad)} bad video(s) skipped (see bad_videos.csv):")
        lines += [f"  {b['video']}: {b['reason']}" for b in bad]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value)
    return text if len(text) <= 32 else "…" + text[-31:]


def outcome_scores(outcome: BenchmarkOutcome) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(scored (N,) bool, scores (K,), stderr (K,))`` of one benchmark's outcome.

    A pairwise model gets the LSQ scores already recovered and their standard errors; a
    pointwise model its own scores (no graph: no standard error).
    """
    scored = outcome.valid if outcome.valid is not None else np.zeros(len(outcome.names), bool)
    if "direct" in outcome.scores:
        return scored, outcome.scores["direct"][scored], np.full(int(scored.sum()), np.nan)
    if outcome.recovery is None:  # fewer than two decodable videos: nothing was compared
        return scored, np.zeros(0), np.zeros(0)
    return scored, *lsq_with_stderr(outcome.recovery)


def write_leaderboards(
    outcomes: Mapping[str, BenchmarkOutcome],
    out: str | os.PathLike,
    anchors: Mapping[str, float] | None = None,
    top_k: int = 10,
) -> None:
    """``leaderboard.csv`` (``leaderboard_<name>.csv`` per benchmark when several),
    ``bad_videos.csv`` (bad and unscored videos) and a printed summary per benchmark."""
    out = Path(out)
    bad = bad_rows(outcomes)
    for name, o in outcomes.items():
        scored, scores, stderr = outcome_scores(o)
        degree = o.degree if o.degree is not None else np.zeros(len(o.names), int)
        rows = build_leaderboard(o.names, scored, scores, stderr, degree, o.mos_raw, anchors)
        bad += unscored_rows(o)
        path = out / (f"leaderboard_{slug(name)}.csv" if len(outcomes) > 1 else "leaderboard.csv")
        write_csv(rows, path, LEADERBOARD_COLUMNS)
        failed = int((~np.isfinite(o.margins)).sum())
        print(
            f"\n{format_summary(rows, [b for b in bad if b['benchmark'] == name], top_k)}"
            f"\n{len(o.margins)} comparisons ({failed} failed)\nleaderboard: {path}"
            f"\ncomparisons: {out / 'comparisons.jsonl'}"
        )
    write_csv(bad, out / "bad_videos.csv", BAD_COLUMNS)
