"""Tests for ranking.samplers: validity, determinism, connectivity, drop."""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

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


def _lsq_rank_error(cls: type, seed: int, n: int = 300, sigma: float = 0.5) -> float:
    from scipy.stats import spearmanr

    from ranking import lsq_scores
    rng = np.random.default_rng(1000 + seed)
    s = rng.normal(3.0, 0.7, n)
    oracle = lambda q: s[q[:, 0]] - s[q[:, 1]] + sigma * rng.normal(size=len(q))  # noqa: E731
    pairs, margins = run_comparisons(oracle, n, sampler=cls(n, seed=seed), batch_size=30)
    return 1.0 - spearmanr(lsq_scores(pairs, margins, n), s)[0]


def test_active_lsq_error_not_worse_than_random_regular() -> None:
    # measured: the 12-seed mean ratio active / random of (1 - SRCC) is about 0.97;
    # individual 6-seed blocks ranged 0.91-1.08, so 1.10 on 12 seeds is a robust bound
    seeds = range(12)
    active = np.mean([_lsq_rank_error(ActiveSampler, k) for k in seeds])
    random = np.mean([_lsq_rank_error(RandomRegularSampler, k) for k in seeds])
    assert active <= 1.10 * random
