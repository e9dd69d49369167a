"""Tests for ranking.convergence: curves, stability, JSON-ready output."""

import json

import numpy as np
import pytest

from ranking import PaperSampler, convergence, run_comparisons


def test_lsq_converges_and_output_is_json() -> None:
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 150)
    pairs, _ = run_comparisons(lambda q: np.zeros(len(q)), 150, sampler=PaperSampler(150))
    margins = mos[pairs[:, 0]] - mos[pairs[:, 1]] + 0.3 * rng.normal(size=len(pairs))
    res = convergence(pairs, margins, mos, ["lsq", "winrate"], steps=6)
    assert res.edges[-1] == len(pairs) and len(res.curves["lsq"]["srcc"]) == 6
    assert res.curves["lsq"]["srcc"][-1] > 0.95
    assert res.curves["lsq"]["srcc"][-1] >= res.curves["winrate"]["srcc"][-1]
    assert res.stable_at["lsq"]["srcc"] <= len(pairs)
    json.dumps(res.to_dict())
    with pytest.raises(ValueError, match="allowed"):
        convergence(pairs, margins, mos, ["median"])


def test_constant_aggregator_is_never_stable_instead_of_crashing() -> None:
    import numpy as np

    from ranking import convergence

    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 20)
    pairs = np.stack([np.arange(20), np.roll(np.arange(20), 1)], 1)
    flat = {"flat": lambda p, m, n: np.zeros(n)}  # constant scores: correlation undefined (NaN)
    res = convergence(pairs, mos[pairs[:, 0]] - mos[pairs[:, 1]], mos, flat, steps=[10, 20])
    assert res.stable_at["flat"]["srcc"] is None
