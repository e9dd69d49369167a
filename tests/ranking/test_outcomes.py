"""Tests for ranking.outcomes: draw threshold semantics, Elo order, Bradley-Terry."""

import numpy as np

from ranking import bt_scores, elo_scores, winrate_scores


def test_draw_threshold_semantics() -> None:
    p = np.array([[0, 1], [0, 1], [0, 1]])
    np.testing.assert_allclose(winrate_scores(p, np.array([0.19, -0.19, 0.1]), 2), [0.5, 0.5])
    np.testing.assert_allclose(winrate_scores(p, np.array([0.2, 0.5, -0.1]), 2), [5 / 6, 1 / 6])
    # the same small margins are wins with a zero-tolerance threshold
    np.testing.assert_allclose(winrate_scores(p, np.array([0.19, 0.1, 0.05]), 2, 0.0), [1, 0])
    elo = elo_scores(p, np.array([0.1, -0.1, 0.15]), 2)
    np.testing.assert_allclose(elo, [1500, 1500])  # only draws between equals: no change


def test_elo_uses_stream_order_and_seeded_shuffles() -> None:
    p = np.array([[0, 1], [1, 2], [0, 2]])
    m = np.array([1.0, 1.0, -1.0])
    a = elo_scores(p, m, 3)
    b = elo_scores(p[::-1], m[::-1], 3)
    assert not np.allclose(a, b)  # order matters and the given order is used
    s1 = elo_scores(p, m, 3, seed=3, shuffles=5)
    np.testing.assert_allclose(s1, elo_scores(p, m, 3, seed=3, shuffles=5))
    assert abs(s1.mean() - 1500) < 1e-9  # Elo updates are zero-sum


def test_bt_orders_and_is_finite_for_undefeated() -> None:
    rng = np.random.default_rng(0)
    s = np.linspace(-2, 2, 20)
    p = rng.integers(0, 20, (400, 2))
    p = p[p[:, 0] != p[:, 1]]
    m = s[p[:, 0]] - s[p[:, 1]] + 0.3 * rng.normal(size=len(p))
    bt = bt_scores(p, m, 20)
    assert np.isfinite(bt).all() and abs(bt.mean()) < 1e-9
    assert np.corrcoef(bt, s)[0, 1] > 0.95
