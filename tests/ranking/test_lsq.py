"""Tests for ranking.lsq: exact recovery, gauge, scipy parity, weights, components, errors."""

import numpy as np
import pytest
import scipy.linalg

from ranking import lsq_scores, lsq_solve


def _graph(n: int, e: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    cyc = np.stack([perm, np.roll(perm, 1)], 1)
    extra = rng.integers(0, n, (e, 2))
    return np.concatenate([cyc, extra[extra[:, 0] != extra[:, 1]]])


def test_exact_recovery_noiseless() -> None:
    rng = np.random.default_rng(1)
    s = rng.normal(size=200)
    s -= s.mean()
    p = _graph(200, 600)
    res = lsq_solve(p, s[p[:, 0]] - s[p[:, 1]], 200, tol=1e-11)
    np.testing.assert_allclose(res.scores, s, atol=1e-8)
    assert res.num_components == 1 and res.converged and res.residual <= 1e-11


def test_gauge_and_shift_invariance() -> None:
    rng = np.random.default_rng(2)
    p = _graph(50, 150)
    m = rng.normal(size=len(p))
    s = lsq_scores(p, m, 50)
    assert abs(s.mean()) < 1e-12
    s_perm = lsq_scores(p[::-1], m[::-1], 50)  # edge order does not matter
    np.testing.assert_allclose(s, s_perm, atol=1e-4)
    flipped = lsq_scores(p[:, ::-1], -m, 50)  # reversing an edge and its margin changes nothing
    np.testing.assert_allclose(s, flipped, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parity_with_dense_lstsq(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 40
    p = _graph(n, 100, seed)
    m = rng.normal(size=len(p))
    w = rng.uniform(0.2, 3.0, len(p))
    a = np.zeros((len(p), n))
    a[np.arange(len(p)), p[:, 0]] = 1
    a[np.arange(len(p)), p[:, 1]] = -1
    for weights in (None, w):
        sw = np.ones(len(p)) if weights is None else np.sqrt(weights)
        ref = scipy.linalg.lstsq(a * sw[:, None], m * sw)[0]
        np.testing.assert_allclose(lsq_scores(p, m, n, weights, tol=1e-11), ref - ref.mean(), atol=1e-8)


def test_weights_pull_towards_trusted_edge() -> None:
    p = np.array([[0, 1], [0, 1]])
    m = np.array([1.0, 3.0])
    s = lsq_scores(p, m, 2, weights=np.array([1.0, 3.0]))
    assert s[0] - s[1] == pytest.approx(2.5, abs=1e-6)


def test_disconnected_and_isolated_are_reported() -> None:
    p = np.array([[0, 1], [1, 2], [4, 5]])
    m = np.array([1.0, 1.0, 2.0])
    with pytest.warns(RuntimeWarning, match="disconnected"):
        res = lsq_solve(p, m, 7)
    assert res.num_components == 4
    assert res.isolated.tolist() == [3, 6]
    assert res.components.tolist() == [0, 0, 0, 1, 2, 2, 3]
    np.testing.assert_allclose(res.scores[:3], [1, 0, -1], atol=1e-6)  # own zero mean
    np.testing.assert_allclose(res.scores[4:6], [1, -1], atol=1e-6)
    assert res.scores[3] == 0 and res.scores[6] == 0


@pytest.mark.parametrize(
    "pairs, margins, match",
    [
        ([[0, 1], [1, 2]], [1.0, np.nan], "1 margins are NaN/inf .*edge 1"),
        ([[0, 1], [2, 2], [1, 1]], [1.0, 1.0, 1.0], "2 self-pairs .*edge 1"),
        ([[0, 3], [1, 2]], [1.0, 1.0], r"1 pairs have an index outside \[0, 3\) .*edge 0"),
        ([[0, 1]], [1.0, 2.0], "2 entries but there are 1 pairs"),
    ],
)
def test_bad_input_errors(pairs: list, margins: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lsq_scores(np.array(pairs), np.array(margins), 3)


def test_components_match_scipy_on_larger_split_graph() -> None:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = 5000  # two random components (beyond the small-frontier BFS) plus isolated items
    p = np.concatenate([_graph(2000, 6000, 3), _graph(2500, 7000, 4) + 2000])
    m = np.random.default_rng(5).normal(size=len(p))
    with pytest.warns(RuntimeWarning, match="disconnected"):
        res = lsq_solve(p, m, n)
    _, ref = connected_components(coo_matrix((np.ones(len(p)), p.T), shape=(n, n)), directed=False)
    assert res.num_components == 2 + 500
    assert len(np.unique(ref[res.components == 0])) == 1 and res.components[2000] == 1
    for c in (0, 1):
        assert abs(res.scores[res.components == c].mean()) < 1e-9
    assert res.converged
