"""Leaderboard rows, confidence intervals, anchor mapping and summary (no Lightning)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from callbacks import leaderboard as lb
from callbacks.tables import write_csv
from ranking import recover_scores


def test_rows_are_ranked_with_ordered_confidence_intervals(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scores, se = rng.normal(size=20), rng.uniform(0.05, 0.3, 20)
    rows = lb.leaderboard_rows([f"v{i}" for i in range(20)], scores, se, np.arange(20))
    assert [r["rank"] for r in rows] == list(range(1, 21))
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    for r in rows:
        assert r["ci_low"] < r["score"] < r["ci_high"]
        assert r["ci_high"] - r["ci_low"] == pytest.approx(2 * 1.96 * r["stderr"], rel=1e-3)
    write_csv(rows, tmp_path / "leaderboard.csv", lb.LEADERBOARD_COLUMNS)
    with open(tmp_path / "leaderboard.csv") as f:
        assert next(csv.reader(f)) == list(lb.LEADERBOARD_COLUMNS)


def test_anchor_mapping_recovers_a_known_affine_map() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=30)
    mos = np.full(30, np.nan)
    mos[:6] = 12.5 * scores[:6] + 50.0 + rng.normal(0, 1e-6, 6)
    a, b = lb.fit_affine(scores, mos)
    assert (a, b) == (pytest.approx(12.5, abs=1e-4), pytest.approx(50.0, abs=1e-4))
    rows = lb.leaderboard_rows(
        [str(i) for i in range(30)], scores, np.full(30, 0.1), np.ones(30), mos=mos, mapping=(a, b)
    )
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
    rows = lb.leaderboard_rows(["a", "b", "c"], np.array([0.0, 1.0, -1.0]), np.full(3, 0.1), np.full(3, 2))
    text = lb.format_summary(rows, [{"video": "broken.mp4", "reason": "truncated"}], top=2)
    assert "top 2" in text and "broken.mp4: truncated" in text
    assert text.index(" b ") < text.index(" a ") and " c " not in text


def test_leaderboard_scores_are_the_recovered_lsq_scores_with_exact_errors() -> None:
    rng = np.random.default_rng(2)
    truth = rng.normal(size=8)
    pairs = np.array([(i, j) for i in range(8) for j in range(i + 1, 8)][::2])
    margins = truth[pairs[:, 0]] - truth[pairs[:, 1]] + rng.normal(0, 0.1, len(pairs))
    margins[3] = np.nan  # a failed comparison is left out of both
    rec = recover_scores(pairs, margins, 8, ["lsq"])
    scores, se = lb.lsq_with_stderr(rec)
    np.testing.assert_array_equal(scores, rec.scores["lsq"][rec.valid])  # reused, not re-solved
    ok = np.isfinite(margins)
    design = np.zeros((ok.sum(), 8))  # (E, N) signed incidence, paper Eq. (3)
    design[np.arange(ok.sum()), pairs[ok, 0]], design[np.arange(ok.sum()), pairs[ok, 1]] = 1, -1
    resid = margins[ok] - design @ scores
    sigma2 = resid @ resid / (ok.sum() - 7)
    expected = np.sqrt(sigma2 * np.diag(np.linalg.pinv(design.T @ design)))
    np.testing.assert_allclose(se, expected, rtol=1e-6)


def test_build_leaderboard_uses_known_mos_and_anchor_files() -> None:
    names = ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    scored = np.array([True, True, False, True])
    rows = lb.build_leaderboard(
        names,
        scored,
        np.array([1.0, 0.0, -1.0]),
        np.full(3, 0.1),
        np.array([3, 2, 0, 3]),
        known_mos=np.array([80.0, np.nan, np.nan, np.nan]),
        anchors={"clips/d.mp4": 20.0},
    )
    assert [r["video"] for r in rows] == ["a.mp4", "b.mp4", "d.mp4"]
    assert [r["score_mapped"] for r in rows] == pytest.approx([80.0, 50.0, 20.0])
    assert [r["mos"] for r in rows] == [80.0, "", ""] and rows[2]["n_comparisons"] == 3
