"""Tests for ranking.uncertainty: coverage of the standard errors, approximation error."""

import numpy as np

from ranking import lsq_scores, score_uncertainty
from ranking.uncertainty import _approx_diag, _exact_diag


def _graph(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    p = np.concatenate([np.stack([perm, np.roll(perm, 1)], 1), rng.integers(0, n, (4 * n, 2))])
    return p[p[:, 0] != p[:, 1]]


def test_standard_errors_cover_truth() -> None:
    rng = np.random.default_rng(0)
    n, sigma = 300, 0.3
    s = rng.uniform(1, 5, n)
    p = _graph(n, 1)
    m = s[p[:, 0]] - s[p[:, 1]] + sigma * rng.normal(size=len(p))
    est = lsq_scores(p, m, n)
    se = score_uncertainty(p, m, n, est)
    z = (est - (s - s.mean())) / se
    assert 0.9 < np.mean(np.abs(z) < 1.96) <= 1.0  # ~95 % coverage
    assert np.isclose(np.median(se), sigma / np.sqrt(10), rtol=0.25)


def test_degree_approximation_error_is_small() -> None:
    p = _graph(400, 2)
    w = np.ones(len(p))
    exact, approx = _exact_diag(p, 400, w), _approx_diag(p, 400, w)
    rel = np.abs(approx - exact) / exact
    assert np.median(rel) < 0.05 and rel.max() < 0.25
