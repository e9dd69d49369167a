"""What every comparison-graph sampler keeps track of, and the connected-graph frame.

:class:`BaseSampler` is the book-keeping of the sampler protocol (see :mod:`ranking.samplers`):
pairs already asked, match counts (degrees), components, provisional LSQ ratings, dropped items.
:class:`ConnectedSampler` adds the *robust* frame that the ``robust``, ``random`` and ``active``
designs share: a random spanning cycle first, bridging pairs whenever the observed graph is
split, the design's own strategy, and a random fill when the strategy runs out of choices. The
strict Appendix A design (:mod:`ranking.appendix_a`) uses the book-keeping only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ranking.lsq import lsq_solve


class BaseSampler(ABC):
    """Book-keeping shared by the samplers: seen pairs, degrees, components, ratings.

    Guarantees of :meth:`propose` for every subclass: no self-pairs, no unordered pair proposed
    twice (also across ``propose`` calls without ``observe``, and never one that was observed),
    dropped items are never proposed, and the same seed gives the same pairs.

    Args:
        num_items: N.
        seed: RNG seed (the only source of randomness).
        exclude: items that must never be proposed (same as calling :meth:`drop`).
    """

    def __init__(self, num_items: int, seed: int = 0, exclude: np.ndarray | None = None) -> None:
        if num_items < 2:
            raise ValueError(f"num_items must be >= 2, got {num_items}")
        self.num_items = int(num_items)
        self.rng = np.random.default_rng(seed)
        self.available = np.ones(self.num_items, dtype=bool)
        self.degree = np.zeros(self.num_items, dtype=np.int64)  # usable answers per item
        self.seen: set[int] = set()
        self.parent = np.arange(self.num_items)
        self._pairs: list[np.ndarray] = []
        self._margins: list[np.ndarray] = []
        self._ratings = np.zeros(self.num_items)
        self._dirty = False
        self._asked = 0  # observed pairs, failed ones included
        if exclude is not None:
            self.drop(exclude)

    # -- protocol -------------------------------------------------------------------------
    def drop(self, items: np.ndarray | list[int]) -> None:
        """Mark items unavailable (e.g. videos that failed to decode)."""
        self.available[np.asarray(items, dtype=np.int64)] = False

    def observe(self, pairs: np.ndarray, margins: np.ndarray) -> None:
        """Record answered pairs; pairs with a NaN margin count as asked but are not used."""
        p = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        m = np.asarray(margins, dtype=np.float64).reshape(-1)
        self.seen.update(self._keys(p).tolist())
        self._asked += len(p)
        ok = np.isfinite(m)
        p, m = p[ok], m[ok]
        if len(p) == 0:
            return
        np.add.at(self.degree, p.ravel(), 1)
        for a, b in p.tolist():
            self._union(a, b)
        self._pairs.append(p)
        self._margins.append(m)
        self._dirty = True

    def propose(self, batch_size: int) -> np.ndarray:
        """Up to ``batch_size`` new pairs (k, 2) int64; ``k == 0`` when the design has none."""
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        out: list[tuple[int, int]] = []
        self._propose(batch_size, out)
        return np.asarray(out, dtype=np.int64).reshape(-1, 2)

    @abstractmethod
    def _propose(self, batch_size: int, out: list[tuple[int, int]]) -> None:
        """Append up to ``batch_size`` valid pairs to ``out`` (use :meth:`_take`)."""

    # -- state ----------------------------------------------------------------------------
    def ratings(self) -> np.ndarray:
        """Provisional LSQ ratings (N,), recomputed lazily after new observations.

        Zero mean within every connected component of the answered graph; items without a
        usable answer are rated 0.
        """
        if self._dirty and self._pairs:
            self._ratings = lsq_solve(
                np.concatenate(self._pairs), np.concatenate(self._margins), self.num_items, tol=1e-4, warn=False
            ).scores
            self._dirty = False
        return self._ratings

    def observed(self) -> tuple[np.ndarray, np.ndarray]:
        """All successfully observed ``(pairs (E, 2), margins (E,))`` in observation order."""
        if not self._pairs:
            return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
        return np.concatenate(self._pairs), np.concatenate(self._margins)

    # -- helpers for subclasses -----------------------------------------------------------
    def _key(self, a: int, b: int) -> int:
        return min(a, b) * self.num_items + max(a, b)

    def _keys(self, p: np.ndarray) -> np.ndarray:
        lo, hi = np.minimum(p[:, 0], p[:, 1]), np.maximum(p[:, 0], p[:, 1])
        return lo * self.num_items + hi

    def _valid(self, a: int, b: int) -> bool:
        """A pair that may be proposed: two distinct available items, never asked before."""
        return a != b and self._key(a, b) not in self.seen and bool(self.available[a] and self.available[b])

    def _take(self, cand: np.ndarray, out: list[tuple[int, int]], limit: int) -> int:
        """Append valid candidates (:meth:`_valid`) to ``out`` until it holds ``limit`` pairs.

        Returns how many candidates were looked at."""
        cand = np.asarray(cand, dtype=np.int64).reshape(-1, 2)
        for n_done, (a, b) in enumerate(cand.tolist()):
            if len(out) >= limit:
                return n_done
            if self._valid(a, b):
                self.seen.add(self._key(a, b))
                out.append((a, b))
        return len(cand)

    def _find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = int(parent[a])
        return a

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def _roots(self) -> np.ndarray:
        """Component root of every item (vectorised pointer jumping)."""
        root = self.parent.copy()
        while True:
            nxt = root[root]
            if np.array_equal(nxt, root):
                return root
            root = nxt

    def _low_degree_order(self) -> np.ndarray:
        """Available items, lowest degree first (random tie-break)."""
        avail = np.flatnonzero(self.available)
        tie = self.rng.random(len(avail))
        return avail[np.lexsort((tie, self.degree[avail]))]


class ConnectedSampler(BaseSampler):
    """The robust frame: every batch is, in this order, the next edges of a random spanning
    cycle over the available items (served once), bridging pairs whenever the observed graph
    has more than one component, the design's :meth:`_strategy`, then a random fill."""

    def __init__(self, num_items: int, seed: int = 0, exclude: np.ndarray | None = None) -> None:
        super().__init__(num_items, seed, exclude)
        self._cycle: np.ndarray | None = None
        self._cycle_pos = 0  # cycle edges already served

    def _propose(self, batch_size: int, out: list[tuple[int, int]]) -> None:
        self._cycle_pos += self._take(self._spanning_candidates()[self._cycle_pos :], out, batch_size)
        if len(out) < batch_size:
            self._take(self._bridging_candidates(), out, batch_size)
        if len(out) < batch_size:
            self._take(self._strategy(batch_size - len(out)), out, batch_size)
        if len(out) < batch_size:  # strategy exhausted its local choices: random fill
            self._take(self._random_candidates(4 * (batch_size - len(out))), out, batch_size)

    def _strategy(self, k: int) -> np.ndarray:
        """Candidate pairs (m, 2) in preference order; subclasses override."""
        return self._random_candidates(4 * k)

    def _spanning_candidates(self) -> np.ndarray:
        """A random Hamiltonian cycle over the available items, served once."""
        if self._cycle is None:
            perm = self.rng.permutation(np.flatnonzero(self.available))
            self._cycle = np.stack([perm, np.roll(perm, -1)], axis=1) if len(perm) > 2 else perm.reshape(-1, 2)
        return self._cycle

    def _bridging_candidates(self) -> np.ndarray:
        """Pairs joining every non-main component to the largest one (only when split)."""
        if self._cycle is not None and self._asked < len(self._cycle):
            return np.zeros((0, 2), dtype=np.int64)  # the cycle is still being asked
        avail = np.flatnonzero(self.available)
        roots = self._roots()[avail]
        uniq, first, counts = np.unique(roots, return_index=True, return_counts=True)
        if len(uniq) <= 1:
            return np.zeros((0, 2), dtype=np.int64)
        main = uniq[np.argmax(counts)]
        members = avail[roots == main]
        others = avail[first[uniq != main]]
        partners = self.rng.choice(members, size=len(others))
        return np.stack([others, partners], axis=1)

    def _random_candidates(self, k: int) -> np.ndarray:
        avail = np.flatnonzero(self.available)
        return self.rng.choice(avail, size=(max(k, 1), 2))
