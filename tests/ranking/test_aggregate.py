"""The one aggregator registry, graph compaction and score recovery (ranking.aggregate)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ranking import (
    AGGREGATOR_NAMES,
    compact_graph,
    convergence,
    lsq_scores,
    make_aggregators,
    recover_scores,
    winrate_scores,
)

REPO = Path(__file__).resolve().parents[2]


def _graph(n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mos = rng.uniform(1, 5, n)
    pairs = np.concatenate(
        [np.stack([np.arange(n), np.roll(np.arange(n), 1)], 1), np.stack([np.arange(n), np.roll(np.arange(n), 7)], 1)]
    )
    return pairs, mos[pairs[:, 0]] - mos[pairs[:, 1]] + rng.normal(0, 0.1, len(pairs)), mos


def test_registry_names_and_unknown_name_error() -> None:
    assert AGGREGATOR_NAMES == ("lsq", "elo", "winrate", "bt")
    assert list(make_aggregators()) == list(AGGREGATOR_NAMES)
    with pytest.raises(ValueError, match=r"unknown aggregators \['median'\]; allowed: \['lsq'"):
        make_aggregators(["lsq", "median"])


def test_draw_threshold_reaches_the_outcome_aggregators() -> None:
    pairs, margins, _ = _graph()
    for threshold in (0.0, 0.5):
        funcs = make_aggregators(["winrate"], draw_threshold=threshold)
        np.testing.assert_array_equal(
            funcs["winrate"](pairs, margins, 30), winrate_scores(pairs, margins, 30, threshold)
        )
    strict, loose = (make_aggregators(["elo"], draw_threshold=t)["elo"](pairs, margins, 30) for t in (0.0, 2.0))
    assert not np.allclose(strict, loose)


def test_convergence_uses_the_registry_with_its_draw_threshold() -> None:
    pairs, margins, mos = _graph()
    res = convergence(pairs, margins, mos, ["winrate"], steps=[60], draw_threshold=1.0)
    expected = make_aggregators(["winrate"], 1.0)["winrate"](pairs, margins, 30)
    from scipy.stats import spearmanr

    assert res.curves["winrate"]["srcc"][-1] == pytest.approx(spearmanr(expected, mos)[0])


def test_lsq_warns_about_a_disconnected_graph_only_when_asked() -> None:
    pairs, margins = np.array([[0, 1], [2, 3]]), np.array([1.0, 1.0])
    with pytest.warns(RuntimeWarning, match="disconnected"):
        make_aggregators(["lsq"], warn=True)["lsq"](pairs, margins, 4)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_aggregators(["lsq"])["lsq"](pairs, margins, 4)


def test_compact_graph_drops_failed_and_excluded_edges() -> None:
    p, m, ok = compact_graph(
        np.array([[0, 3], [3, 4], [1, 3], [4, 0]]), np.array([1.0, np.nan, 2.0, 0.5]), 5, exclude=[1]
    )
    assert p.tolist() == [[0, 1], [2, 0]] and m.tolist() == [1.0, 0.5]
    assert ok.tolist() == [True, False, False, True, True]


def test_recover_scores_keeps_the_graph_for_reuse() -> None:
    pairs, margins, mos = _graph()
    margins[[0, 5]] = np.nan
    rec = recover_scores(pairs, margins, 31, exclude=[2])  # item 30: never compared
    assert set(rec.scores) == set(AGGREGATOR_NAMES)
    assert not rec.valid[[2, 30]].any() and rec.valid.sum() == 29
    assert all(np.isnan(s[[2, 30]]).all() and np.isfinite(s[rec.valid]).all() for s in rec.scores.values())
    np.testing.assert_allclose(rec.compact("lsq"), lsq_scores(rec.pairs, rec.margins, 29))
    assert len(rec.pairs) == len(pairs) - 2 - 4  # two failed, four touching item 2
    lonely = recover_scores(np.array([[0, 1]]), np.array([np.nan]), 3, ["lsq"])
    assert not lonely.valid.any() and np.isnan(lonely.scores["lsq"]).all()


def test_ranking_imports_neither_torch_nor_lightning() -> None:
    code = (
        "import sys, ranking, ranking.aggregate, ranking.convergence\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'lightning', 'pytorch_lightning', 'callbacks', 'datamodules'))\n"
        "print(heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
