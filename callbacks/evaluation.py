"""ComparisonGraphEvaluation: the model as a pairwise oracle over each evaluation benchmark.

At validation / test / predict epoch end, for every benchmark of
``trainer.datamodule.eval_sets(stage)``: a sampler picks batches of pairs, the model answers
them (``pl_module.predict_margin``, sharded over ranks and gathered), every answer is journaled
(:mod:`callbacks.journal`) before it is used, and the scores recovered by LSQ / Elo / win-rate /
Bradley–Terry are correlated with MOS, logged, tabulated (:mod:`callbacks.tables`) and, at
predict, written as a leaderboard (:mod:`callbacks.leaderboard`).

Collation of several test runs into the paper's Table 2::

    python -m callbacks.evaluation tables RUN_DIR... [--names ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

import ranking
from callbacks import leaderboard as lb
from callbacks import tables
from callbacks.journal import (
    Journal,
    JournaledOracle,
    JournalHeader,
    JournalState,
    gather_objects,
    items_digest,
    load_clips,
)

STAGES = ("val", "test", "predict")
SAMPLER_NAMES = tuple(ranking.SAMPLERS)
AGGREGATOR_NAMES = ("lsq", "elo", "winrate", "bt")
_LOOP_STAGE = {"val": "validate", "test": "test", "predict": "predict"}


@dataclass
class BenchmarkOutcome:
    """What one benchmark's evaluation produced (all arrays over the benchmark's N items)."""

    name: str
    group: str
    names: list[str]
    mos: np.ndarray  # (N,) float, NaN when unknown
    pairs: np.ndarray  # (E, 2) answered pairs (failed ones included)
    margins: np.ndarray  # (E,) margins used, NaN where the comparison failed
    bad: dict[int, str]  # item -> reason (decode failure, encode pass)
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # aggregator -> (N,)
    valid: np.ndarray | None = None  # (N,) bool: scored items
    degree: np.ndarray | None = None  # (N,) comparisons per item
    antisymmetry: float = float("nan")
    rationales: list[tuple[str, str, float, str]] = field(default_factory=list)


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


def aggregator_functions(draw_threshold: float = 0.2) -> dict[str, Any]:
    """``name -> f(pairs, margins, n)`` for LSQ, Elo, win-rate and Bradley–Terry."""
    return {
        "lsq": lambda q, v, n: ranking.lsq_solve(q, v, n, warn=True).scores,
        "elo": partial(ranking.elo_scores, draw_threshold=draw_threshold),
        "winrate": partial(ranking.winrate_scores, draw_threshold=draw_threshold),
        "bt": partial(ranking.bt_scores, draw_threshold=draw_threshold),
    }


def recover_scores(
    pairs: np.ndarray,
    margins: np.ndarray,
    num_items: int,
    aggregators: Sequence[str] = AGGREGATOR_NAMES,
    draw_threshold: float = 0.2,
    exclude: Sequence[int] = (),
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Scores of every aggregator on the compacted graph (:func:`compact_graph`).

    Returns:
        ``({aggregator: (N,) scores, NaN for unscored items}, valid (N,) bool)``.

    >>> s, ok = recover_scores(np.array([[0, 1], [1, 2], [2, 3]]), np.array([1.0, np.nan, 1.0]),
    ...                        4, ["winrate"])
    >>> s["winrate"].tolist(), ok.tolist()
    ([1.0, 0.0, 1.0, 0.0], [True, True, True, True])
    """
    p, m, valid = compact_graph(pairs, margins, num_items, exclude)
    funcs = aggregator_functions(draw_threshold)
    out: dict[str, np.ndarray] = {}
    for name in aggregators:
        full = np.full(num_items, np.nan)
        if valid.sum() >= 2:
            full[valid] = funcs[name](p, m, int(valid.sum()))
        out[name] = full
    return out, valid


