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
synthetic benchmark's :func:`datamodules.synthetic.rationale_for_table`) or from a JSONL file of
annotations keyed by ``(video_a, video_b)`` (:func:`load_rationales`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PairList", "RationaleFn", "build_pairs", "pairs_from_names", "pairs_from_annotations",
           "load_rationales", "attach_rationales", "split_by_video", "largest_remainder"]

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


def _candidates(rows: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``count`` distinct unordered pairs of ``rows``, shape ``(k, 2)``."""
    n = rows.size
    if n * (n - 1) // 2 <= 2 * count:  # small group: enumerate everything
        iu, ju = np.triu_indices(n, k=1)
        cand = np.stack([iu, ju], axis=1)
    else:
        cand = rng.integers(0, n, size=(int(count * 1.3) + 16, 2))
        cand = cand[cand[:, 0] != cand[:, 1]]
        cand = np.unique(np.sort(cand, axis=1), axis=0)
    return rows[cand[rng.permutation(len(cand))][:count]]


def _balanced_by_margin(cand: np.ndarray, gap: np.ndarray, count: int, num_bins: int,
                        rng: np.random.Generator) -> np.ndarray:
    """``count`` rows of ``cand`` with equal shares from ``num_bins`` equal-width bins of ``gap``.

    A bin with too few candidates gives all it has; the shortfall is refilled at random.
    """
    if len(cand) <= count:
        return cand
    edges = np.linspace(0.0, float(gap.max()) + 1e-12, num_bins + 1)
    bins = np.digitize(gap, edges[1:-1])
    share = largest_remainder(count, np.ones(num_bins))
    chosen = np.concatenate([rng.permutation(np.flatnonzero(bins == b))[: share[b]]
                             for b in range(num_bins)])
    rest = np.setdiff1d(np.arange(len(cand)), chosen)
    chosen = np.concatenate([chosen, rng.permutation(rest)[: count - len(chosen)]])
    return cand[rng.permutation(chosen)]


def _orient(pairs: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """Orient each pair so every item is first as often as second and signs of m* balance."""
    balance = np.zeros(len(mos), dtype=np.int64)  # (#first - #second) per item
    sign_sum = 0.0  # running sum of sign(m*) over oriented pairs
    out = pairs.copy()
    for k, (i, j) in enumerate(pairs):
        if balance[i] == balance[j]:  # position is indifferent: balance the sign instead
            flip = np.sign(mos[i] - mos[j]) * sign_sum > 0 or (mos[i] == mos[j] and k % 2 == 1)
        else:
            flip = balance[i] > balance[j]
        if flip:
            i, j = j, i
        out[k] = (i, j)
        balance[i] += 1
        balance[j] -= 1
        sign_sum += np.sign(mos[i] - mos[j])
    return out


def build_pairs(table: Any, num_pairs: int, seed: int = 0, group_key: str | None = "source",
                num_bins: int = 4) -> PairList:
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
    quota = largest_remainder(num_pairs, np.array([g.size for g in groups], dtype=np.float64))
    picked = []
    for rows, q in zip(groups, quota):
        if q == 0:
            continue
        cand = _candidates(rows, int(q) * 4, rng)
        gap = np.abs(mos[cand[:, 0]] - mos[cand[:, 1]])
        picked.append(_balanced_by_margin(cand, gap, int(q), num_bins, rng))
    pairs = np.concatenate(picked)
    pairs = _orient(pairs[rng.permutation(len(pairs))], mos)
    a, b = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    return PairList(a, b, mos[a] - mos[b], str(table.benchmark))


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


def load_rationales(path: str | Path) -> dict[tuple[str, str], str]:
    """Annotated rationales of a JSONL file (``datamodules.annotate`` output).

    Each line is ``{"video_a": ..., "video_b": ..., "rationale": ...}`` (other keys ignored);
    the key is ``(video_a, video_b)`` and Video A is the one shown first.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: a line is not JSON or lacks a key (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"rationale file not found: {path}")
    notes: dict[tuple[str, str], str] = {}
    with open(path, encoding="utf-8") as fh:
        for ln, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                notes[(str(rec["video_a"]), str(rec["video_b"]))] = str(rec["rationale"])
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"{path}:{ln}: not a rationale record ({err!r}); expected "
                                 '{"video_a", "video_b", "rationale"}') from None
    return notes


def pairs_from_annotations(table: Any, notes: dict[tuple[str, str], str], num_pairs: int,
                           seed: int = 0, group_key: str | None = "source") -> tuple[PairList, list[str]]:
    """The annotated pairs of ``table`` (both videos in it, same group) and their rationales.

    At most ``num_pairs`` are kept, chosen deterministically by ``seed`` when there are more.
    """
    lookup = {n: k for k, n in enumerate(table.names)}
    extra = getattr(table, "extra", None) or {}
    group = extra.get(group_key) if group_key else None
    keys = [(a, b) for a, b in sorted(notes) if a in lookup and b in lookup and a != b
            and (group is None or group[lookup[a]] == group[lookup[b]])]
    if not keys:
        raise ValueError(f"no annotated pair has both videos in table {table.benchmark!r}")
    if len(keys) > num_pairs:
        keys = [keys[k] for k in np.sort(np.random.default_rng(seed).permutation(len(keys))[:num_pairs])]
    return pairs_from_names(table, keys), [notes[k] for k in keys]


def attach_rationales(table: Any, pairs: PairList, rationale_fn: RationaleFn | None) -> list[str]:
    """One rationale per pair from ``rationale_fn`` (``""`` for every pair when it is None)."""
    if rationale_fn is None:
        return [""] * len(pairs)
    return [rationale_fn(table, int(a), int(b), float(m))
            for a, b, m in zip(pairs.index_a, pairs.index_b, pairs.margin)]


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
