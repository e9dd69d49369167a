"""Leaderboard of a user's videos: rows, confidence intervals, anchor mapping, CSV and summary.

Pure functions over arrays and lists (no Lightning): the predict stage of
:class:`callbacks.evaluation.ComparisonGraphEvaluation` calls them after the comparisons.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
                score_mapped=round(a * s[k] + b, 6),
                mapped_ci_low=round(lo, 6),
                mapped_ci_high=round(hi, 6),
            )
        rows.append(row)
    return rows


def write_rows(
    rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, columns: Sequence[str] | None = None
) -> None:
    """Write dict rows as CSV (columns from ``columns`` or the first row)."""
    fields = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def read_anchors(path: str | os.PathLike) -> dict[str, float]:
    """``{video: mos}`` from a csv with ``video`` and ``mos`` columns.

    Raises:
        ValueError: missing columns or a non-numeric MOS, naming the file and row.
    """
    out: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"video", "mos"} <= set(reader.fieldnames):
            raise ValueError(
                f"{path}: anchors csv needs columns 'video' and 'mos', found {reader.fieldnames}"
            )
        for line, row in enumerate(reader, start=2):
            try:
                out[row["video"]] = float(row["mos"])
            except ValueError as err:
                raise ValueError(f"{path}: row {line}: mos {row['mos']!r} is not a number") from err
    return out


def anchor_mos(names: Sequence[str], anchors: Mapping[str, float]) -> np.ndarray:
    """(N,) MOS of the named anchors (matched by full name, then by file name), NaN elsewhere."""
    by_base = {Path(k).name: v for k, v in anchors.items()}
    return np.array(
        [anchors.get(n, by_base.get(Path(n).name, float("nan"))) for n in names], dtype=np.float64
    )


def format_summary(
    rows: Sequence[Mapping[str, Any]], bad: Sequence[Mapping[str, Any]], top: int = 10
) -> str:
    """Plain-text summary: the top rows and the bad videos with their reasons."""
    cols = [c for c in (*LEADERBOARD_COLUMNS, "score_mapped", "mos") if rows and c in rows[0]]
    lines = [
        f"Leaderboard ({len(rows)} videos, top {min(top, len(rows))}):",
        "  ".join(f"{c:>12}" if c != "video" else f"{c:<32}" for c in cols),
    ]
    for row in rows[:top]:
        lines.append(
            "  ".join(
                f"{_cell(row[c]):<32}" if c == "video" else f"{_cell(row[c]):>12}" for c in cols
            )
        )
    if bad:
        lines.append(f"{len(bad)} bad video(s) skipped (see bad_videos.csv):")
        lines += [f"  {b['video']}: {b['reason']}" for b in bad]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value)
    return text if len(text) <= 32 else "…" + text[-31:]
