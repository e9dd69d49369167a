"""Prefix-convergence analysis of aggregators (paper Fig. 4 protocol)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ranking.aggregate import Aggregator, make_aggregators
from ranking.metrics import correlations


@dataclass
class ConvergenceResult:
    """Curves of SRCC/PLCC over edge-stream prefixes and the edges needed to stabilise.

    Attributes:
        edges: prefix sizes (number of edges) at which every aggregator was evaluated.
        curves: ``curves[aggregator][metric]`` -> list aligned with ``edges``.
        stable_at: ``stable_at[aggregator][metric]`` -> first prefix size from which the
            metric stays within ``band`` of its final value (Fig. 4 "stable"); ``None`` when it
            never does (its final value is undefined).
        band: the stability band (0.005 in the paper).
    """

    edges: list[int]
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    stable_at: dict[str, dict[str, int | None]] = field(default_factory=dict)
    band: float = 0.005

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict (NaN correlations stay ``NaN``, as Python's json writes)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConvergenceResult:
        """Inverse of :meth:`to_dict` (e.g. one benchmark's entry of ``convergence.json``).

        Raises:
            ValueError: a key is missing or a curve's length differs from ``edges``.

        >>> r = ConvergenceResult([2, 4], {"lsq": {"srcc": [0.5, 0.9]}}, {"lsq": {"srcc": 4}})
        >>> ConvergenceResult.from_dict(r.to_dict()) == r
        True
        """
        missing = [k for k in ("edges", "curves", "stable_at") if k not in data]
        if missing:
            raise ValueError(f"convergence entry lacks {missing}; has {sorted(data)}")
        edges = [int(e) for e in data["edges"]]
        curves = {
            agg: {m: [float(v) for v in vals] for m, vals in metrics.items()} for agg, metrics in data["curves"].items()
        }
        for agg, metrics in curves.items():
            for m, vals in metrics.items():
                if len(vals) != len(edges):
                    raise ValueError(f"curve {agg}/{m} has {len(vals)} points for {len(edges)} prefix sizes")
        stable = {
            agg: {m: None if v is None else int(v) for m, v in metrics.items()}
            for agg, metrics in data["stable_at"].items()
        }
        return cls(edges, curves, stable, float(data.get("band", 0.005)))


def stable_index(values: Sequence[float], band: float) -> int:
    """First index from which every later value is within ``band`` of the last one.

    Returns ``len(values)`` (never stable) when the last value is not finite, e.g. a correlation
    undefined because an aggregator returned constant scores.

    >>> stable_index([0.5, 0.9, 0.8, 0.897, 0.9], 0.005)
    3
    >>> stable_index([0.5, float("nan")], 0.005)
    2
    """
    v = np.asarray(values, dtype=np.float64)
    outside = np.flatnonzero(~(np.abs(v - v[-1]) <= band))
    return int(outside[-1] + 1) if len(outside) else 0


def _stable_size(sizes: list[int], values: list[float], band: float) -> int | None:
    """Edge count from which ``values`` stay in the band; ``None`` if it never stabilises."""
    k = stable_index(values, band)
    return sizes[k] if k < len(sizes) else None


def convergence(
    pairs: np.ndarray,
    margins: np.ndarray,
    mos: np.ndarray,
    aggregators: Mapping[str, Aggregator] | Sequence[str] = ("lsq", "elo", "winrate"),
    steps: int | Sequence[int] = 20,
    band: float = 0.005,
    draw_threshold: float = 0.2,
) -> ConvergenceResult:
    """SRCC/PLCC of each aggregator on prefixes of the edge stream (in the given order).

    Args:
        pairs: (E, 2) edges in stream order; margins: (E,); mos: (N,) ground truth.
        aggregators: names for :func:`ranking.make_aggregators` or a mapping
            name -> ``f(pairs, margins, N)``.
        steps: number of evenly spaced prefixes (ending at E) or explicit prefix sizes.
        band: stability band.
        draw_threshold: draw threshold of the named outcome-only aggregators.

    Returns:
        :class:`ConvergenceResult` (use ``.to_dict()`` for JSON).

    >>> rng = np.random.default_rng(0); mos = rng.uniform(1, 5, 30)
    >>> p = np.stack([np.arange(30), np.roll(np.arange(30), 1)], 1)
    >>> p = np.concatenate([p, rng.permutation(p)[:, ::-1]])
    >>> res = convergence(p, mos[p[:, 0]] - mos[p[:, 1]], mos, ["lsq"], steps=[15, 30, 60])
    >>> res.curves["lsq"]["srcc"][-1], res.stable_at["lsq"]["srcc"]
    (1.0, 30)
    """
    p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    m = np.asarray(margins, dtype=np.float64).reshape(-1)
    y = np.asarray(mos, dtype=np.float64)
    if isinstance(steps, int):
        sizes = sorted({int(round(x)) for x in np.linspace(len(p) / steps, len(p), steps)})
    else:
        sizes = sorted({int(x) for x in steps if 0 < int(x) <= len(p)})
    # early prefixes are disconnected by design: LSQ does not warn about them
    funcs = (
        dict(aggregators)
        if isinstance(aggregators, Mapping)
        else make_aggregators(aggregators, draw_threshold, warn=False)
    )
    result = ConvergenceResult(edges=sizes, band=band)
    for name, func in funcs.items():
        curve: dict[str, list[float]] = {"srcc": [], "plcc": []}
        for size in sizes:
            c = correlations(func(p[:size], m[:size], len(y)), y, nan_policy="drop")
            curve["srcc"].append(c["srcc"])
            curve["plcc"].append(c["plcc"])
        result.curves[name] = curve
        result.stable_at[name] = {k: _stable_size(sizes, v, band) for k, v in curve.items()}
    return result
