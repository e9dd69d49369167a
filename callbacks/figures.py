"""TensorBoard figures of an evaluation: convergence curves (Fig. 4), score-vs-MOS scatter,
example rationales. Nothing here decides anything; without a TensorBoard logger it does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from callbacks.outcome import BenchmarkOutcome
from ranking import ConvergenceResult


def tensorboard(trainer: Any) -> Any:
    """The ``SummaryWriter`` of the trainer's TensorBoard logger, or ``None``."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def _convergence_figure(curve: ConvergenceResult) -> Any:
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for agg, values in curve.curves.items():
        for ax, metric in zip(axes, ("srcc", "plcc")):
            ax.plot(curve.edges, values[metric], label=agg)
            ax.set(xlabel="comparisons (edges)", ylabel=metric.upper(), title=metric)
    axes[0].legend()
    fig.tight_layout()
    return fig


def _scatter_figure(outcome: BenchmarkOutcome, main: str) -> Any:
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(outcome.scores[main][outcome.valid], outcome.mos[outcome.valid], s=6)
    ax.set(xlabel=f"{main} score", ylabel="MOS", title=outcome.name)
    fig.tight_layout()
    return fig


def log_figures(
    trainer: Any,
    stage: str,
    outcomes: Mapping[str, BenchmarkOutcome],
    curves: Mapping[str, ConvergenceResult | None],
) -> None:
    """Convergence curves, predicted-vs-MOS scatter and example rationales to TensorBoard."""
    writer = tensorboard(trainer)
    if writer is None:
        return
    import matplotlib

    matplotlib.use("Agg")  # headless: figures are rendered to images, never shown
    from matplotlib import pyplot as plt

    step = trainer.global_step
    for name, o in outcomes.items():
        curve = curves.get(name)
        if curve is not None:
            writer.add_figure(f"{stage}/{name}/convergence", _convergence_figure(curve), step)
        main = "direct" if "direct" in o.scores else "lsq"
        if main in o.scores and o.valid is not None and np.isfinite(o.mos[o.valid]).any():
            writer.add_figure(f"{stage}/{name}/scatter", _scatter_figure(o, main), step)
        text = "\n\n".join(
            f"**{a}** vs **{b}**: margin {m:+.3f}\n\n{r}" for a, b, m, r in o.rationales
        )
        if text:
            writer.add_text(f"{stage}/{name}/rationales", text, step)
    plt.close("all")
