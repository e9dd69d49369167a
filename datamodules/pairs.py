"""Training pair construction: ``m* = MOS_i - MOS_j`` within one benchmark / rating source.

A margin across benchmarks (or across synthetic rating sources with different calibration) means
nothing, so pairs are only formed inside one *group*: the rows of a :class:`VideoTable` that share
``extra[group_key]`` (e.g. the synthetic benchmark's ``source`` column), or the whole table when it
has no such column.

Sampling is balanced in two ways so the model cannot learn shortcuts:

* **over |m*|** — candidate pairs are binned by ``|m*|`` (equal-width bins on ``[0, max|m*|]``) and
  every bin contributes the same number of pairs (a uniform draw over all pairs is dominated by
  mid-size gaps and starves the "about the same" and "substantially better" cases);
* **over A/B position** — each unordered pair is oriented so that every video is shown first and
  second equally often (greedy balancing of per-video ``first - second`` counts); as a side effect
  the sign of ``m*`` is balanced too, so a constant-sign prior earns nothing.

Everything is deterministic by ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["PairList", "build_pairs", "pairs_from_names"]


@dataclass
class PairList:
    """Ordered training pairs of one table: the model sees video ``a`` first.

    Attributes:
        index_a: ``(P,)`` int64 row indices of the first video.
        index_b: ``(P,)`` int64 row indices of the second video.
        margin: ``(P,)`` float64 target ``mos[a] - mos[b]`` on the [1, 5] scale.
        benchmark: name of the table the indices refer to.
    """

    index_a: np.ndarray
    index_b: np.ndarray
    margin: np.ndarray
    benchmark: str

    def __len__(self) -> int:
        return int(self.index_a.shape[0])


def _groups(table, group_key: str | None) -> list[np.ndarray]:
    """Row-index arrays of the calibration groups (one group when ``group_key`` is absent)."""
    n = len(table)
    extra = getattr(table, "extra", None) or {}
    if group_key is None or group_key not in extra:
        return [np.arange(n)]
    labels = np.asarray([str(v) for v in extra[group_key]])
    return [np.flatnonzero(labels == g) for g in sorted(set(labels.tolist()))]


def _candidates(rows: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` distinct unordered pairs ``(i < j)`` of ``rows``, shape ``(k, 2)``."""
    n = rows.size
    total = n * (n - 1) // 2
    if total <= max(count, 1) * 2:  # small group: enumerate everything
        iu, ju = np.triu_indices(n, k=1)
        cand = np.stack([rows[iu], rows[ju]], axis=1)
        return cand[rng.permutation(len(cand))]
    draws = rng.integers(0, n, size=(int(count * 1.3) + 16, 2))
    draws = draws[draws[:, 0] != draws[:, 1]]
    draws.sort(axis=1)
    draws = np.unique(draws, axis=0)
    draws = draws[rng.permutation(len(draws))][:count]
    return rows[draws]


def _balanced_by_margin(cand: np.ndarray, gap: np.ndarray, count: int, num_bins: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Pick ``count`` rows of ``cand`` with equal shares from ``num_bins`` bins of ``|gap|``."""
    if len(cand) <= count:
        return cand
    edges = np.linspace(0.0, float(gap.max()) + 1e-12, num_bins + 1)
    bins = np.clip(np.digitize(gap, edges[1:-1]), 0, num_bins - 1)
    members = [rng.permutation(np.flatnonzero(bins == b)) for b in range(num_bins)]
    chosen: list[int] = []
    share = count // num_bins + 1
    for m in members:  # equal share per bin, leftover capacity refilled below
        chosen.extend(m[:share].tolist())
    rest = np.setdiff1d(np.arange(len(cand)), np.asarray(chosen, dtype=np.int64))
    chosen.extend(rng.permutation(rest)[: max(0, count - len(chosen))].tolist())
    keep = rng.permutation(np.asarray(chosen, dtype=np.int64))[:count]
    return cand[keep]


def _orient(pairs: np.ndarray, num_items: int) -> np.ndarray:
    """Orient each pair so every item is first as often as second (greedy balance)."""
    balance = np.zeros(num_items, dtype=np.int64)  # (#first - #second) per item
    out = pairs.copy()
    for k, (i, j) in enumerate(pairs):
        if balance[i] > balance[j] or (balance[i] == balance[j] and k % 2 == 1):
            i, j = j, i
        out[k] = (i, j)
        balance[i] += 1
        balance[j] -= 1
    return out


def build_pairs(table, num_pairs: int, seed: int = 0, group_key: str | None = "source",
                num_bins: int = 4) -> PairList:
    """Sample ``num_pairs`` ordered training pairs of one table.

    Args:
        table: a :class:`datamodules.benchmarks.VideoTable` (``mos`` on the [1, 5] scale).
        num_pairs: how many pairs (fewer if the groups hold fewer distinct pairs).
        seed: RNG seed; the same seed gives the same pairs.
        group_key: ``extra`` column whose values delimit calibration groups (pairs never cross
            them); ignored when the table has no such column.
        num_bins: number of ``|m*|`` bins sampled equally.

    Returns:
        A :class:`PairList`.

    Example:
        >>> from types import SimpleNamespace
        >>> class Toy(SimpleNamespace):
        ...     def __len__(self):
        ...         return len(self.mos)
        >>> p = build_pairs(Toy(mos=np.arange(1.0, 5.0), extra={}, benchmark="toy"), num_pairs=6)
        >>> len(p), bool(np.allclose(p.margin, p.index_a - p.index_b))
        (6, True)
    """
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    rng = np.random.default_rng(seed)
    mos = np.asarray(table.mos, dtype=np.float64)
    groups = [g for g in _groups(table, group_key) if g.size >= 2]
    if not groups:
        raise ValueError(f"table {table.benchmark!r} has no group with two or more videos to pair")
    sizes = np.array([g.size for g in groups], dtype=np.float64)
    quota = np.maximum(1, np.round(num_pairs * sizes / sizes.sum()).astype(int))
    picked = []
    for rows, q in zip(groups, quota):
        cand = _candidates(rows, int(q) * 4, rng)
        gap = np.abs(mos[cand[:, 0]] - mos[cand[:, 1]])
        picked.append(_balanced_by_margin(cand, gap, int(q), num_bins, rng))
    pairs = np.concatenate(picked)[:num_pairs]
    pairs = _orient(pairs[rng.permutation(len(pairs))], len(mos))
    a, b = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    return PairList(a, b, mos[a] - mos[b], str(table.benchmark))


def pairs_from_names(table, names: list[tuple[str, str]]) -> PairList:
    """Pairs given by video names (e.g. the annotated pairs of a rationale file).

    Raises:
        KeyError: naming the first video that is not in the table.
    """
    lookup = {n: k for k, n in enumerate(table.names)}
    a, b = [], []
    for va, vb in names:
        for v in (va, vb):
            if v not in lookup:
                raise KeyError(f"video {v!r} of an annotated pair is not in table {table.benchmark!r}")
        a.append(lookup[va])
        b.append(lookup[vb])
    ia, ib = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    mos = np.asarray(table.mos, dtype=np.float64)
    return PairList(ia, ib, mos[ia] - mos[ib], str(table.benchmark))


RationaleFn = Callable[[object, int, int, float], str]
