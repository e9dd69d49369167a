"""Training pair construction: ``m* = MOS_i - MOS_j`` within one benchmark / rating source.

A margin across benchmarks (or across synthetic rating sources with different calibration) means
nothing, so pairs are only formed inside one *group*: the rows of a :class:`VideoTable` that share
``extra[group_key]`` (the synthetic benchmark's ``source`` column), or the whole table when it has
no such column. One table is one benchmark, so pairs never cross benchmarks either.

Sampling is balanced so the model cannot learn shortcuts:

* **over |m*|** — candidate pairs are binned by ``|m*|`` (equal-width bins on ``[0, max|m*|]``) and
  every bin contributes the same number of pairs (a uniform draw over all pairs is dominated by
  mid-size gaps and starves the "about the same" and "substantially better" cases);
* **over A/B position** — each unordered pair is oriented so that every video is shown first and
  second equally often (greedy balance of per-video ``first - second`` counts; ties are broken to
  balance the sign of ``m*``), so neither a position prior nor a constant-sign prior earns reward.

Held-out videos never reach training: :func:`split_by_video` splits a table by video, and the
datamodule refuses train/eval lists that share a video. Everything is deterministic by ``seed``.
Rationales (SFT with reasoning) come from a ``rationale_fn(table, i, j, margin) -> str`` (the
synthetic benchmark's :func:`datamodules.synthetic_rationale.rationale_for_table`) or from an annotation
JSONL (:mod:`datamodules.annotated_pairs`). :func:`build_present_pairs` is THE pair design of SFT:
the datamodule samples with it and ``python -m datamodules.annotate pairs`` writes its output for
annotation, so a seed gives the same pairs in both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "PairList",
    "RationaleFn",
    "build_pairs",
    "build_present_pairs",
    "pairs_from_names",
    "attach_rationales",
    "split_by_video",
    "largest_remainder",
    "margin_edges",
]

RationaleFn = Callable[[Any, int, int, float], str]
"""``rationale_fn(table, i, j, margin) -> str``: text for Video A = row ``i``, B = row ``j``."""


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


def largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` that sum exactly to ``total``.

    >>> largest_remainder(10, np.array([1.0, 1.0, 1.0])).tolist()
    [4, 3, 3]
    """
    share = total * np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
    out = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - out), kind="stable")
    out[order[: total - int(out.sum())]] += 1
    return out


def _groups(table: Any, group_key: str | None) -> list[np.ndarray]:
    """Row-index arrays of the calibration groups (one group when ``group_key`` is absent)."""
    extra = getattr(table, "extra", None) or {}
    if group_key is None or group_key not in extra:
        return [np.arange(len(table))]
    labels = np.asarray([str(v) for v in extra[group_key]])
    return [np.flatnonzero(labels == g) for g in sorted(set(labels.tolist()))]


