"""Training pairs: within one source, balanced over |m*| and A/B position, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.benchmarks import VideoTable
from datamodules.pairs import (
    attach_rationales,
    build_pairs,
    build_present_pairs,
    margin_edges,
    pairs_from_names,
    split_by_video,
)


def _table(n: int = 60, seed: int = 0, skewed: bool = False) -> VideoTable:
    rng = np.random.default_rng(seed)
    mos = np.clip(rng.normal(3.0, 0.5, n), 1, 5) if skewed else rng.uniform(1, 5, n)
    names = [f"v{k}.mp4" for k in range(n)]
    return VideoTable(
        "toy", names, names, mos, mos.copy(), ["train"] * n, [], {"source": ["s1" if k % 3 else "s2" for k in range(n)]}
    )


def test_pairs_stay_within_one_source_and_margins_match() -> None:
    t = _table()
    p = build_pairs(t, 400, seed=1)
    src = np.asarray(t.extra["source"])
    assert len(p) == 400 and p.benchmark == "toy"
    assert np.all(src[p.index_a] == src[p.index_b])
    assert np.allclose(p.margin, t.mos[p.index_a] - t.mos[p.index_b])
    assert np.all(p.index_a != p.index_b)
    unordered = {tuple(sorted(ab)) for ab in zip(p.index_a.tolist(), p.index_b.tolist())}
    assert len(unordered) == 400  # no pair twice, not even in the other order


def test_without_group_column_pairs_cross_sources() -> None:
    t = _table()
    p = build_pairs(t, 400, seed=1, group_key=None)
    src = np.asarray(t.extra["source"])
    assert np.any(src[p.index_a] != src[p.index_b])


def test_every_video_is_first_as_often_as_second_and_signs_balance() -> None:
    t = _table(200, skewed=True)
    p = build_pairs(t, 1501, seed=2)
    first = np.bincount(p.index_a, minlength=len(t))
    second = np.bincount(p.index_b, minlength=len(t))
    degree = first + second
    assert np.all(np.abs(first - second) == degree % 2)  # exact: 0 for even degree, 1 for odd
    assert abs(int(np.sum(p.margin > 0)) - int(np.sum(p.margin < 0))) <= 1


def test_abs_margin_is_balanced_over_bins() -> None:
    t = _table(300, skewed=True)  # a uniform draw would be dominated by small gaps
    p = build_pairs(t, 800, seed=3, num_bins=4, group_key=None)
    edges = margin_edges(np.sort(t.mos), 4)
    counts = np.histogram(np.abs(p.margin), bins=edges)[0]
    assert counts.tolist() == [200, 200, 200, 200]
    uniform = build_pairs(t, 800, seed=3, num_bins=1, group_key=None)
    assert np.histogram(np.abs(uniform.margin), bins=edges)[0][0] > 300


def test_deterministic_by_seed() -> None:
    t = _table()
    a, b = build_pairs(t, 200, seed=7), build_pairs(t, 200, seed=7)
    c = build_pairs(t, 200, seed=8)
    assert np.array_equal(a.index_a, b.index_a) and np.array_equal(a.index_b, b.index_b)
    assert not np.array_equal(a.index_a, c.index_a)


def test_small_group_gives_all_its_pairs() -> None:
    t = _table(5)
    p = build_pairs(t, 100, seed=0, group_key=None)
    assert len(p) == 10  # 5 videos hold only 10 distinct pairs


def test_split_by_video_never_leaks() -> None:
    t = _table(50)
    train, held = split_by_video(t, 0.2, seed=4)
    assert len(held) == 10 and not set(train) & set(held)
    p = build_pairs(t.subset(train), 300, seed=0)
    shown = {t.subset(train).names[k] for k in np.concatenate([p.index_a, p.index_b])}
    assert not shown & {t.names[k] for k in held}
    with pytest.raises(ValueError, match="held_out"):
        split_by_video(t, 1.5)


def test_pairs_from_names_and_errors() -> None:
    t = _table(5)
    p = pairs_from_names(t, [("v1.mp4", "v3.mp4")])
    assert p.index_a.tolist() == [1] and p.margin[0] == pytest.approx(t.mos[1] - t.mos[3])
    with pytest.raises(KeyError, match="v9.mp4"):
        pairs_from_names(t, [("v1.mp4", "v9.mp4")])
    with pytest.raises(ValueError, match="num_pairs"):
        build_pairs(t, 0)


def test_rationale_fn_gives_one_text_per_pair() -> None:
    t = _table(6)
    pairs = pairs_from_names(t, [("v1.mp4", "v2.mp4"), ("v5.mp4", "v4.mp4")])
    texts = attach_rationales(t, pairs, lambda tab, i, j, m: f"{tab.names[i]}>{tab.names[j]}:{m:+.1f}")
    assert texts == [f"v1.mp4>v2.mp4:{t.mos[1] - t.mos[2]:+.1f}", f"v5.mp4>v4.mp4:{t.mos[5] - t.mos[4]:+.1f}"]
    assert attach_rationales(t, pairs, None) == ["", ""]


def test_present_pairs_leave_out_absent_videos_and_equal_build_pairs_otherwise() -> None:
    t = _table(30)
    full, same = build_pairs(t, 40, seed=3), build_present_pairs(t, 40, seed=3)
    assert np.array_equal(full.index_a, same.index_a) and np.array_equal(full.index_b, same.index_b)
    t.missing = ["v4.mp4", "v7.mp4"]
    present = build_present_pairs(t, 40, seed=3)
    used = set(present.index_a.tolist()) | set(present.index_b.tolist())
    assert len(present) == 40 and not used & {4, 7}
    assert np.allclose(present.margin, t.mos[present.index_a] - t.mos[present.index_b])
