"""Score recovery from a comparison graph: the one aggregator registry (pure numpy, no I/O).

Every consumer (:func:`ranking.convergence`, the evaluation callback, the predict leaderboard)
asks :func:`make_aggregators` for its functions, so which aggregators exist and how the draw
threshold reaches the outcome-only ones is written once. :func:`recover_scores` runs them on the
usable part of an evaluation graph (failed comparisons and bad items removed, see
:func:`compact_graph`) and keeps the compacted graph so a caller can reuse the LSQ solution
(e.g. for standard errors) instead of solving it again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal, get_args

import numpy as np

from ranking.lsq import lsq_solve
from ranking.outcomes import bt_scores, elo_scores, winrate_scores

AggregatorName = Literal["lsq", "elo", "winrate", "bt"]
AGGREGATOR_NAMES: tuple[str, ...] = get_args(AggregatorName)
Aggregator = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def _lsq(pairs: np.ndarray, margins: np.ndarray, num_items: int, warn: bool) -> np.ndarray:
    return lsq_solve(pairs, margins, num_items, warn=warn).scores


def make_aggregators(
    names: Sequence[str] = AGGREGATOR_NAMES, draw_threshold: float = 0.2, warn: bool = False
) -> dict[str, Aggregator]:
    """``{name: f(pairs (E, 2), margins (E,), N) -> scores (N,)}`` for the requested aggregators.

    Args:
        names: any of ``lsq`` (zero-mean least squares), ``elo``, ``winrate``, ``bt``.
        draw_threshold: ``|margin|`` below this is a draw for Elo / win-rate / Bradley–Terry
            (0.2 in the paper, Appendix B).
        warn: let LSQ warn when the graph is disconnected (off for prefix curves, whose early
            prefixes are disconnected by design).

    Raises:
        ValueError: an unknown name, listing the allowed ones.

    >>> f = make_aggregators(["winrate"], draw_threshold=0.5)
    >>> f["winrate"](np.array([[0, 1], [1, 2]]), np.array([1.0, 0.3]), 3).tolist()
    [1.0, 0.25, 0.5]
    """
    unknown = [n for n in names if n not in AGGREGATOR_NAMES]
    if unknown:
        raise ValueError(f"unknown aggregators {unknown}; allowed: {list(AGGREGATOR_NAMES)}")
    table: dict[str, Aggregator] = {
        "lsq": partial(_lsq, warn=warn),
        "elo": partial(elo_scores, draw_threshold=draw_threshold),
        "winrate": partial(winrate_scores, draw_threshold=draw_threshold),
        "bt": partial(bt_scores, draw_threshold=draw_threshold),
    }
    return {name: table[name] for name in names}


def compact_graph(
    pairs: np.ndarray, margins: np.ndarray, num_items: int, exclude: Sequence[int] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Usable comparisons re-indexed onto the items that have any.

    Failed comparisons (NaN margins) and edges touching ``exclude`` are left out.

    Returns:
        ``(pairs (E', 2) in compact indices, margins (E',), valid (N,) bool)``.

    >>> p, m, ok = compact_graph(np.array([[0, 2], [2, 3]]), np.array([1.0, 0.5]), 4)
    >>> p.tolist(), ok.tolist()
    ([[0, 1], [1, 2]], [True, False, True, True])
    """
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    m = np.asarray(margins, dtype=np.float64).reshape(-1)
    keep = np.isfinite(m) & ~np.isin(p, np.asarray(exclude, dtype=np.int64)).any(axis=1)
    p, m = p[keep], m[keep]
    valid = np.zeros(num_items, dtype=bool)
    valid[p.ravel()] = True
    index = np.cumsum(valid) - 1  # item -> compact index
    return index[p], m, valid


@dataclass
class Recovery:
    """Scores recovered from one comparison graph.

    Attributes:
        scores: ``{aggregator: (N,) scores}``, NaN for unscored items.
        valid: (N,) bool, items with at least one usable comparison.
        pairs: (E', 2) usable comparisons in compact indices (``0..valid.sum()-1``).
        margins: (E',) their margins.
    """

    scores: dict[str, np.ndarray]
    valid: np.ndarray
    pairs: np.ndarray
    margins: np.ndarray

    def compact(self, aggregator: str) -> np.ndarray:
        """``(valid.sum(),)`` scores of one aggregator on the scored items only."""
        return self.scores[aggregator][self.valid]


def recover_scores(
    pairs: np.ndarray,
    margins: np.ndarray,
    num_items: int,
    aggregators: Sequence[str] = AGGREGATOR_NAMES,
    draw_threshold: float = 0.2,
    exclude: Sequence[int] = (),
) -> Recovery:
    """Scores of every aggregator on the compacted graph (:func:`compact_graph`).

    LSQ warns when the usable graph is disconnected (its scores are then not on one scale).

    >>> r = recover_scores(np.array([[0, 1], [1, 2], [2, 3]]), np.array([1.0, np.nan, 1.0]),
    ...                    4, ["winrate"])
    >>> r.scores["winrate"].tolist(), r.valid.tolist(), r.pairs.tolist()
    ([1.0, 0.0, 1.0, 0.0], [True, True, True, True], [[0, 1], [2, 3]])
    """
    p, m, valid = compact_graph(pairs, margins, num_items, exclude)
    funcs = make_aggregators(aggregators, draw_threshold, warn=True)
    k = int(valid.sum())
    scores: dict[str, np.ndarray] = {}
    for name, func in funcs.items():
        full = np.full(num_items, np.nan)
        if k >= 2:
            full[valid] = func(p, m, k)
        scores[name] = full
    return Recovery(scores, valid, p, m)
