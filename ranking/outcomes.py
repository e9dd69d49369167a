"""Outcome-only baselines (paper Table 2, Appendix B (2)): win-rate, Elo and Bradley-Terry.

A margin is turned into an outcome for the first item of the pair: ``1`` (win) when
``margin >= draw_threshold``, ``0`` (loss) when ``margin <= -draw_threshold`` and ``0.5``
(draw) when ``|margin| < draw_threshold``. The paper uses a threshold of 0.2 on the 1-5 scale.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from ranking._checks import check_graph


def outcomes(margins: np.ndarray, draw_threshold: float = 0.2) -> np.ndarray:
    """Win (1), draw (0.5) or loss (0) of the first item of each pair.

    >>> outcomes(np.array([0.5, 0.1, -0.19, -0.2, 0.2])).tolist()
    [1.0, 0.5, 0.5, 0.0, 1.0]
    """
    if draw_threshold < 0:
        raise ValueError(f"draw_threshold must be >= 0, got {draw_threshold}")
    m = np.asarray(margins, dtype=np.float64)
    out = np.full(m.shape, 0.5)
    out[m >= draw_threshold] = 1.0
    out[m <= -draw_threshold] = 0.0
    if draw_threshold == 0:  # zero tolerance: only an exact 0 margin is a draw
        out[m == 0] = 0.5
    return out


def winrate_scores(pairs: np.ndarray, margins: np.ndarray, num_items: int, draw_threshold: float = 0.2) -> np.ndarray:
    """Fraction of points won per item (a draw is half a win); 0.5 for items never compared.

    >>> winrate_scores(np.array([[0, 1], [1, 2], [0, 2]]), np.array([1.0, 0.1, 0.3]), 3).tolist()
    [1.0, 0.25, 0.25]
    """
    arr, m, _ = check_graph(pairs, margins, num_items)
    o = outcomes(m, draw_threshold)
    points = np.bincount(arr[:, 0], o, num_items) + np.bincount(arr[:, 1], 1.0 - o, num_items)
    games = np.bincount(arr.ravel(), minlength=num_items).astype(np.float64)
    return np.divide(points, games, out=np.full(num_items, 0.5), where=games > 0)


def _elo_pass(
    i: np.ndarray, j: np.ndarray, o: np.ndarray, num_items: int, k_factor: float, scale: float, initial: float
) -> np.ndarray:
    """One sequential Elo pass over the edges in the given order."""
    r = [initial] * num_items
    for a, b, res in zip(i.tolist(), j.tolist(), o.tolist()):
        expected = 1.0 / (1.0 + 10.0 ** ((r[b] - r[a]) / scale))
        delta = k_factor * (res - expected)
        r[a] += delta
        r[b] -= delta
    return np.asarray(r)


def elo_scores(
    pairs: np.ndarray,
    margins: np.ndarray,
    num_items: int,
    draw_threshold: float = 0.2,
    k_factor: float = 32.0,
    seed: int | None = None,
    shuffles: int = 0,
    scale: float = 400.0,
    initial: float = 1500.0,
) -> np.ndarray:
    """Elo ratings from win/draw/loss outcomes.

    Elo is order dependent. With ``shuffles == 0`` (default) the edges are replayed in the
    given stream order (the order the sampler produced them), which is deterministic and what
    an evaluation journal replays. With ``shuffles > 0`` the ratings are averaged over that
    many random orders drawn from ``numpy.random.default_rng(seed)``.

    Args:
        pairs: (E, 2) item indices; margins: (E,) margins; num_items: N.
        draw_threshold: ``|margin| <`` this is a draw.
        k_factor: Elo K; scale: logistic scale (400); initial: starting rating (1500).
        seed: seed for the shuffled orders (ignored when ``shuffles == 0``).
        shuffles: number of random orders to average (0 = stream order only).

    Returns:
        (N,) ratings; items never compared keep ``initial``.

    >>> elo_scores(np.array([[0, 1]]), np.array([1.0]), 2).tolist()
    [1516.0, 1484.0]
    """
    arr, m, _ = check_graph(pairs, margins, num_items)
    o = outcomes(m, draw_threshold)
    if shuffles <= 0:
        return _elo_pass(arr[:, 0], arr[:, 1], o, num_items, k_factor, scale, initial)
    rng = np.random.default_rng(seed)
    total = np.zeros(num_items)
    for _ in range(shuffles):
        order = rng.permutation(len(o))
        total += _elo_pass(arr[order, 0], arr[order, 1], o[order], num_items, k_factor, scale, initial)
    return total / shuffles


def bt_scores(
    pairs: np.ndarray, margins: np.ndarray, num_items: int, draw_threshold: float = 0.2, ridge: float = 1e-2
) -> np.ndarray:
    """Bradley-Terry maximum a-posteriori strengths (log-odds scale, zero mean).

    Maximises ``sum_k [o_k log σ(s_i - s_j) + (1 - o_k) log σ(s_j - s_i)] - ridge/2 ||s||²``
    with draws as half wins (Chatbot-Arena style). The small ridge keeps undefeated or
    never-compared items finite (never-compared items get 0).

    >>> s = bt_scores(np.array([[0, 1], [1, 2], [0, 2]]), np.array([1.0, 1.0, 1.0]), 3)
    >>> bool(s[0] > s[1] > s[2]), round(float(s.sum()), 8)
    (True, 0.0)
    """
    if ridge <= 0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    arr, m, _ = check_graph(pairs, margins, num_items)
    o = outcomes(m, draw_threshold)
    i, j = arr[:, 0], arr[:, 1]

    def objective(s: np.ndarray) -> tuple[float, np.ndarray]:
        d = s[i] - s[j]
        nll = -(o * log_expit(d) + (1.0 - o) * log_expit(-d)).sum() + 0.5 * ridge * s @ s
        g_edge = expit(d) - o  # d nll / d d
        grad = np.bincount(i, g_edge, num_items) - np.bincount(j, g_edge, num_items)
        return float(nll), grad + ridge * s

    sol = minimize(objective, np.zeros(num_items), jac=True, method="L-BFGS-B", options={"maxiter": 2000, "gtol": 1e-8})
    return sol.x - sol.x.mean()
