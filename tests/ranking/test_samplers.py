"""Tests for ranking.samplers: validity, determinism, connectivity, drop; the strict Appendix A
design (low degree first, local partners from provisional ratings, nothing else)."""

from typing import get_args

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ranking import (
    SAMPLERS,
    ActiveSampler,
    AppendixASampler,
    RandomRegularSampler,
    RobustSampler,
    SamplerName,
    elo_scores,
    lsq_scores,
    lsq_solve,
    run_comparisons,
)

ALL = [RobustSampler, AppendixASampler, RandomRegularSampler, ActiveSampler]
CONNECTED = [RobustSampler, RandomRegularSampler, ActiveSampler]


def _run(cls: type, n: int = 300, seed: int = 0, drop: list[int] | None = None) -> np.ndarray:
    s = np.linspace(1, 5, n)
    sampler = cls(n, seed=seed, exclude=drop)
    pairs, _ = run_comparisons(lambda q: s[q[:, 0]] - s[q[:, 1]], n, sampler=sampler, batch_size=64)
    return pairs


def _components(pairs: np.ndarray, n: int) -> np.ndarray:
    adj = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(adj, directed=False)[1]


def test_registry_matches_the_literal() -> None:
    assert list(SAMPLERS) == list(get_args(SamplerName))
    assert SAMPLERS["robust"] is RobustSampler and SAMPLERS["appendix_a"] is AppendixASampler


@pytest.mark.parametrize("cls", ALL)
def test_no_self_or_duplicate_pairs_and_budget(cls: type) -> None:
    pairs = _run(cls)
    assert len(pairs) == 5 * 300
    assert (pairs[:, 0] != pairs[:, 1]).all()
    keys = np.sort(pairs, axis=1)
    assert len(np.unique(keys, axis=0)) == len(pairs)


@pytest.mark.parametrize("cls", ALL)
def test_deterministic_by_seed(cls: type) -> None:
    np.testing.assert_array_equal(_run(cls, seed=5), _run(cls, seed=5))
    assert not np.array_equal(_run(cls, seed=5), _run(cls, seed=6))


@pytest.mark.parametrize("cls", ALL)
def test_dropped_items_never_proposed(cls: type) -> None:
    dropped = [3, 4, 5, 100]
    assert not np.isin(_run(cls, drop=dropped), dropped).any()


@pytest.mark.parametrize("cls", CONNECTED)
def test_connected_frame_keeps_the_graph_connected(cls: type) -> None:
    dropped = [3, 4, 5, 100]
    labels = _components(_run(cls, drop=dropped), 300)
    assert len(np.unique(labels[np.setdiff1d(np.arange(300), dropped)])) == 1


def test_random_regular_degrees_are_near_regular() -> None:
    deg = np.bincount(_run(RandomRegularSampler).ravel(), minlength=300)
    assert deg.min() >= 8 and deg.max() <= 12


def test_bridging_reconnects_after_drop() -> None:
    sampler = RobustSampler(10, seed=0)
    sampler.observe(np.array([[0, 1], [1, 2], [3, 4]]), np.ones(3))
    sampler._asked = 10**6  # pretend the spanning cycle was asked
    sampler._cycle = np.zeros((0, 2), dtype=np.int64)
    sampler.drop([5, 6, 7, 8, 9])
    bridge = sampler.propose(1)
    roots = {sampler._find(int(i)) for i in bridge[0]}
    assert len(roots) == 2  # the one proposed pair joins the two components


