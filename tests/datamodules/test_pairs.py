"""Training pairs: within one source, balanced over |m*| and A/B position, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.benchmarks import VideoTable
from datamodules.pairs import build_pairs, pairs_from_names


def _table(n: int = 60, seed: int = 0) -> VideoTable:
    rng = np.random.default_rng(seed)
    mos = rng.uniform(1, 5, n)
    names = [f"v{k}.mp4" for k in range(n)]
    return VideoTable("toy", names, names, mos, mos.copy(), ["train"] * n, [],
                      {"source": ["s1" if k % 3 else "s2" for k in range(n)]})


def test_pairs_stay_within_one_source_and_margins_match() -> None:
    t = _table()
    p = build_pairs(t, 400, seed=1)
    src = np.asarray(t.extra["source"])
    assert len(p) == 400
    assert np.all(src[p.index_a] == src[p.index_b])
    assert np.allclose(p.margin, t.mos[p.index_a] - t.mos[p.index_b])
    assert np.all(p.index_a != p.index_b)


def test_positions_and_signs_are_balanced() -> None:
    t = _table()
    p = build_pairs(t, 600, seed=2)
    first = np.bincount(p.index_a, minlength=len(t))
    second = np.bincount(p.index_b, minlength=len(t))
    assert np.abs(first - second).max() <= 2  # each video first about as often as second
    assert np.mean(np.abs(first - second) <= 1) >= 0.95  # odd degree forces a difference of 1
    assert abs(np.mean(p.margin > 0) - 0.5) < 0.1


def test_abs_margin_bins_are_balanced() -> None:
    t = _table(120)
    p = build_pairs(t, 400, seed=3, num_bins=4)
    gap = np.abs(p.margin)
    uniform = build_pairs(t, 400, seed=3, num_bins=1)
    # equal-width bins pull in more large gaps than a uniform draw would
    assert np.mean(gap > 2.0) > np.mean(np.abs(uniform.margin) > 2.0)


def test_deterministic_by_seed() -> None:
    t = _table()
    a, b = build_pairs(t, 200, seed=7), build_pairs(t, 200, seed=7)
    c = build_pairs(t, 200, seed=8)
    assert np.array_equal(a.index_a, b.index_a) and np.array_equal(a.index_b, b.index_b)
    assert not np.array_equal(a.index_a, c.index_a)


def test_pairs_from_names_and_errors() -> None:
    t = _table(5)
    p = pairs_from_names(t, [("v1.mp4", "v3.mp4")])
    assert p.index_a.tolist() == [1] and p.margin[0] == pytest.approx(t.mos[1] - t.mos[3])
    with pytest.raises(KeyError, match="v9.mp4"):
        pairs_from_names(t, [("v1.mp4", "v9.mp4")])
    with pytest.raises(ValueError, match="num_pairs"):
        build_pairs(t, 0)
