"""The strict Appendix A comparison-graph sampler: the paper's description and nothing else."""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np

from ranking.aggregate import make_aggregators
from ranking.sampler_base import BaseSampler

ProvisionalName = Literal["elo", "lsq"]
PROVISIONAL_NAMES: tuple[str, ...] = get_args(ProvisionalName)


class AppendixASampler(BaseSampler):
    """Paper Appendix A, "Sparse graph construction", as written (``sampler: appendix_a``).

    Pairs are chosen in batches. Each batch: vertices are taken lowest match count first; each
    gets one partner, drawn from its own provisional-score quantile or from a local window of
    the provisional rating order; a pair repeating one already in the batch is removed. After
    each batch (``observe``) match counts and provisional ratings are updated and the next batch
    is drawn from the updated state. There is no spanning cycle, no bridging pair, no uniform
    partner and no random fill, so the graph may be disconnected (LSQ then centres each
    component on its own and warns) and a small benchmark may run out of local partners before
    its budget (``propose`` returns no pair and :func:`ranking.run_comparisons` stops).

    Choices the paper leaves open, and why they are made this way:

    * **Batch size**: the caller's (``batch_size`` of the evaluation callback or of
      :func:`ranking.run_comparisons`); the paper gives none.
    * **Match count**: usable answers per video. A failed answer (NaN) does not count, but its
      pair is never proposed again.
    * **Low-degree first**: available videos sorted by match count, ties broken at random
      (seeded); one pair per vertex per batch; vertices are taken in that order until the batch
      is full, so a vertex with no local partner left hands its slot to the next one.
    * **Provisional rating**: by default (``provisional="elo"``) the Elo ratings of the answers
      (draws below ``draw_threshold``, replayed in the order asked: the Elo the evaluation
      reports), the reading of the paper's "match counts" and "provisional ratings" (chess
      vocabulary; Elo is the paper's outcome baseline). ``provisional="lsq"`` takes the
      zero-mean least-squares scores of the answered margins instead. Measured on the seven
      real label files (``benchmarks/ranking_bench.py``, σ 0.3, 5N, 3 seeds): LSQ ratings are
      accurate after a few answers, so partners become near-ties and Elo / win-rate SRCC fall
      to 0.65 / 0.58 (Elo ratings: 0.93 / 0.92), gaps to LSQ ten times those of the paper's
      Table 2; at σ 0.6 the LSQ SRCC itself drops from 0.931 to 0.916, the graph narrowing to
      a band along the rating order. Videos without an answer sit at the middle of the scale
      (Elo: its starting rating, which stays the mean; LSQ: 0); before the first answer every
      video ties, so the first batch pairs videos at random within random groups. Cost: Elo is
      replayed over all answers every batch (Python loop, O(answers) per batch).
    * **Score quantile**: ``quantiles`` (10, deciles) equal-count bins of the rating order of
      the available videos, fewer when there are under ``2 * quantiles`` videos so that every
      bin holds at least two. Ties in the rating are ordered at random, redrawn each batch.
    * **Rating window**: ``window`` (10) positions on either side of the vertex in the rating
      order, cut at both ends of the order. Ranks rather than rating units keep the window the
      same for LSQ and Elo and in early batches whose ratings have no settled scale; 2 x 10
      candidates cover the average degree of about ten that the 5N budget gives (Appendix A).
    * **Quantile or window**: a fair coin per vertex; when the chosen source has no valid
      partner left the other one is used; when neither has, the vertex is skipped this batch.
    * **Partner**: uniform among the valid candidates of the source; the paper puts the
      degree priority on the vertices, not on their partners.
    * **Duplicates**: a pair already in the batch is removed before it is formed and the next
      vertex fills the slot; a pair answered in an earlier batch is not proposed again (the
      journal identifies a comparison by its pair, a greedy model would repeat its answer, and
      the paper's ``M = |E|`` counts each edge once).

    Args:
        num_items: N.
        seed: RNG seed (the only source of randomness).
        exclude: items that must never be proposed.
        quantiles: number of score quantiles.
        window: half-width of the rating window, in rank positions.
        provisional: ``elo`` or ``lsq``: what the provisional ratings are.
        draw_threshold: draw threshold of the ``elo`` provisional ratings (0.2, Appendix B).

    >>> s = np.linspace(1.0, 5.0, 60)
    >>> sampler = AppendixASampler(60, seed=0)
    >>> first = sampler.propose(30); sampler.observe(first, s[first[:, 0]] - s[first[:, 1]])
    >>> second = sampler.propose(30)
    >>> bool(np.median(np.abs(np.diff(s[second], axis=1))) < np.median(np.abs(np.diff(s[first]))))
    True
    """

    def __init__(
        self,
        num_items: int,
        seed: int = 0,
        exclude: np.ndarray | None = None,
        quantiles: int = 10,
        window: int = 10,
        provisional: ProvisionalName = "elo",
        draw_threshold: float = 0.2,
    ) -> None:
        super().__init__(num_items, seed, exclude)
        if quantiles < 1 or window < 1:
            raise ValueError(f"need quantiles >= 1 and window >= 1, got {quantiles}, {window}")
        if provisional not in PROVISIONAL_NAMES:
            raise ValueError(f"provisional must be one of {list(PROVISIONAL_NAMES)}, got {provisional!r}")
        self.quantiles, self.window, self.provisional = quantiles, window, provisional
        self._elo = make_aggregators(["elo"], draw_threshold)["elo"]

    def ratings(self) -> np.ndarray:
        """Provisional ratings (N,): Elo or LSQ (zero mean per component) of the answers."""
        if self.provisional == "lsq":
            return super().ratings()
        pairs, margins = self.observed()
        return self._elo(pairs, margins, self.num_items)

    def _rating_order(self) -> np.ndarray:
        """Available items by provisional rating, ties in random order."""
        avail = np.flatnonzero(self.available)
        tie = self.rng.random(len(avail))
        return avail[np.lexsort((tie, self.ratings()[avail]))]

    def _propose(self, batch_size: int, out: list[tuple[int, int]]) -> None:
        order = self._rating_order()
        n = len(order)
        if n < 2:
            return
        pos = np.empty(self.num_items, dtype=np.int64)
        pos[order] = np.arange(n)
        bins = max(min(self.quantiles, n // 2), 1)
        edges = np.arange(bins + 1) * n // bins  # equal-count quantile bounds in the order
        for anchor in self._low_degree_order().tolist():
            if len(out) >= batch_size:
                return
            r = int(pos[anchor])
            b = int(np.searchsorted(edges, r, side="right")) - 1
            quantile = order[edges[b] : edges[b + 1]]
            window = order[max(r - self.window, 0) : r + self.window + 1]
            sources = (quantile, window) if self.rng.random() < 0.5 else (window, quantile)
            for cand in sources:
                partner = self._partner(anchor, cand)
                if partner is not None:
                    self.seen.add(self._key(anchor, partner))
                    out.append((anchor, partner))
                    break

    def _partner(self, anchor: int, cand: np.ndarray) -> int | None:
        """A uniformly drawn valid partner of ``anchor`` among ``cand``, or ``None``."""
        for c in self.rng.permutation(cand).tolist():
            if self._valid(anchor, c):
                return int(c)
        return None
