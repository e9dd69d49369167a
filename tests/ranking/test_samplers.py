"""Tests for ranking.samplers: validity, determinism, connectivity, drop."""

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components
import scipy.sparse as sp

from ranking import ActiveSampler, PaperSampler, RandomRegularSampler, run_comparisons

SAMPLERS = [PaperSampler, RandomRegularSampler, ActiveSampler]


def _run(cls: type, n: int = 300, seed: int = 0, drop: list[int] | None = None) -> np.ndarray:
    s = np.linspace(1, 5, n)
    sampler = cls(n, seed=seed, exclude=drop)
    pairs, _ = run_comparisons(lambda q: s[q[:, 0]] - s[q[:, 1]], n, sampler=sampler,
                               batch_size=64)
    return pairs


@pytest.mark.parametrize("cls", SAMPLERS)
def test_no_self_or_duplicate_pairs_and_budget(cls: type) -> None:
    pairs = _run(cls)
    assert len(pairs) == 5 * 300
    assert (pairs[:, 0] != pairs[:, 1]).all()
    keys = np.sort(pairs, axis=1)
    assert len(np.unique(keys, axis=0)) == len(pairs)


@pytest.mark.parametrize("cls", SAMPLERS)
def test_deterministic_by_seed(cls: type) -> None:
    np.testing.assert_array_equal(_run(cls, seed=5), _run(cls, seed=5))
    assert not np.array_equal(_run(cls, seed=5), _run(cls, seed=6))


@pytest.mark.parametrize("cls", SAMPLERS)
def test_connected_and_dropped_items_never_proposed(cls: type) -> None:
    dropped = [3, 4, 5, 100]
    pairs = _run(cls, drop=dropped)
    assert not np.isin(pairs, dropped).any()
    keep = np.setdiff1d(np.arange(300), dropped)
    adj = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(300, 300))
    _, labels = connected_components(adj, directed=False)
    assert len(np.unique(labels[keep])) == 1


def test_random_regular_degrees_are_near_regular() -> None:
    deg = np.bincount(_run(RandomRegularSampler).ravel(), minlength=300)
    assert deg.min() >= 8 and deg.max() <= 12


def test_bridging_reconnects_after_drop() -> None:
    sampler = PaperSampler(10, seed=0)
    sampler.observe(np.array([[0, 1], [1, 2], [3, 4]]), np.ones(3))
    sampler._asked = 10**6  # pretend the spanning cycle was asked
    sampler._cycle = np.zeros((0, 2), dtype=np.int64)
    sampler.drop([5, 6, 7, 8, 9])
    bridge = sampler.propose(1)
    roots = {sampler._find(int(i)) for i in bridge[0]}
    assert len(roots) == 2  # the one proposed pair joins the two components
