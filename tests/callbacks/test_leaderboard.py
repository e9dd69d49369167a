"""Leaderboard rows, confidence intervals, anchor mapping and summary (no Lightning)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from callbacks import leaderboard as lb


def test_rows_are_ranked_with_ordered_confidence_intervals(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scores, se = rng.normal(size=20), rng.uniform(0.05, 0.3, 20)
    rows = lb.leaderboard_rows([f"v{i}" for i in range(20)], scores, se, np.arange(20))
    assert [r["rank"] for r in rows] == list(range(1, 21))
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    for r in rows:
        assert r["ci_low"] < r["score"] < r["ci_high"]
        assert r["ci_high"] - r["ci_low"] == pytest.approx(2 * 1.96 * r["stderr"], rel=1e-3)
    lb.write_rows(rows, tmp_path / "leaderboard.csv")
    with open(tmp_path / "leaderboard.csv") as f:
        assert next(csv.reader(f)) == list(lb.LEADERBOARD_COLUMNS)


def test_anchor_mapping_recovers_a_known_affine_map() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=30)
    mos = np.full(30, np.nan)
    mos[:6] = 12.5 * scores[:6] + 50.0 + rng.normal(0, 1e-6, 6)
    a, b = lb.fit_affine(scores, mos)
    assert (a, b) == (pytest.approx(12.5, abs=1e-4), pytest.approx(50.0, abs=1e-4))
    rows = lb.leaderboard_rows([str(i) for i in range(30)], scores, np.full(30, 0.1),
                               np.ones(30), mos=mos, mapping=(a, b))
    for r in rows:
        assert r["score_mapped"] == pytest.approx(12.5 * r["score"] + 50.0, abs=1e-3)
        assert r["mapped_ci_low"] < r["score_mapped"] < r["mapped_ci_high"]


def test_affine_needs_two_distinct_anchors() -> None:
    with pytest.raises(ValueError, match="at least 2 anchor"):
        lb.fit_affine(np.array([0.1, 0.2]), np.array([3.0, np.nan]))


def test_anchor_files_and_matching(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("video,mos\nclips/x.mp4,70\ny.mp4,20\n")
    anchors = lb.read_anchors(tmp_path / "a.csv")
    assert lb.anchor_mos(["x.mp4", "y.mp4", "z.mp4"], anchors)[:2].tolist() == [70.0, 20.0]
    (tmp_path / "b.csv").write_text("video,mos\nx.mp4,high\n")
    with pytest.raises(ValueError, match="row 2"):
        lb.read_anchors(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("name,score\nx,1\n")
    with pytest.raises(ValueError, match="'video' and 'mos'"):
        lb.read_anchors(tmp_path / "c.csv")


def test_summary_lists_top_rows_and_bad_videos() -> None:
    rows = lb.leaderboard_rows(["a", "b", "c"], np.array([0.0, 1.0, -1.0]), np.full(3, 0.1),
                               np.full(3, 2))
    text = lb.format_summary(rows, [{"video": "broken.mp4", "reason": "truncated"}], top=2)
    assert "top 2" in text and "broken.mp4: truncated" in text
    assert text.index(" b ") < text.index(" a ") and " c " not in text
