"""Tests for ranking.loop.run_comparisons: resume, failures, progress."""

import numpy as np

from ranking import RobustSampler, run_comparisons


def test_resume_asks_nothing_twice() -> None:
    s = np.random.default_rng(0).uniform(1, 5, 80)
    asked: list[np.ndarray] = []

    def oracle(q: np.ndarray) -> np.ndarray:
        asked.append(q.copy())
        return s[q[:, 0]] - s[q[:, 1]]

    first = run_comparisons(oracle, 80, budget=150, sampler=RobustSampler(80, seed=1), batch_size=32)
    asked.clear()
    calls: list[tuple[int, int]] = []
    pairs, margins = run_comparisons(
        oracle,
        80,
        sampler=RobustSampler(80, seed=1),
        batch_size=32,
        answered=first,
        progress=lambda d, b: calls.append((d, b)),
    )
    assert len(pairs) == 400 and calls[-1] == (400, 400)
    new = np.sort(np.concatenate(asked), axis=1)
    old = np.sort(first[0], axis=1)
    assert len(new) == 250
    assert not (new[:, None, :] == old[None, :, :]).all(-1).any()
    np.testing.assert_array_equal(pairs[:150], first[0])


def test_nan_answers_are_recorded_but_not_used() -> None:
    s = np.linspace(1, 5, 40)

    def oracle(q: np.ndarray) -> np.ndarray:
        m = s[q[:, 0]] - s[q[:, 1]]
        m[(q == 7).any(1)] = np.nan  # item 7 "fails to decode"
        return m

    sampler = RobustSampler(40, seed=0)
    pairs, margins = run_comparisons(oracle, 40, sampler=sampler, batch_size=16)
    failed = np.isnan(margins)
    assert failed.any() and (pairs[failed] == 7).any(1).all()
    assert sampler.degree[7] == 0  # failed answers never count as observed edges
