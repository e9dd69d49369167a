"""VersusQ ranking: pure math from pairwise margins to a leaderboard (no Lightning, no I/O).

Public API: :func:`lsq_scores` / :func:`lsq_solve` (zero-mean least squares, HodgeRank),
:func:`elo_scores`, :func:`winrate_scores`, :func:`bt_scores` (outcome-only baselines), the one
aggregator registry :func:`make_aggregators` with :func:`compact_graph` / :func:`recover_scores`,
:func:`score_uncertainty`, :func:`correlations`, the samplers (:class:`RobustSampler`, the
strict :class:`AppendixASampler`, :class:`RandomRegularSampler`, :class:`ActiveSampler`; the
``SAMPLERS`` registry), :func:`run_comparisons` and :func:`convergence` (with
:func:`stable_index`).
"""

from ranking.aggregate import (
    AGGREGATOR_NAMES,
    Aggregator,
    AggregatorName,
    Recovery,
    compact_graph,
    make_aggregators,
    recover_scores,
)
from ranking.convergence import ConvergenceResult, convergence, stable_index
from ranking.loop import run_comparisons
from ranking.lsq import LSQResult, lsq_scores, lsq_solve
from ranking.metrics import correlations
from ranking.outcomes import bt_scores, elo_scores, outcomes, winrate_scores
from ranking.samplers import (
    SAMPLERS,
    ActiveSampler,
    AppendixASampler,
    BaseSampler,
    RandomRegularSampler,
    RobustSampler,
    SamplerName,
)
from ranking.uncertainty import score_uncertainty

__all__ = [
    "AGGREGATOR_NAMES",
    "ActiveSampler",
    "AppendixASampler",
    "Aggregator",
    "AggregatorName",
    "BaseSampler",
    "ConvergenceResult",
    "LSQResult",
    "RandomRegularSampler",
    "Recovery",
    "RobustSampler",
    "SAMPLERS",
    "SamplerName",
    "bt_scores",
    "compact_graph",
    "convergence",
    "correlations",
    "elo_scores",
    "lsq_scores",
    "lsq_solve",
    "make_aggregators",
    "outcomes",
    "recover_scores",
    "run_comparisons",
    "score_uncertainty",
    "stable_index",
    "winrate_scores",
]
