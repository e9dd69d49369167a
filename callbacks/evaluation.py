"""ComparisonGraphEvaluation: the model as a pairwise oracle over each evaluation benchmark.

At test / predict (and, opt-in, validation) epoch end, for every benchmark of
``trainer.datamodule.eval_sets(stage)`` the callback orchestrates, and computes nothing itself:

    sampler (:mod:`ranking.samplers`) -> oracle (:mod:`callbacks.oracle`: model calls, ranks)
    -> journal (:mod:`callbacks.journal`: every answer persisted before use, resume, lock)
    -> ranking (:func:`ranking.recover_scores`: LSQ / Elo / win-rate / Bradley–Terry)
    -> metrics, tables (:mod:`callbacks.tables`), figures (:mod:`callbacks.figures`) at test,
       the leaderboard (:mod:`callbacks.leaderboard`) at predict.

A default-constructed callback does each stage's job (the module adds one when the trainer has
none); the YAML files only tune it. Collation of several test runs into the paper's Table 2::

    python -m callbacks.tables RUN_DIR... [--names LABEL...] [--out FILE]
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

import ranking
from callbacks import figures, tables
from callbacks import leaderboard as lb
from callbacks.journal import Journal, JournalIdentity, items_digest, slug
from callbacks.oracle import JournaledOracle, score_pointwise
from callbacks.outcome import (
    BAD_COLUMNS,
    BenchmarkOutcome,
    bad_rows,
    convergence_curves,
    metrics,
    result_rows,
)
from ranking import AGGREGATOR_NAMES, AggregatorName, SamplerName

StageName = Literal["val", "test", "predict"]
STAGES: tuple[str, ...] = get_args(StageName)
SAMPLER_NAMES: tuple[str, ...] = get_args(SamplerName)
_LOOP_STAGE = {"val": "validate", "test": "test", "predict": "predict"}


class ComparisonGraphEvaluation(Callback):
    """Sparse comparison-graph evaluation of a pairwise margin model (paper Sec. 3.2, App. A).

    Each stage does its own job: ``test`` (and ``val``) logs SRCC/PLCC per benchmark and
    aggregator, writes the Table 1/2 markdown, the position-bias check and the Fig. 4
    convergence curves; ``predict`` writes the LSQ leaderboard (no extra position-bias queries,
    no curves: there is no MOS to converge to).

    Args:
        sampler: ``"appendix_a"`` (App. A as written), ``"robust"`` (App. A pairing in a
            frame that keeps the graph connected), ``"random"`` (near-regular) or ``"active"``;
            see :mod:`ranking.samplers`. ``None`` (default): ``appendix_a`` at val/test -- the
            paper's protocol; it ties ``robust`` on LSQ and does not handicap Elo / win-rate
            (README, score recovery) -- and ``robust`` at predict, where a leaderboard needs
            every score on one scale.
        budget_per_item: comparisons per video; the budget is ``round(budget_per_item * N)``
            (5N in the paper).
        batch_size: pairs per sampler round, split over ranks (each rank answers its share).
        seed: sampler seed.
        aggregators: score recoveries reported at val/test (``lsq``, ``elo``, ``winrate``,
            ``bt``); the predict leaderboard is always LSQ.
        draw_threshold: ``|margin|`` below this is a draw for Elo / win-rate / BT (0.2).
        symmetrize: ask every pair in both orders and use ``(m(i,j) - m(j,i)) / 2``.
        antisymmetry_pairs: at val/test without ``symmetrize``, how many answered pairs are
            asked again in the reverse order to measure the position bias ``|m(i,j) + m(j,i)|``.
        stages: where to run: any of ``val`` (expensive: opt-in), ``test``, ``predict``.
        output_dir: where results go (default ``<log_dir>/eval``; at predict ``<log_dir>``).
        journal_dir: where journals live (default ``<default_root_dir>/journals``); a journal's
            file name carries the digest of everything that changes a comparison, so a rerun
            of the same command resumes it and any other setting starts a new one.
        lock_timeout: seconds to wait when another run is using the same journal (0: stop at
            once with an error naming that run).
        convergence_steps: prefixes for the Fig. 4 convergence curves at val/test (0 = skip);
            written as ``convergence.json`` (with each aggregator's stability point) and
            ``fig4_<bench>.png``, and logged to TensorBoard.
        num_rationales: rationales shown as TensorBoard text per benchmark.
        top_k: leaderboard rows printed at the end of predict.
        progress: show a tqdm bar with ETA over comparisons.
        method_name: row label of the Table 1 markdown.
    """

    def __init__(
        self,
        sampler: SamplerName | None = None,
        budget_per_item: float = 5.0,
        batch_size: int = 16,
        seed: int = 0,
        aggregators: Sequence[AggregatorName] = AGGREGATOR_NAMES,
        draw_threshold: float = 0.2,
        symmetrize: bool = False,
        antisymmetry_pairs: int = 32,
        stages: Sequence[StageName] = ("test", "predict"),
        output_dir: str | None = None,
        journal_dir: str | None = None,
        lock_timeout: float = 0.0,
        convergence_steps: int = 20,
        num_rationales: int = 4,
        top_k: int = 10,
        progress: bool = True,
        method_name: str = "VersusQ (ours)",
    ) -> None:
        super().__init__()
        for what, values, allowed in (
            ("sampler", [sampler] if sampler is not None else [], SAMPLER_NAMES),
            ("aggregators", aggregators, AGGREGATOR_NAMES),
            ("stages", stages, STAGES),
        ):
            unknown = [v for v in values if v not in allowed]
            if unknown:
                raise ValueError(f"{what}: unknown {unknown}; allowed: {list(allowed)}")
        if budget_per_item <= 0 or batch_size <= 0 or lock_timeout < 0:
            raise ValueError(
                "budget_per_item and batch_size must be > 0 and lock_timeout >= 0, got "
                f"{budget_per_item}, {batch_size}, {lock_timeout}"
            )
        self.sampler, self.budget_per_item, self.batch_size = sampler, budget_per_item, batch_size
        self.seed, self.aggregators, self.draw_threshold = seed, list(aggregators), draw_threshold
        self.symmetrize, self.antisymmetry_pairs = symmetrize, antisymmetry_pairs
        self.stages, self.output_dir, self.journal_dir = list(stages), output_dir, journal_dir
        self.lock_timeout, self.convergence_steps = lock_timeout, convergence_steps
        self.num_rationales, self.top_k, self.progress = num_rationales, top_k, progress
        self.method_name = method_name
        self.encode_bad: dict[tuple[str, int], str] = {}
        self.outcomes: dict[str, BenchmarkOutcome] = {}
        self.results: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ Lightning hooks
    def sampler_for(self, stage: str) -> SamplerName:
        """The sampler of ``stage``: the configured one, else App. A (val/test) or robust (predict)."""
        if self.sampler is not None:
            return self.sampler
        return "robust" if stage == "predict" else "appendix_a"

    def _reset(self, *_: Any) -> None:
        self.encode_bad = {}

    on_validation_epoch_start = on_test_epoch_start = on_predict_epoch_start = _reset

    def _collect_bad(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any) -> None:
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
        _warn_untrained(trainer, pl_module, stage)
        model = model_identity(pl_module)  # once: it may hash the weights
        self.outcomes, self.results = {}, []
        for eval_set in datamodule.eval_sets(_LOOP_STAGE[stage]):
            outcome = self.run_benchmark(trainer, pl_module, eval_set, stage, model)
            self.outcomes[outcome.name] = outcome
            self.results += result_rows(outcome, stage, checkpoint_id(pl_module))
        if stage != "predict":  # Lightning forbids logging in predict
            pl_module.log_dict(metrics(self.results, self.outcomes, stage), sync_dist=False)
        self._write_outputs(trainer, pl_module, stage)

    def run_benchmark(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        eval_set: Any,
        stage: str,
        model: dict[str, Any],
    ) -> BenchmarkOutcome:
        """Comparisons (or pointwise scores), journal and score recovery for one set."""
        table, datamodule = eval_set.table, trainer.datamodule
        names = [str(x) for x in table.names]
        n = len(names)
        outcome = BenchmarkOutcome(
            eval_set.name,
            tables.group_of(getattr(eval_set, "group", None), eval_set.name),
            names,
            np.asarray(getattr(table, "mos", np.full(n, np.nan)), dtype=np.float64),
            {i: r for (b, i), r in self.encode_bad.items() if b == eval_set.name},
            mos_raw=getattr(table, "mos_raw", None),
        )
        pointwise = getattr(pl_module, "hparams", {}).get("target", "pairwise") == "pointwise"
        identity = JournalIdentity(
            model=model,
            benchmark=eval_set.name,
            num_items=n,
            items_digest=items_digest(names),
            sampler="pointwise" if pointwise else self.sampler_for(stage),
            seed=self.seed,
            budget=n if pointwise else int(round(self.budget_per_item * n)),
            symmetrize=self.symmetrize and not pointwise,
        )
        with self._open_journal(trainer, identity, checkpoint_id(pl_module)) as journal:
            if pointwise:
                score_pointwise(trainer, pl_module, datamodule, journal, outcome, self.batch_size, self.num_rationales)
            else:
                self._run_pairwise(trainer, pl_module, journal, outcome, stage)
            self._copy_journal(trainer, journal, stage, eval_set.name)
        return outcome

    def _open_journal(self, trainer: Trainer, identity: JournalIdentity, label: str) -> Journal:
        """Rank 0 opens (locks, resumes) the file; the other ranks receive its state."""
        root = Path(self.journal_dir or Path(trainer.default_root_dir) / "journals")
        path = root / identity.file_name
        journal: Journal | None = None
        error: Exception | None = None
        if trainer.is_global_zero:
            try:
                journal = Journal(path, identity, label, lock_timeout=self.lock_timeout)
            except Exception as err:  # any failure: re-raised on every rank, none left waiting
                error = err
        state = journal.state if journal is not None else None
        state, error = trainer.strategy.broadcast((state, error), src=0)
        if error is not None:
            raise error
        return journal or Journal(path, identity, label, enabled=False, state=state)

    def _run_pairwise(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        journal: Journal,
        outcome: BenchmarkOutcome,
        stage: str,
    ) -> None:
        n, usable = len(outcome.names), len(outcome.names) - len(outcome.bad)
        if usable < 2:
            rank_zero_warn(f"{stage}/{outcome.name}: fewer than 2 decodable videos; skipped")
            return
        exclude = sorted(outcome.bad)
        sampler = ranking.SAMPLERS[self.sampler_for(stage)](n, seed=self.seed, exclude=np.array(exclude, int))
        oracle = JournaledOracle(
            trainer,
            pl_module,
            trainer.datamodule,
            journal,
            outcome.names,
            sampler,
            self.batch_size,
        )
        oracle.record_bad(outcome.bad)
        budget = journal.identity.budget
        bar = _progress_bar(
            self.progress and trainer.is_global_zero, min(budget, usable * (usable - 1) // 2), f"{stage} {outcome.name}"
        )
        try:
            pairs, margins = ranking.run_comparisons(
                oracle,
                n,
                budget,
                sampler,
                self.batch_size,
                progress=lambda done, total: bar.update(done - bar.n) if bar else None,
            )
        finally:
            if bar is not None:
                bar.close()
        pairs, margins = oracle.with_leftovers(pairs, margins)
        outcome.bad.update(oracle.bad)
        outcome.pairs, outcome.margins, outcome.forced = pairs, margins, oracle.forced(pairs)
        if stage != "predict":  # a leaderboard reports no position bias: no extra model calls
            outcome.antisymmetry = oracle.antisymmetry(pairs, margins, self.antisymmetry_pairs, self.seed)
        outcome.rationales = oracle.examples(self.num_rationales)
        aggregators = ["lsq"] if stage == "predict" else self.aggregators
        outcome.recovery = ranking.recover_scores(
            pairs, margins, n, aggregators, self.draw_threshold, sorted(outcome.bad)
        )
        outcome.scores, outcome.valid = outcome.recovery.scores, outcome.recovery.valid
        outcome.degree = np.bincount(pairs[np.isfinite(margins)].ravel(), minlength=n)

    def _copy_journal(self, trainer: Trainer, journal: Journal, stage: str, name: str) -> None:
        if trainer.is_global_zero and journal.path.exists():
            target = self._out_dir(trainer, stage) / (
                "comparisons.jsonl" if stage == "predict" else f"journal_{slug(name)}.jsonl"
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.resolve() != journal.path.resolve():
                shutil.copyfile(journal.path, target)

    # ------------------------------------------------------------------ metrics and files
    def _out_dir(self, trainer: Trainer, stage: str) -> Path:
        if self.output_dir:
            return Path(self.output_dir)
        base = Path(trainer.log_dir or trainer.default_root_dir)
        return base if stage == "predict" else base / "eval"  # predict: the run directory

    @rank_zero_only
    def _write_outputs(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Run info, then at predict the leaderboards, else the results CSV, markdown tables,
        bad-video list, Fig. 4 curves (``convergence.json``, ``fig4_<bench>.png``) and figures."""
        out = self._out_dir(trainer, stage)
        out.mkdir(parents=True, exist_ok=True)
        tables.write_run_info(out / "run_info.json", _run_info(trainer, pl_module))
        if stage == "predict":
            table = getattr(trainer.datamodule, "anchor_table", lambda: None)()
            anchors = {} if table is None else dict(zip(table.names, map(float, table.mos_raw)))
            lb.write_leaderboards(self.outcomes, out, anchors, self.top_k)
            return
        prefix = "val_" if stage == "val" else ""
        tables.write_csv(bad_rows(self.outcomes), out / f"{prefix}bad_videos.csv", BAD_COLUMNS)
        text = tables.write_results(self.results, out, prefix, self.method_name)
        curves = {
            name: convergence_curves(o, self.aggregators, self.convergence_steps, self.draw_threshold)
            for name, o in self.outcomes.items()
        }
        figures.write_convergence(out, prefix, curves)
        figures.log_figures(trainer, stage, self.outcomes, curves)
        if stage == "test":
            print(f"\nResults ({out}):\n{text}")


# ---------------------------------------------------------------------- helpers
def checkpoint_id(pl_module: LightningModule) -> str:
    """Display label of the weights (``pl_module.checkpoint_id``)."""
    value = getattr(pl_module, "checkpoint_id", None)
    return str(value) if value else f"{type(pl_module).__name__}:unidentified"


def model_identity(pl_module: LightningModule) -> dict[str, Any]:
    """The model's part of a journal identity: ``pl_module.comparison_identity()``, or
    ``{"checkpoint_id": ...}`` for modules without it.

    Raises:
        ValueError: the identity is not JSON-serialisable (it is hashed and stored as JSON).
    """
    method = getattr(pl_module, "comparison_identity", None)
    identity = dict(method()) if callable(method) else {"checkpoint_id": checkpoint_id(pl_module)}
    try:
        json.dumps(identity, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{type(pl_module).__name__}.comparison_identity() must be JSON-serialisable: {err}") from err
    return identity


def _warn_untrained(trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
    if (
        getattr(trainer, "ckpt_path", None) is None
        and stage != "val"
        and not getattr(pl_module, "hparams", {}).get("init_from")
    ):
        rank_zero_warn(
            f"{stage}: no --ckpt_path and no model.init_from: running the model as "
            "initialised; the scores only check the setup, they measure nothing"
        )


def _run_info(trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
    """What identifies a run in the Table 2 collation (model switches, checkpoint)."""
    hp = dict(getattr(pl_module, "hparams", {}))
    keys = ("phase", "target", "readout", "reasoning", "freeze_head_in_grpo", "lambda_aux", "init_from", "backbone")
    return {
        "checkpoint_id": checkpoint_id(pl_module),
        "ckpt_path": trainer.ckpt_path,
        **{k: hp[k] for k in keys if k in hp},
    }


def _progress_bar(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="pair", dynamic_ncols=True, leave=True)