def _fill(count: int, caps: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Shares of ``count`` proportional to ``weights`` (default equal), none above its ``caps``;
    what a capped entry cannot take goes to the others.

    >>> _fill(10, np.array([1, 100, 100])).tolist()
    [1, 5, 4]
    """
    weights = np.ones(len(caps)) if weights is None else np.asarray(weights, dtype=np.float64)
    out = np.zeros(len(caps), dtype=np.int64)
    while out.sum() < min(count, caps.sum()):
        room = np.where(out < caps, weights, 0.0)
        out += np.minimum(largest_remainder(count - int(out.sum()), room), caps - out)
    return out


def _bin_partners(ms: np.ndarray, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """For sorted ``ms``: per position ``p`` the range ``[start, start + count)`` of positions
    ``q > p`` with ``lo <= ms[q] - ms[p] < hi`` (each unordered pair counted once)."""
    pos = np.arange(ms.size)
    start = np.maximum(pos + 1, np.searchsorted(ms, ms + lo, side="left"))
    end = np.searchsorted(ms, ms + hi, side="left")
    return start, np.maximum(0, end - start)


def _draw_bin(start: np.ndarray, count: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` distinct pairs ``(p, q)`` uniform over the bin's pairs, shape ``(k, 2)``."""
    total = int(count.sum())
    if total <= 2 * k:  # few pairs: enumerate them
        p = np.repeat(np.arange(count.size), count)
        q = start[p] + (np.arange(total) - np.repeat(np.cumsum(count) - count, count))
        pairs = np.stack([p, q], axis=1)
        return pairs[rng.permutation(total)[:k]]
    found = np.zeros((0, 2), dtype=np.int64)
    while len(found) < k:
        p = rng.choice(count.size, size=2 * k + 16, p=count / total)
        q = start[p] + rng.integers(0, count[p])
        found = np.unique(np.concatenate([found, np.stack([p, q], axis=1)]), axis=0)
    return found[rng.permutation(len(found))[:k]]


def margin_edges(mos: np.ndarray, num_bins: int) -> np.ndarray:
    """Edges of the ``|m*|`` bins of one group: equal width on ``[0, g99]``, last bin open-ended.

    ``g99`` is the 99th percentile of ``|mos_i - mos_j|`` over 4096 random pairs (fixed seed, so
    the edges depend on the data only).

    >>> margin_edges(np.linspace(1, 5, 101), 4).round(1).tolist()
    [0.0, 0.9, 1.8, 2.7, inf]
    """
    probe = np.random.default_rng(0).integers(0, len(mos), size=(4096, 2))
    top = float(np.quantile(np.abs(mos[probe[:, 0]] - mos[probe[:, 1]]), 0.99))
    edges = np.linspace(0.0, top, num_bins + 1)
    edges[-1] = np.inf
    return edges


def _stratified(rows: np.ndarray, mos: np.ndarray, count: int, num_bins: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` distinct unordered pairs of ``rows`` spread equally over ``|m*|`` bins.

    Bins are equal-width on ``[0, g99]`` (``g99``: 99th percentile of ``|m*|`` over random
    pairs; the last bin is open-ended), so a handful of extreme videos does not stretch the
    range; a bin with too few distinct pairs gives them all and the others make up the rest.
    Within a bin the pairs are uniform. Returns row indices, shape ``(count', 2)``.
    """
    order = np.argsort(mos[rows], kind="stable")
    ms = mos[rows][order]
    edges = margin_edges(ms, num_bins)
    ranges = [_bin_partners(ms, edges[b], edges[b + 1]) for b in range(num_bins)]
    if num_bins > 1 and edges[1] == 0.0:  # all MOS equal: one bin
        ranges = [_bin_partners(ms, 0.0, np.inf)]
    shares = _fill(count, np.array([int(c.sum()) for _, c in ranges], dtype=np.int64))
    picked = [_draw_bin(st, c, int(k), rng) for (st, c), k in zip(ranges, shares) if k > 0]
    return rows[order[np.concatenate(picked)]]


def _cycles(edges: np.ndarray, num_nodes: int) -> list[list[tuple[int, int, int]]]:
    """Split a graph whose degrees are all even into directed cycles ``[(edge, tail, head), ...]``.

    Walks unused edges keeping the current path on a stack; arriving at a vertex already on the
    path closes a cycle, which is popped off and emitted.
    """
    adj: list[list[int]] = [[] for _ in range(num_nodes)]
    for e, (u, v) in enumerate(edges):
        adj[u].append(e)
        adj[v].append(e)
    used = np.zeros(len(edges), dtype=bool)
    ptr = [0] * num_nodes
    cycles = []
    for start in range(num_nodes):
        path, pos = [start], {start: 0}
        steps: list[tuple[int, int, int]] = []
        while True:
            v = path[-1]
            while ptr[v] < len(adj[v]) and used[adj[v][ptr[v]]]:
                ptr[v] += 1
            if ptr[v] == len(adj[v]):  # only the start can be stuck (all degrees even)
                break
            e = adj[v][ptr[v]]
            used[e] = True
            head = int(edges[e, 1] if edges[e, 0] == v else edges[e, 0])
            if head in pos:
                p = pos[head]
                cycles.append(steps[p:] + [(e, v, head)])
                for x in path[p + 1 :]:
                    del pos[x]
                del path[p + 1 :], steps[p:]
            else:
                pos[head] = len(path)
                path.append(head)
                steps.append((e, v, head))
    return cycles


def _orient(pairs: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """Orient pairs so every video is first as often as second (±1 for odd degree), signs balanced.

    Odd-degree videos are joined to a dummy vertex, the graph is split into cycles and each cycle
    is oriented along itself (so every vertex enters it as often as it leaves); each cycle's
    direction is then chosen to keep the running sum of ``sign(m*)`` near zero.
    """
    n = len(mos)
    odd = np.flatnonzero(np.bincount(pairs.ravel(), minlength=n) % 2)
    edges = np.concatenate([pairs, np.stack([odd, np.full(odd.size, n)], axis=1)]).astype(np.int64)
    out, running = pairs.copy(), 0.0
    for cycle in _cycles(edges, n + 1):
        real = [(e, a, b) for e, a, b in cycle if e < len(pairs)]
        total = float(sum(np.sign(mos[a] - mos[b]) for _, a, b in real))
        flip = total * running > 0
        for e, a, b in real:
            out[e] = (b, a) if flip else (a, b)
        running += -total if flip else total
    return out


def build_pairs(
    table: Any, num_pairs: int, seed: int = 0, group_key: str | None = "source", num_bins: int = 4
) -> PairList:
    """Sample ``num_pairs`` ordered training pairs of one table.

    Args:
        table: a :class:`datamodules.benchmarks.VideoTable` (``mos`` on the [1, 5] scale).
        num_pairs: how many pairs (fewer only if the groups hold fewer distinct pairs).
        seed: RNG seed; the same seed gives the same pairs.
        group_key: ``extra`` column whose values delimit calibration groups (pairs never cross
            them); ignored when the table has no such column.
        num_bins: number of ``|m*|`` bins sampled equally (1: uniform over candidate pairs).

    Returns:
        A :class:`PairList`; group quotas are proportional to group size.

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
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    rng = np.random.default_rng(seed)
    mos = np.asarray(table.mos, dtype=np.float64)
    groups = [g for g in _groups(table, group_key) if g.size >= 2]
    if not groups:
        raise ValueError(f"table {table.benchmark!r} has no group with two or more videos to pair")
    sizes = np.array([g.size for g in groups], dtype=np.int64)
    quota = _fill(num_pairs, sizes * (sizes - 1) // 2, sizes)  # by group size, capped by capacity
    pairs = np.concatenate([_stratified(rows, mos, int(q), num_bins, rng) for rows, q in zip(groups, quota) if q > 0])
    pairs = _orient(pairs[rng.permutation(len(pairs))], mos)
    a, b = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    return PairList(a, b, mos[a] - mos[b], str(table.benchmark))


def build_present_pairs(table: Any, num_pairs: int, seed: int = 0, group_key: str | None = "source") -> PairList:
    """:func:`build_pairs` over the videos of ``table`` that are on disk (not in ``table.missing``).

    Indices refer to ``table`` itself. With nothing missing this is ``build_pairs(table, ...)``.
    """
    if not table.missing:
        return build_pairs(table, num_pairs, seed=seed, group_key=group_key)
    absent = set(table.missing)
    keep = np.array([k for k, n in enumerate(table.names) if n not in absent], dtype=np.int64)
    sub = build_pairs(table.subset(keep), num_pairs, seed=seed, group_key=group_key)
    return PairList(keep[sub.index_a], keep[sub.index_b], sub.margin, str(table.benchmark))


def pairs_from_names(table: Any, names: list[tuple[str, str]]) -> PairList:
    """Pairs given by video names (``(video_a, video_b)``, A shown first).

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


def attach_rationales(table: Any, pairs: PairList, rationale_fn: RationaleFn | None) -> list[str]:
    """One rationale per pair from ``rationale_fn`` (``""`` for every pair when it is None)."""
    if rationale_fn is None:
        return [""] * len(pairs)
    return [
        rationale_fn(table, int(a), int(b), float(m)) for a, b, m in zip(pairs.index_a, pairs.index_b, pairs.margin)
    ]


def split_by_video(table: Any, held_out: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, held)`` with a ``held_out`` fraction of the *videos* held out.

    Pairs built from ``table.subset(train)`` then never show a held-out video.

    >>> from types import SimpleNamespace
    >>> tr, te = split_by_video(SimpleNamespace(names=list("abcdefghij")), 0.3)
    >>> len(tr), len(te), set(tr) & set(te)
    (7, 3, set())
    """
    if not 0.0 < held_out < 1.0:
        raise ValueError(f"held_out must be in (0, 1), got {held_out}")
    n = len(table.names)
    order = np.random.default_rng(seed).permutation(n)
    k = int(round(held_out * n))
    return np.sort(order[k:]), np.sort(order[:k])
