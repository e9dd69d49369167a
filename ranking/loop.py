"""The comparison loop: ask an oracle batch by batch until the budget is spent (resumable)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ranking.samplers import BaseSampler, RobustSampler

Oracle = Callable[[np.ndarray], np.ndarray]


def run_comparisons(
    oracle: Oracle,
    num_items: int,
    budget: int | None = None,
    sampler: BaseSampler | None = None,
    batch_size: int | None = None,
    answered: tuple[np.ndarray, np.ndarray] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ask ``oracle(pairs) -> margins`` for sampler-chosen pairs until ``budget`` pairs are asked.

    Resuming: ``answered = (pairs, margins)`` from a journal are replayed into the sampler with
    ``observe`` first, count towards the budget, are returned first, and are never asked again.

    Failures: the oracle may return NaN for a pair it could not answer (e.g. a video that does
    not decode). Such pairs are returned with their NaN margin (so a journal records them and a
    resume does not ask them again) but the sampler does not use them; callers drop the bad
    items from the sampler (``sampler.drop``) and filter NaN margins before aggregation.

    Args:
        oracle: maps (k, 2) int pairs to (k,) float margins (``s_i - s_j``).
        num_items: N.
        budget: total number of pairs to ask, answered ones included (default ``5 * N``).
        sampler: the pair sampler (default ``RobustSampler(num_items, seed=0)``).
        batch_size: pairs per oracle call (default ``max(16, N // 10)``).
        answered: already-answered ``(pairs (E0, 2), margins (E0,))``.
        progress: called as ``progress(n_done, budget)`` after every batch.

    Returns:
        ``(pairs (E, 2) int64, margins (E,) float64)``, answered pairs first. ``E < budget``
        only when the sampler runs out of new pairs.

    >>> s = np.arange(6.0)
    >>> p, m = run_comparisons(lambda q: s[q[:, 0]] - s[q[:, 1]], 6, budget=10, batch_size=4)
    >>> p.shape, bool(np.allclose(m, s[p[:, 0]] - s[p[:, 1]]))
    ((10, 2), True)
    """
    budget = 5 * num_items if budget is None else int(budget)
    sampler = RobustSampler(num_items, seed=0) if sampler is None else sampler
    batch_size = max(16, num_items // 10) if batch_size is None else int(batch_size)
    pairs_out: list[np.ndarray] = []
    margins_out: list[np.ndarray] = []
    if answered is not None and len(answered[0]):
        p0 = np.asarray(answered[0], dtype=np.int64).reshape(-1, 2)
        m0 = np.asarray(answered[1], dtype=np.float64).reshape(-1)
        sampler.observe(p0, m0)
        pairs_out.append(p0)
        margins_out.append(m0)
    done = sum(len(p) for p in pairs_out)
    while done < budget:
        pairs = sampler.propose(min(batch_size, budget - done))
        if len(pairs) == 0:
            break
        margins = np.asarray(oracle(pairs), dtype=np.float64).reshape(-1)
        if margins.shape[0] != len(pairs):
            raise ValueError(f"oracle returned {margins.shape[0]} margins for {len(pairs)} pairs")
        sampler.observe(pairs, margins)
        pairs_out.append(pairs)
        margins_out.append(margins)
        done += len(pairs)
        if progress is not None:
            progress(done, budget)
    if not pairs_out:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    return np.concatenate(pairs_out), np.concatenate(margins_out)
