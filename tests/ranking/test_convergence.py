"""Tests for ranking.convergence: curves, stability, JSON-ready output."""

import json

import numpy as np
import pytest

from ranking import RobustSampler, convergence, run_comparisons


def test_lsq_converges_and_output_is_json() -> None:
    rng = np.random.default_rng(0)
    mos = rng.uniform(1, 5, 150)
    pairs, _ = run_comparisons(lambda q: np.zeros(len(q)), 150, sampler=RobustSampler(150))
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


def test_stable_point_of_a_hand_made_curve() -> None:
    """Fig. 4 rule: the first prefix from which the curve stays within 0.005 of its end; the
    result survives the JSON round trip of ``convergence.json``."""
    from ranking import ConvergenceResult, stable_index

    final = 0.9
    # inside the band at 2, out again at 3 (0.894 is 0.006 away), inside from 4 on
    values = [0.2, 0.7, 0.897, 0.894, 0.9049, 0.8951, final]
    assert stable_index(values, 0.005) == 4
    assert stable_index(values, 0.0065) == 2  # a wider band forgives the dip
    assert stable_index([0.3, 0.6, 0.9], 0.005) == 2  # only the last point: stable at the end
    assert stable_index([0.5, float("nan")], 0.005) == 2  # undefined end: never stable
    sizes = [10, 20, 30, 40, 50, 60, 70]
    res = ConvergenceResult(sizes, {"hand": {"srcc": values}}, {"hand": {"srcc": 50}})
    back = ConvergenceResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back == res


def test_stable_at_matches_the_curve_it_was_computed_from() -> None:
    rng = np.random.default_rng(3)
    mos = rng.uniform(1, 5, 120)
    pairs, _ = run_comparisons(lambda q: np.zeros(len(q)), 120, sampler=RobustSampler(120))
    margins = mos[pairs[:, 0]] - mos[pairs[:, 1]] + 0.5 * rng.normal(size=len(pairs))
    res = convergence(pairs, margins, mos, ["lsq", "elo", "winrate"], steps=12)
    for agg, curve in res.curves.items():
        for metric, values in curve.items():
            at = res.stable_at[agg][metric]
            k = res.edges.index(at)
            assert all(abs(v - values[-1]) <= 0.005 for v in values[k:])
            assert k == 0 or abs(values[k - 1] - values[-1]) > 0.005


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"curves": {}, "stable_at": {}}, "lacks"),
        ({"edges": [1, 2], "curves": {"lsq": {"srcc": [0.5]}}, "stable_at": {}}, "1 points"),
    ],
)
def test_from_dict_names_what_is_wrong(broken: dict, message: str) -> None:
    from ranking import ConvergenceResult

    with pytest.raises(ValueError, match=message):
        ConvergenceResult.from_dict(broken)
