"""The model as an oracle over one benchmark: model calls, rank sharding, journaling of answers.

:class:`JournaledOracle` answers pairs for :func:`ranking.run_comparisons` (pairwise model);
:func:`score_pointwise` scores every video once (pointwise ablation). Both shard the work over
ranks, gather the answers, and journal them (:mod:`callbacks.journal`) before anything uses
them; answers already in the journal are served from it and never asked again.

A model answer is ``pl_module.predict_margin(PairBatch)`` (or ``predict_score(VideoBatch)``)
``-> (values (B,), texts)`` with an optional third element, a ``(B,)`` bool tensor "forced"
(the generation hit its token budget and the system closed the template); it is journaled per
record as ``"forced"`` and counted in the results.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from callbacks.journal import Answer, Journal, margin_of, used_margin
from callbacks.outcome import BenchmarkOutcome
from datamodules.pairwise import PairBatch, VideoBatch
from datamodules.video import VideoDecodeError


def gather_objects(trainer: Any, obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (no distributed call in a single process)."""
    if trainer.world_size <= 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * trainer.world_size
    dist.all_gather_object(out, obj)
    return out


def load_clips(datamodule: Any, benchmark: str, items: Sequence[int]) -> tuple[dict[int, Any], dict[int, str]]:
    """Clips of ``items`` via ``datamodule.get_clip``; undecodable ones go to the error dict."""
    clips: dict[int, Any] = {}
    errors: dict[int, str] = {}
    for i in items:
        try:
            clips[int(i)] = datamodule.get_clip(benchmark, int(i))
        except (VideoDecodeError, FileNotFoundError) as err:
            errors[int(i)] = str(err)
    return clips, errors


def answers_of(output: Sequence[Any]) -> list[Answer]:
    """``(values, texts[, forced])`` of ``predict_margin`` / ``predict_score`` as answers.

    >>> answers_of((torch.tensor([0.5, float("nan")]), ["a", "b"]))
    [(0.5, 'a', False), (nan, 'b', False)]
    >>> answers_of((torch.tensor([0.5]), ["a"], torch.tensor([True])))
    [(0.5, 'a', True)]
    """
    values = output[0].detach().float().cpu().tolist()  # (B,)
    forced = torch.as_tensor(output[2]).bool().tolist() if len(output) > 2 else [False] * len(values)
    return [(float(v), str(t), bool(f)) for v, t, f in zip(values, output[1], forced)]


