"""Correlation metrics (SRCC, PLCC, KRCC, PLCC after the 4-parameter logistic fit)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit

NAN_POLICIES = ("raise", "drop")


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The 4-parameter logistic VQA papers fit before PLCC (VQEG).

    >>> float(logistic4(np.array([0.0]), 5.0, 1.0, 0.0, 1.0)[0])
    3.0
    """
    return (b1 - b2) / (1.0 + np.exp(-(x - b3) / abs(b4))) + b2


def _plcc_logistic(pred: np.ndarray, mos: np.ndarray) -> float:
    """PLCC between ``logistic4(pred)`` (fitted to ``mos``) and ``mos``."""
    p0 = [mos.max(), mos.min(), float(np.median(pred)), float(np.std(pred)) or 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(logistic4, pred, mos, p0=p0, maxfev=10000)
        fitted = logistic4(pred, *params)
    except RuntimeError:  # no convergence: fall back to the linear PLCC
        fitted = pred
    if np.std(fitted) == 0:
        return float("nan")
    return float(stats.pearsonr(fitted, mos)[0])


def correlations(pred: np.ndarray, mos: np.ndarray, nan_policy: str = "raise") -> dict[str, float]:
    """SRCC, PLCC, KRCC and logistic-fitted PLCC of predictions against MOS (scipy.stats).

    Args:
        pred: (N,) predicted scores; mos: (N,) ground-truth MOS.
        nan_policy: ``"raise"`` (ValueError naming the first NaN) or ``"drop"`` (pairs with a
            NaN on either side are removed; their number is returned as ``"dropped"``).

    Returns:
        ``{"srcc", "plcc", "krcc", "plcc_logistic", "n", "dropped"}``.

    >>> c = correlations(np.array([1.0, 2.0, 3.0, 5.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    >>> c["srcc"], c["krcc"], c["n"]
    (1.0, 1.0, 4)
    """
    if nan_policy not in NAN_POLICIES:
        raise ValueError(f"nan_policy must be one of {NAN_POLICIES}, got {nan_policy!r}")
    p = np.asarray(pred, dtype=np.float64).reshape(-1)
    y = np.asarray(mos, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"pred has {p.size} entries but mos has {y.size}")
    bad = ~(np.isfinite(p) & np.isfinite(y))
    if bad.any() and nan_policy == "raise":
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} NaN/inf entries (first at index {k}: pred={p[k]}, "
            f"mos={y[k]}); pass nan_policy='drop' to drop them"
        )
    p, y = p[~bad], y[~bad]
    if p.size < 3:
        raise ValueError(f"need at least 3 finite pairs for correlations, got {p.size}")
    return {
        "srcc": float(stats.spearmanr(p, y)[0]),
        "plcc": float(stats.pearsonr(p, y)[0]),
        "krcc": float(stats.kendalltau(p, y)[0]),
        "plcc_logistic": _plcc_logistic(p, y),
        "n": int(p.size),
        "dropped": int(bad.sum()),
    }