# -- the strict Appendix A design ---------------------------------------------------------------
def _exact_state(n: int = 200, seed: int = 0, chords: int = 0) -> tuple[AppendixASampler, np.ndarray]:
    """A strict sampler that observed exact margins on a random spanning path (every degree 1
    or 2) plus ``chords`` random edges (they make the provisional LSQ ratings accurate)."""
    rng = np.random.default_rng(seed)
    s = rng.normal(3.0, 0.7, n)
    path = rng.permutation(n)
    pairs = np.stack([path[:-1], path[1:]], 1)
    extra = rng.integers(0, n, (chords, 2))
    pairs = np.concatenate([pairs, extra[extra[:, 0] != extra[:, 1]]])
    sampler = AppendixASampler(n, seed=seed, provisional="lsq")  # exact ratings, known order
    sampler.observe(pairs, s[pairs[:, 0]] - s[pairs[:, 1]])
    return sampler, s


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_strict_partners_come_from_the_quantile_or_the_rating_window(seed: int) -> None:
    """Nothing else: no spanning cycle, bridge, uniform partner or random fill (any of them
    would pair videos far apart in rating)."""
    sampler, s = _exact_state(seed=seed, chords=400)
    np.testing.assert_allclose(sampler.ratings(), s - s.mean(), atol=1e-3)
    rank = np.empty(200, dtype=int)
    rank[np.argsort(s)] = np.arange(200)
    pairs = sampler.propose(150)
    assert len(pairs) == 150
    a, b = rank[pairs[:, 0]], rank[pairs[:, 1]]
    same_decile = a // 20 == b // 20
    in_window = np.abs(a - b) <= sampler.window
    assert (same_decile | in_window).all()
    assert same_decile.any() and (~same_decile & in_window).any()  # both sources are used


def test_strict_takes_low_degree_vertices_first() -> None:
    sampler, _ = _exact_state()
    deg = sampler.degree.copy()
    assert set(deg.tolist()) == {1, 2}  # path ends have degree 1
    pairs = sampler.propose(50)
    assert (deg[pairs[:2, 0]] == 1).all()  # the two path ends anchor first,
    assert (deg[pairs[2:, 0]] == 2).all()  # then degree-2 vertices
    assert len(np.unique(pairs[:, 0])) == 50  # one pair per vertex per batch
    again = sampler.propose(2)  # nothing observed: match counts are updated per batch only
    assert (deg[again[:, 0]] == 1).all()


@pytest.mark.parametrize("provisional", ["elo", "lsq"])
def test_strict_ratings_are_updated_from_each_batch(provisional: str) -> None:
    """Ratings are Elo (or LSQ) of all answered margins, and the next batch follows them."""
    n = 120
    s = np.linspace(1.0, 5.0, n)
    batches = {}
    for flip in (1.0, -1.0):  # the same pairs, answered with opposite signs
        sampler = AppendixASampler(n, seed=0, provisional=provisional)  # type: ignore[arg-type]
        first = sampler.propose(60)
        sampler.observe(first, flip * (s[first[:, 0]] - s[first[:, 1]]))
        pairs, margins = sampler.observed()
        expected = (
            elo_scores(pairs, margins, n) if provisional == "elo" else lsq_solve(pairs, margins, n, warn=False).scores
        )  # early graphs are split
        np.testing.assert_allclose(sampler.ratings(), expected, atol=1e-3)
        batches[flip] = sampler.propose(60)
    assert not np.array_equal(batches[1.0], batches[-1.0])


def test_strict_stops_when_no_local_partner_is_left() -> None:
    """Tiny quantiles and windows over a settled rating order (exact LSQ ratings) cannot carry
    a 5N budget: the run ends short instead of reaching for far partners."""
    n = 30
    s = np.linspace(1.0, 5.0, n)
    sampler = AppendixASampler(n, seed=0, quantiles=10, window=1, provisional="lsq")
    pairs, _ = run_comparisons(lambda q: s[q[:, 0]] - s[q[:, 1]], n, sampler=sampler, batch_size=8)
    assert 30 <= len(pairs) < 5 * n
    assert len(sampler.propose(8)) == 0
    keys = np.sort(pairs, axis=1)
    assert len(np.unique(keys, axis=0)) == len(pairs)


@pytest.mark.parametrize("kw", [{"provisional": "median"}, {"quantiles": 0}, {"window": 0}])
def test_strict_bad_settings_are_rejected(kw: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kw))):
        AppendixASampler(10, **kw)


def _lsq_rank_error(cls: type, seed: int, n: int = 300, sigma: float = 0.5) -> float:
    from scipy.stats import spearmanr

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