class JournaledOracle:
    """``oracle(pairs (k, 2)) -> margins (k,)`` for :func:`ranking.run_comparisons`.

    Pairs already in the journal are served from it (a resumed run replays the sampler's
    choices without asking the model again); new pairs are sharded over ranks, answered by
    ``pl_module.predict_margin`` in ``PairBatch``es of ``batch_size``, gathered, journaled,
    and only then returned. A video whose clip fails to decode is dropped from the sampler and
    its pairs get a NaN margin.
    """

    def __init__(
        self,
        trainer: Any,
        pl_module: Any,
        datamodule: Any,
        journal: Journal,
        names: Sequence[str],
        sampler: Any,
        batch_size: int,
    ) -> None:
        self.trainer, self.pl_module, self.datamodule = trainer, pl_module, datamodule
        self.journal, self.names, self.sampler = journal, list(names), sampler
        self.batch_size, self.symmetrize = batch_size, journal.identity.symmetrize
        self.benchmark = journal.identity.benchmark
        self.bad: dict[int, str] = dict(journal.state.bad)
        self.served: set[tuple[int, int]] = set()

    def record_bad(self, bad: dict[int, str]) -> None:
        """Journal bad videos found outside the oracle (the encode pass)."""
        new = {i: r for i, r in bad.items() if i not in self.journal.state.bad}
        self.bad.update(bad)
        records = [Journal.bad_record(i, self.names[i], r) for i, r in sorted(new.items())]
        self.journal.append(records)

    def __call__(self, pairs: np.ndarray) -> np.ndarray:
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        keys = [(int(a), int(b)) for a, b in pairs]
        touched = sorted({i for key in keys for i in key} & set(self.bad))
        if touched:  # replay: drop known-bad items at the batch where they were met
            self.sampler.drop(touched)
        new = [k for k in keys if k not in self.journal.state.pairs]
        if new:
            self._ask(np.asarray(new, dtype=np.int64))
        self.served.update(keys)
        return np.array([used_margin(self.journal.state.pairs[k], self.symmetrize) for k in keys])

    def _ask(self, pairs: np.ndarray) -> None:
        queries = np.concatenate([pairs, pairs[:, ::-1]]) if self.symmetrize else pairs
        answers, bad = self.answer(queries)
        fresh = {i: r for i, r in bad.items() if i not in self.bad}
        records = [Journal.bad_record(i, self.names[i], r) for i, r in sorted(fresh.items())]
        k = len(pairs)
        for t, (i, j) in enumerate(pairs.tolist()):
            rev = answers[t + k] if self.symmetrize else None
            records.append(self.journal.pair_record(i, j, self.names, answers[t], rev))
        self.journal.append(records)  # durable before any use
        self.bad.update(fresh)
        if fresh:
            self.sampler.drop(sorted(fresh))

    def answer(self, queries: np.ndarray) -> tuple[list[Answer], dict[int, str]]:
        """Model answers for ordered pairs: this rank's share computed, all shares gathered."""
        rank, world = self.trainer.global_rank, self.trainer.world_size
        mine = np.arange(len(queries))[rank::world]
        local, bad = self._answer_local(queries[mine])
        answers: list[Answer] = [(float("nan"), "", False)] * len(queries)
        merged: dict[int, str] = {}
        for idx, part, part_bad in gather_objects(self.trainer, (mine.tolist(), local, bad)):
            for t, value in zip(idx, part):
                answers[t] = value
            merged.update(part_bad)
        return answers, merged

    def _answer_local(self, queries: np.ndarray) -> tuple[list[Answer], dict[int, str]]:
        items = sorted({int(x) for x in queries.ravel()} - set(self.bad))
        clips, errors = load_clips(self.datamodule, self.benchmark, items)
        bad = {**self.bad, **errors}
        out: list[Answer] = []
        for a, b in queries.tolist():
            skip = bad.get(a) or bad.get(b)
            out.append((float("nan"), f"skipped: {skip}" if skip else "", False))
        ok = [t for t, (a, b) in enumerate(queries.tolist()) if a in clips and b in clips]
        for start in range(0, len(ok), self.batch_size):
            rows = ok[start : start + self.batch_size]
            batch = self._pair_batch(queries[rows], clips)
            for t, answer in zip(rows, answers_of(self.pl_module.predict_margin(batch))):
                out[t] = answer
        return out, errors

    def _pair_batch(self, pairs: np.ndarray, clips: dict[int, Any]) -> PairBatch:
        return PairBatch(
            clips_a=[clips[int(a)] for a in pairs[:, 0]],
            clips_b=[clips[int(b)] for b in pairs[:, 1]],
            margin=None,
            rationale=None,
            benchmark=[self.benchmark] * len(pairs),
            index_a=torch.as_tensor(pairs[:, 0], dtype=torch.long),
            index_b=torch.as_tensor(pairs[:, 1], dtype=torch.long),
        )

    def with_leftovers(self, pairs: np.ndarray, margins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append journaled pairs the (changed) sampler never proposed: answered work is kept."""
        left = [k for k in self.journal.state.order if k not in self.served]
        if not left:
            return pairs, margins
        warnings.warn(
            f"{self.journal.path}: {len(left)} journaled pairs were not proposed again "
            "(batch size changed since the run was interrupted); they are used as they are",
            RuntimeWarning,
            stacklevel=2,
        )
        extra = np.asarray(left, dtype=np.int64)
        values = [used_margin(self.journal.state.pairs[k], self.symmetrize) for k in left]
        return np.concatenate([pairs, extra]), np.concatenate([margins, values])

    def forced(self, pairs: np.ndarray) -> np.ndarray:
        """(E,) bool: which of the answered ``pairs`` had a forced (budget-closed) answer."""
        state = self.journal.state.pairs
        return np.array([bool(state[(int(a), int(b))].get("forced")) for a, b in pairs], bool)

    def antisymmetry(self, pairs: np.ndarray, margins: np.ndarray, sample: int, seed: int) -> float:
        """Mean ``|m(i,j) + m(j,i)|`` (position bias) over both-order pairs.

        With ``symmetrize`` every pair has both orders; otherwise ``sample`` answered pairs are
        asked again reversed (journaled as ``reverse`` records, never asked twice).
        """
        state = self.journal.state
        if self.symmetrize:
            both = [(margin_of(r), margin_of(r, "margin_rev")) for r in state.pairs.values()]
        else:
            keys = [(int(a), int(b)) for (a, b), m in zip(pairs, margins) if np.isfinite(m)]
            rng = np.random.default_rng(seed)
            pick = (
                sorted(rng.choice(len(keys), size=min(sample, len(keys)), replace=False)) if keys and sample > 0 else []
            )
            chosen = [keys[t] for t in pick]
            self._ask_reverse([k for k in chosen if k not in state.reverse])
            both = [(margin_of(state.pairs[k]), margin_of(state.reverse[k], "margin_rev")) for k in chosen]
        errs = [abs(f + r) for f, r in both if np.isfinite(f) and np.isfinite(r)]
        return float(np.mean(errs)) if errs else float("nan")

    def _ask_reverse(self, keys: list[tuple[int, int]]) -> None:
        for start in range(0, len(keys), self.batch_size):
            chunk = keys[start : start + self.batch_size]
            answers, _ = self.answer(np.asarray(chunk, dtype=np.int64)[:, ::-1])
            self.journal.append([self.journal.reverse_record(i, j, a) for (i, j), a in zip(chunk, answers)])

    def examples(self, count: int) -> list[tuple[str, str, float, str]]:
        """A few answered comparisons ``(video_i, video_j, margin, rationale)`` to show."""
        out = []
        for (i, j), r in self.journal.state.pairs.items():
            if len(out) >= count:
                break
            if r.get("margin") is not None:
                out.append((self.names[i], self.names[j], float(r["margin"]), r.get("rationale") or ""))
        return out


def score_pointwise(
    trainer: Any,
    pl_module: Any,
    datamodule: Any,
    journal: Journal,
    outcome: BenchmarkOutcome,
    batch_size: int,
    num_rationales: int = 0,
) -> None:
    """Pointwise ablation: one ``predict_score`` per video, sharded over ranks and journaled.

    Fills ``outcome.bad``, ``scores["direct"]`` (N,), ``valid``, ``degree`` (zeros: no graph),
    ``forced`` (one per scored video) and ``num_rationales`` example ``rationales``.
    """
    names, n = outcome.names, len(outcome.names)
    todo = [i for i in range(n) if i not in outcome.bad and i not in journal.state.scores]
    step = batch_size * trainer.world_size
    for start in range(0, len(todo), step):
        mine = todo[start : start + step][trainer.global_rank :: trainer.world_size]
        clips, errors = load_clips(datamodule, outcome.name, mine)
        batch = VideoBatch(
            clips=[clips.get(i) for i in mine],
            index=torch.tensor(mine, dtype=torch.long),
            benchmark=[outcome.name] * len(mine),
            name=[names[i] for i in mine],
            mos=torch.tensor(outcome.mos[mine], dtype=torch.float32),
            error=[errors.get(i) for i in mine],
        )
        answers = answers_of(pl_module.predict_score(batch)) if mine else []
        local = [(i, answer, errors.get(i)) for i, answer in zip(mine, answers)]
        records = []
        for i, answer, err in (x for part in gather_objects(trainer, local) for x in part):
            if err is not None:
                records.append(Journal.bad_record(i, names[i], err))
            records.append(Journal.score_record(i, names[i], answer))
        journal.append(records)
    outcome.bad.update(journal.state.bad)
    state = journal.state.scores
    direct = np.array([margin_of(state.get(i, {}), "score") for i in range(n)])  # (N,)
    outcome.scores, outcome.valid = {"direct": direct}, np.isfinite(direct)
    outcome.degree = np.zeros(n, dtype=np.int64)
    outcome.forced = np.array([bool(r.get("forced")) for r in state.values()], bool)
    outcome.rationales = [
        (names[i], "", float(direct[i]), r.get("rationale") or "") for i, r in list(state.items())[:num_rationales]
    ]