class ComparisonGraphEvaluation(Callback):
    """Sparse comparison-graph evaluation of a pairwise margin model (paper Sec. 3.2, App. A).

    Args:
        sampler: ``"paper"`` (App. A), ``"random"`` (near-regular) or ``"active"``.
        budget_per_item: comparisons per video; the budget is ``round(budget_per_item * N)``
            (5N in the paper).
        batch_size: pairs per sampler round, split over ranks (each rank answers its share).
        seed: sampler seed.
        aggregators: score recoveries to report (``lsq``, ``elo``, ``winrate``, ``bt``).
        draw_threshold: ``|margin|`` below this is a draw for Elo / win-rate / BT (0.2).
        symmetrize: ask every pair in both orders and use ``(m(i,j) - m(j,i)) / 2``.
        antisymmetry_pairs: without ``symmetrize``, how many answered pairs are asked again in
            the reverse order to measure the position bias ``|m(i,j) + m(j,i)|``.
        stages: where to run: any of ``val``, ``test``, ``predict``.
        output_dir: where results go (default ``<log_dir>/eval``; at predict ``<log_dir>``).
        journal_dir: where journals live (default ``<default_root_dir>/journals/<checkpoint>``,
            stable across restarts so a killed run resumes).
        convergence_steps: prefixes for the Fig. 4 convergence curves (0 = skip).
        num_rationales: rationales shown as TensorBoard text per benchmark.
        anchors: optional csv (``video,mos``) whose videos map predict scores to a MOS scale;
            the predict set's own MOS values (csv input) are used as anchors too.
        top_k: leaderboard rows printed at the end of predict.
        progress: show a tqdm bar with ETA over comparisons.
        method_name: row label of the Table 1 markdown.
    """

    def __init__(
        self,
        sampler: str = "paper",
        budget_per_item: float = 5.0,
        batch_size: int = 16,
        seed: int = 0,
        aggregators: Sequence[str] = AGGREGATOR_NAMES,
        draw_threshold: float = 0.2,
        symmetrize: bool = False,
        antisymmetry_pairs: int = 32,
        stages: Sequence[str] = STAGES,
        output_dir: str | None = None,
        journal_dir: str | None = None,
        convergence_steps: int = 20,
        num_rationales: int = 4,
        anchors: str | None = None,
        top_k: int = 10,
        progress: bool = True,
        method_name: str = "VersusQ (ours)",
    ) -> None:
        super().__init__()
        for what, values, allowed in (
            ("sampler", [sampler], SAMPLER_NAMES),
            ("aggregators", aggregators, AGGREGATOR_NAMES),
            ("stages", stages, STAGES),
        ):
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise ValueError(f"{what}: unknown {unknown}; allowed: {list(allowed)}")
        if budget_per_item <= 0 or batch_size <= 0:
            raise ValueError(
                f"budget_per_item and batch_size must be > 0, got {budget_per_item}, {batch_size}"
            )
        self.sampler, self.budget_per_item, self.batch_size = sampler, budget_per_item, batch_size
        self.seed, self.aggregators, self.draw_threshold = seed, list(aggregators), draw_threshold
        self.symmetrize, self.antisymmetry_pairs = symmetrize, antisymmetry_pairs
        self.stages, self.output_dir, self.journal_dir = list(stages), output_dir, journal_dir
        self.convergence_steps, self.num_rationales = convergence_steps, num_rationales
        self.anchors, self.top_k, self.progress = anchors, top_k, progress
        self.method_name = method_name
        self.encode_bad: dict[tuple[str, int], str] = {}
        self.outcomes: dict[str, BenchmarkOutcome] = {}
        self.results: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ Lightning hooks
    def _reset(self, *_: Any) -> None:
        self.encode_bad = {}

    on_validation_epoch_start = on_test_epoch_start = on_predict_epoch_start = _reset

    def _collect_bad(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        """Remember videos the encode pass could not decode (``clip is None``)."""
        clips = getattr(batch, "clips", None)
        if clips is None:
            return
        errors = getattr(batch, "error", None) or [None] * len(clips)
        for k, clip in enumerate(clips):
            if clip is None:
                key = (str(batch.benchmark[k]), int(batch.index[k]))
                self.encode_bad[key] = str(errors[k] or "could not be decoded")

    on_validation_batch_end = on_test_batch_end = on_predict_batch_end = _collect_bad

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "val" in self.stages and not trainer.sanity_checking:
            self.evaluate(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "test" in self.stages:
            self.evaluate(trainer, pl_module, "test")

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if "predict" in self.stages:
            self.evaluate(trainer, pl_module, "predict")

    # ------------------------------------------------------------------ the evaluation
    def evaluate(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Run every benchmark of ``stage``, then log, write files and figures."""
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "eval_sets"):
            raise ValueError(
                "ComparisonGraphEvaluation needs a datamodule with eval_sets(stage) "
                "and get_clip(benchmark, index) (datamodules.pairwise)"
            )
        self._warn_untrained(trainer, pl_module, stage)
        self.outcomes, self.results = {}, []
        for eval_set in datamodule.eval_sets(_LOOP_STAGE[stage]):
            outcome = self.run_benchmark(trainer, pl_module, datamodule, eval_set, stage)
            self.outcomes[outcome.name] = outcome
            self.results += self._result_rows(outcome, stage, _checkpoint_id(pl_module))
        if stage != "predict":
            pl_module.log_dict(self._metrics(stage), sync_dist=False)
        self._write_outputs(trainer, pl_module, stage)

    def _warn_untrained(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if (
            getattr(trainer, "ckpt_path", None) is None
            and stage != "val"
            and not getattr(pl_module, "hparams", {}).get("init_from")
        ):
            rank_zero_warn(
                f"{stage}: no --ckpt_path and no model.init_from: running the model as "
                "initialised; the scores only check the setup, they measure nothing"
            )

    def run_benchmark(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        datamodule: Any,
        eval_set: Any,
        stage: str,
    ) -> BenchmarkOutcome:
        """Comparisons (or pointwise scores), journal, recovery and correlations for one set."""
        table = eval_set.table
        names, n = [str(x) for x in table.names], len(table.names)
        mos = np.asarray(getattr(table, "mos", np.full(n, np.nan)), dtype=np.float64)
        bad = {i: r for (b, i), r in self.encode_bad.items() if b == eval_set.name}
        pointwise = getattr(pl_module, "hparams", {}).get("target", "pairwise") == "pointwise"
        budget = n if pointwise else int(round(self.budget_per_item * n))
        header = JournalHeader(
            _checkpoint_id(pl_module),
            eval_set.name,
            n,
            "pointwise" if pointwise else self.sampler,
            self.seed,
            budget,
            self.symmetrize,
            items_digest(names),
        )
        journal = self._open_journal(trainer, header)
        outcome = BenchmarkOutcome(
            eval_set.name,
            tables.group_of(getattr(eval_set, "group", None), eval_set.name),
            names,
            mos,
            np.zeros((0, 2), np.int64),
            np.zeros(0),
            bad,
        )
        if pointwise:
            self._run_pointwise(trainer, pl_module, datamodule, journal, outcome)
        else:
            self._run_pairwise(trainer, pl_module, datamodule, journal, outcome, stage)
        self._copy_journal(trainer, journal, stage, eval_set.name)
        return outcome

    def _open_journal(self, trainer: Trainer, header: JournalHeader) -> Journal:
        """Rank 0 opens (or resumes) the file; the other ranks receive its state."""
        root = (
            Path(self.journal_dir)
            if self.journal_dir
            else Path(trainer.default_root_dir) / "journals" / _slug(header.checkpoint_id)
        )
        path = root / f"{_slug(header.benchmark)}-{header.items_digest[:8]}.jsonl"
        state: JournalState | None = None
        error: str | None = None
        if trainer.is_global_zero:
            try:
                state = Journal(path, header).state
            except ValueError as err:
                error = str(err)
        state, error = trainer.strategy.broadcast((state, error), src=0)
        if error is not None:
            raise ValueError(error)
        return Journal(path, header, enabled=trainer.is_global_zero, state=state)

    def _run_pairwise(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        datamodule: Any,
        journal: Journal,
        outcome: BenchmarkOutcome,
        stage: str,
    ) -> None:
        n = len(outcome.names)
        if n - len(outcome.bad) < 2:
            rank_zero_warn(f"{stage}/{outcome.name}: fewer than 2 decodable videos; skipped")
            return
        sampler = ranking.SAMPLERS[self.sampler](
            n, seed=self.seed, exclude=np.array(sorted(outcome.bad), dtype=int)
        )
        oracle = JournaledOracle(
            trainer,
            pl_module,
            datamodule,
            journal,
            outcome.names,
            sampler,
            self.batch_size,
            self.symmetrize,
        )
        oracle.record_bad(outcome.bad)
        bar = _progress_bar(
            self.progress and trainer.is_global_zero,
            min(journal.header.budget, (n - len(outcome.bad)) * (n - len(outcome.bad) - 1) // 2),
            f"{stage} {outcome.name}",
        )
        try:
            pairs, margins = ranking.run_comparisons(
                oracle,
                n,
                journal.header.budget,
                sampler,
                self.batch_size,
                progress=lambda done, total: bar.update(done - bar.n) if bar else None,
            )
        finally:
            if bar is not None:
                bar.close()
        pairs, margins = oracle.with_leftovers(pairs, margins)
        outcome.bad.update(oracle.bad)
        outcome.pairs, outcome.margins = pairs, margins
        outcome.antisymmetry = oracle.antisymmetry(
            pairs, margins, self.antisymmetry_pairs, self.seed
        )
        outcome.rationales = oracle.examples(self.num_rationales)
        outcome.scores, outcome.valid = recover_scores(
            pairs, margins, n, self.aggregators, self.draw_threshold, sorted(outcome.bad)
        )
        outcome.degree = np.bincount(pairs[np.isfinite(margins)].ravel(), minlength=n)

    def _run_pointwise(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        datamodule: Any,
        journal: Journal,
        outcome: BenchmarkOutcome,
    ) -> None:
        """Pointwise ablation: one ``predict_score`` per video, journaled, no graph."""
        import torch

        from datamodules.pairwise import VideoBatch

        todo = [
            i
            for i in range(len(outcome.names))
            if i not in outcome.bad and i not in journal.state.scores
        ]
        for start in range(0, len(todo), self.batch_size * trainer.world_size):
            chunk = todo[start : start + self.batch_size * trainer.world_size]
            mine = chunk[trainer.global_rank :: trainer.world_size]
            clips, errors = load_clips(datamodule, outcome.name, mine)
            batch = VideoBatch(
                clips=[clips.get(i) for i in mine],
                index=torch.tensor(mine),
                benchmark=[outcome.name] * len(mine),
                name=[outcome.names[i] for i in mine],
                mos=torch.tensor(outcome.mos[mine], dtype=torch.float32),
                error=[errors.get(i) for i in mine],
            )
            values, texts = pl_module.predict_score(batch) if mine else (torch.zeros(0), [])
            local = [
                (i, float(v), t, errors.get(i))
                for i, v, t in zip(mine, values.float().cpu().tolist(), texts)
            ]
            records = []
            for i, value, text, err in (x for part in gather_objects(trainer, local) for x in part):
                if err is not None:
                    records.append(
                        {"type": "bad", "index": i, "name": outcome.names[i], "reason": err}
                    )
                records.append(
                    {
                        "type": "score",
                        "index": i,
                        "name": outcome.names[i],
                        "score": value,
                        "rationale": text,
                    }
                )
            journal.append(records)
        outcome.bad.update(journal.state.bad)
        direct = np.full(len(outcome.names), np.nan)
        for i, record in journal.state.scores.items():
            direct[i] = np.nan if record.get("score") is None else float(record["score"])
        outcome.scores = {"direct": direct}
        outcome.valid = np.isfinite(direct)
        outcome.degree = np.zeros(len(outcome.names), dtype=np.int64)
        outcome.rationales = [
            (outcome.names[i], "", float(direct[i]), r.get("rationale") or "")
            for i, r in list(journal.state.scores.items())[: self.num_rationales]
        ]

    def _copy_journal(self, trainer: Trainer, journal: Journal, stage: str, name: str) -> None:
        if trainer.is_global_zero and journal.path.exists():
            target = self._out_dir(trainer, stage) / (
                "comparisons.jsonl" if stage == "predict" else f"journal_{_slug(name)}.jsonl"
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.resolve() != journal.path.resolve():
                shutil.copyfile(journal.path, target)

    # ------------------------------------------------------------------ metrics and files
    def _result_rows(
        self, outcome: BenchmarkOutcome, stage: str, checkpoint_id: str
    ) -> list[dict[str, Any]]:
        rows = []
        valid = outcome.valid if outcome.valid is not None else np.zeros(len(outcome.names), bool)
        for agg, scores in outcome.scores.items():
            ok = valid & np.isfinite(outcome.mos)
            corr = (
                ranking.correlations(scores[ok], outcome.mos[ok])
                if ok.sum() >= 3
                else {"srcc": np.nan, "plcc": np.nan, "krcc": np.nan, "plcc_logistic": np.nan}
            )
            rows.append(
                {
                    "stage": stage,
                    "benchmark": outcome.name,
                    "group": outcome.group,
                    "aggregator": agg,
                    **{k: corr[k] for k in ("srcc", "plcc", "krcc", "plcc_logistic")},
                    "n_items": len(outcome.names),
                    "n_scored": int(valid.sum()),
                    "n_pairs": int(np.isfinite(outcome.margins).sum()),
                    "n_bad": len(outcome.bad),
                    "antisymmetry": outcome.antisymmetry,
                    "checkpoint_id": checkpoint_id,
                }
            )
        return rows

    def _metrics(self, stage: str) -> dict[str, float]:
        """``<stage>/<bench>/<agg>_srcc|plcc``, antisymmetry and group averages."""
        metrics: dict[str, float] = {}
        for row in self.results:
            for m in tables.METRICS:
                metrics[f"{stage}/{row['benchmark']}/{row['aggregator']}_{m}"] = float(row[m])
            metrics[f"{stage}/{row['benchmark']}/antisymmetry"] = float(row["antisymmetry"])
        layout = tables.column_layout(self.results)
        for agg in {r["aggregator"] for r in self.results}:
            values = tables.metric_values(self.results, agg)
            for group, cols in layout.items():
                for m in tables.METRICS:
                    if cols:
                        metrics[f"{stage}/avg_{group}/{agg}_{m}"] = tables.group_average(
                            values, cols, m
                        )
        return {k: v for k, v in metrics.items() if np.isfinite(v)}

    def _out_dir(self, trainer: Trainer, stage: str) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        base = Path(trainer.log_dir or trainer.default_root_dir)
        return base if stage == "predict" else base / "eval"  # predict: the run directory

    @rank_zero_only
    def _write_outputs(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Results CSV, markdown tables, bad-video list, convergence, figures, leaderboard."""
        out = self._out_dir(trainer, stage)
        out.mkdir(parents=True, exist_ok=True)
        prefix = "val_" if stage == "val" else ""
        bad = [
            {"benchmark": o.name, "index": i, "video": o.names[i], "reason": r}
            for o in self.outcomes.values()
            for i, r in sorted(o.bad.items())
        ]
        lb.write_rows(
            bad, out / f"{prefix}bad_videos.csv", ("benchmark", "index", "video", "reason")
        )
        tables.write_run_info(out / "run_info.json", _run_info(trainer, pl_module))
        if stage == "predict":
            self._write_leaderboards(trainer, out, bad)
            return
        text = tables.write_results(self.results, out, prefix, self.method_name)
        curves = {name: self._convergence(o) for name, o in self.outcomes.items()}
        (out / f"{prefix}convergence.json").write_text(
            json.dumps({k: v.to_dict() for k, v in curves.items() if v is not None}, indent=1)
        )
        _log_figures(trainer, stage, self.outcomes, curves)
        if stage == "test":
            print(f"\nResults ({out}):\n{text}")

    def _convergence(self, outcome: BenchmarkOutcome) -> ranking.ConvergenceResult | None:
        """Fig. 4 protocol: correlations of each aggregator over prefixes of the edge stream."""
        if self.convergence_steps <= 0 or "direct" in outcome.scores:
            return None
        p, m, valid = compact_graph(
            outcome.pairs, outcome.margins, len(outcome.names), sorted(outcome.bad)
        )
        mos = outcome.mos[valid]
        if len(p) < 4 or len(mos) < 3 or not np.isfinite(mos).all():
            return None
        funcs = aggregator_functions(self.draw_threshold)
        funcs["lsq"] = lambda q, v, n: ranking.lsq_solve(q, v, n, warn=False).scores
        with warnings.catch_warnings():  # early prefixes are disconnected by design
            warnings.simplefilter("ignore", RuntimeWarning)
            return ranking.convergence(
                p,
                m,
                mos,
                {a: funcs[a] for a in self.aggregators},
                steps=min(self.convergence_steps, len(p)),
            )

    def _leaderboard(
        self, o: BenchmarkOutcome, anchors: dict[str, float], mos_raw: Any
    ) -> list[dict[str, Any]]:
        """Leaderboard rows of the scored videos: LSQ score, standard error, anchor mapping."""
        n = len(o.names)
        if "direct" in o.scores:  # pointwise model: its own scores, no graph uncertainty
            valid = np.isfinite(o.scores["direct"])
            scores, se = o.scores["direct"][valid], np.full(int(valid.sum()), np.nan)
        else:
            p, m, valid = compact_graph(o.pairs, o.margins, n, sorted(o.bad))
            k = int(valid.sum())
            scores = ranking.lsq_solve(p, m, k, warn=True).scores if len(p) else np.zeros(k)
            se = ranking.score_uncertainty(p, m, k, scores) if len(p) else np.full(k, np.inf)
        idx = np.flatnonzero(valid)
        names = [o.names[i] for i in idx]
        known = (
            np.asarray(mos_raw, dtype=float)[idx]
            if mos_raw is not None
            else np.full(len(idx), np.nan)
        )
        anchor = np.where(np.isfinite(known), known, lb.anchor_mos(names, anchors))
        mapping = lb.fit_affine(scores, anchor) if np.isfinite(anchor).sum() >= 2 else None
        degree = (o.degree if o.degree is not None else np.zeros(n, dtype=int))[idx]
        return lb.leaderboard_rows(
            names,
            scores,
            se,
            degree,
            mos=known if np.isfinite(known).any() else None,
            mapping=mapping,
        )

    def _write_leaderboards(self, trainer: Trainer, out: Path, bad: list[dict[str, Any]]) -> None:
        anchors = lb.read_anchors(self.anchors) if self.anchors else {}
        table = getattr(trainer.datamodule, "anchor_table", lambda: None)()
        if table is not None:
            anchors.update(zip(table.names, np.asarray(table.mos_raw, dtype=float).tolist()))
        several = len(self.outcomes) > 1
        for name, o in self.outcomes.items():
            raw = (
                getattr(trainer.datamodule.eval_sets("predict")[0].table, "mos_raw", None)
                if name == "predict"
                else None
            )
            rows = self._leaderboard(o, anchors, raw)
            scored = {r["video"] for r in rows}
            bad += [{"benchmark": name, "index": i, "video": v, "reason": "no valid comparison "
                     "(every answer failed the response format)"}
                    for i, v in enumerate(o.names) if i not in o.bad and v not in scored]
            path = out / (f"leaderboard_{_slug(name)}.csv" if several else "leaderboard.csv")
            lb.write_rows(rows, path, None if rows else lb.LEADERBOARD_COLUMNS)
            failed = int((~np.isfinite(o.margins)).sum())
            print(
                f"\n{lb.format_summary(rows, [b for b in bad if b['benchmark'] == name], self.top_k)}"
                f"\n{len(o.margins)} comparisons ({failed} failed)\nleaderboard: {path}"
                f"\ncomparisons: {out / 'comparisons.jsonl'}"
            )
        lb.write_rows(bad, out / "bad_videos.csv", ("benchmark", "index", "video", "reason"))

def _checkpoint_id(pl_module: LightningModule) -> str:
    value = getattr(pl_module, "checkpoint_id", None)
    return str(value) if value else f"{type(pl_module).__name__}:unidentified"


def _run_info(trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
    """What identifies a run in the Table 2 collation (model switches, checkpoint)."""
    hp = dict(getattr(pl_module, "hparams", {}))
    keys = (
        "phase",
        "target",
        "readout",
        "reasoning",
        "freeze_head_in_grpo",
        "lambda_aux",
        "init_from",
        "backbone",
    )
    return {
        "checkpoint_id": _checkpoint_id(pl_module),
        "ckpt_path": trainer.ckpt_path,
        **{k: hp[k] for k in keys if k in hp},
    }


def _tensorboard(trainer: Trainer) -> Any:
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def _log_figures(
    trainer: Trainer,
    stage: str,
    outcomes: dict[str, BenchmarkOutcome],
    curves: dict[str, ranking.ConvergenceResult | None],
) -> None:
    """Convergence curves, predicted-vs-MOS scatter and example rationales to TensorBoard."""
    writer = _tensorboard(trainer)
    if writer is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    step = trainer.global_step
    for name, o in outcomes.items():
        curve = curves.get(name)
        if curve is not None:
            fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
            for agg, values in curve.curves.items():
                for ax, metric in zip(axes, ("srcc", "plcc")):
                    ax.plot(curve.edges, values[metric], label=agg)
                    ax.set(xlabel="comparisons (edges)", ylabel=metric.upper(), title=metric)
            axes[0].legend()
            fig.tight_layout()
            writer.add_figure(f"{stage}/{name}/convergence", fig, step)
        main = "direct" if "direct" in o.scores else "lsq"
        if main in o.scores and o.valid is not None and np.isfinite(o.mos[o.valid]).any():
            fig, ax = plt.subplots(figsize=(4, 4))
            ax.scatter(o.scores[main][o.valid], o.mos[o.valid], s=6)
            ax.set(xlabel=f"{main} score", ylabel="MOS", title=name)
            fig.tight_layout()
            writer.add_figure(f"{stage}/{name}/scatter", fig, step)
        text = "\n\n".join(
            f"**{a}** vs **{b}**: margin {m:+.3f}\n\n{r}" for a, b, m, r in o.rationales
        )
        if text:
            writer.add_text(f"{stage}/{name}/rationales", text, step)
    plt.close("all")


def _slug(text: str) -> str:
    """File-name-safe version of an id.

    >>> _slug("ckpt:last.ckpt:0:ab12")
    'ckpt_last.ckpt_0_ab12'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "unnamed"


def _progress_bar(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="pair", dynamic_ncols=True, leave=True)


def _cli(argv: Sequence[str] | None = None) -> int:
    """``python -m callbacks.evaluation tables RUN_DIR... [--names ...] [--out FILE]``."""
    parser = argparse.ArgumentParser(prog="python -m callbacks.evaluation")
    sub = parser.add_subparsers(dest="command", required=True)
    tab = sub.add_parser("tables", help="merge test runs' results.csv into the Table 2 layout")
    tab.add_argument("runs", nargs="+", help="run directories (log_dir, its eval/, or a csv)")
    tab.add_argument("--names", nargs="+", help="row labels, one per run (default: from config)")
    tab.add_argument("--out", help="write the markdown here (default: print only)")
    args = parser.parse_args(argv)
    if args.names and len(args.names) != len(args.runs):
        parser.error(f"--names has {len(args.names)} labels for {len(args.runs)} runs")
    text = tables.collate(args.runs, args.names)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_cli())
