"""Tests for ranking.metrics.correlations against scipy."""

import numpy as np
import pytest
from scipy import stats

from ranking import correlations


def test_matches_scipy_and_logistic_helps_nonlinear() -> None:
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 200)
    pred = np.exp(mos) + rng.normal(0, 3, 200)
    c = correlations(pred, mos)
    assert c["srcc"] == pytest.approx(stats.spearmanr(pred, mos)[0])
    assert c["plcc"] == pytest.approx(stats.pearsonr(pred, mos)[0])
    assert c["krcc"] == pytest.approx(stats.kendalltau(pred, mos)[0])
    assert c["plcc_logistic"] > c["plcc"]


def test_nan_policy() -> None:
    pred = np.array([1.0, np.nan, 3.0, 4.0, 5.0])
    mos = np.array([1.0, 2.0, 3.0, 4.0, 6.0])
    with pytest.raises(ValueError, match="1 NaN/inf entries .*index 1"):
        correlations(pred, mos)
    c = correlations(pred, mos, nan_policy="drop")
    assert c["n"] == 4 and c["dropped"] == 1 and c["srcc"] == 1.0
    with pytest.raises(ValueError, match="allowed|one of"):
        correlations(pred, mos, nan_policy="omit")
