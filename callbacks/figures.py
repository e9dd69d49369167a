"""Figures of an evaluation: the Fig. 4 convergence curves (PNG files, ``convergence.json`` and
TensorBoard), score-vs-MOS scatter and example rationales (TensorBoard). Nothing here decides
anything: the curves and their stability points come from :func:`ranking.convergence`.

Rebuild the Fig. 4 PNGs of a finished run from its ``convergence.json`` (no model needed)::

    python -m callbacks.figures fig4 RUN_DIR [--stage test|val] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from callbacks.journal import slug
from callbacks.outcome import BenchmarkOutcome
from ranking import ConvergenceResult

METRICS = ("srcc", "plcc")
STAGE_PREFIX = {"test": "", "val": "val_"}


def tensorboard(trainer: Any) -> Any:
    """The ``SummaryWriter`` of the trainer's TensorBoard logger, or ``None``."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def convergence_figure(curve: ConvergenceResult, title: str = "") -> Any:
    """Fig. 4 panel pair: SRCC and PLCC against the number of comparisons, one line per
    aggregator, its stability point (within ``curve.band`` of the final value from there on)
    marked by a dotted line and a dot and given in the legend ("never" when it is ``None``)."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    for k, (agg, values) in enumerate(curve.curves.items()):
        color = f"C{k}"
        for ax, metric in zip(axes, METRICS):
            at = curve.stable_at.get(agg, {}).get(metric)
            label = f"{agg} (stable @ {'never' if at is None else f'{at:,}'})"
            ax.plot(curve.edges, values[metric], color=color, marker=".", label=label)
            if at is not None:
                ax.axvline(at, color=color, linestyle=":", linewidth=1)
                ax.plot([at], [values[metric][curve.edges.index(at)]], "o", color=color, ms=7)
    for ax, metric in zip(axes, METRICS):
        ax.set(xlabel="comparisons (edges)", ylabel=metric.upper(), title=f"{title} {metric.upper()}".strip())
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7, title_fontsize=7, title=f"stable: within {curve.band:g} of final")
    fig.tight_layout()
    return fig


def write_convergence(out: Path, prefix: str, curves: Mapping[str, ConvergenceResult | None]) -> list[Path]:
    """``<prefix>convergence.json`` (every benchmark with curves) and one
    ``<prefix>fig4_<benchmark>.png`` per benchmark under ``out``; returns the PNG paths."""
    found = {name: c for name, c in curves.items() if c is not None}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{prefix}convergence.json").write_text(json.dumps({k: v.to_dict() for k, v in found.items()}, indent=1))
    return write_fig4(out, prefix, found)


def write_fig4(out: Path, prefix: str, curves: Mapping[str, ConvergenceResult]) -> list[Path]:
    """One ``<prefix>fig4_<benchmark>.png`` per benchmark; returns the paths."""
    paths = []
    for name, curve in curves.items():
        path = out / f"{prefix}fig4_{slug(name)}.png"
        convergence_figure(curve, name).savefig(path, dpi=110)
        paths.append(path)
    return paths


def _scatter_figure(outcome: BenchmarkOutcome, main: str) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4))
    ax = fig.subplots()
    ax.scatter(outcome.scores[main][outcome.valid], outcome.mos[outcome.valid], s=6)
    ax.set(xlabel=f"{main} score", ylabel="MOS", title=outcome.name)
    fig.tight_layout()
    return fig


def _log_curves(writer: Any, tag: str, curve: ConvergenceResult, step: int) -> None:
    """The Fig. 4 figure and its curves as scalars whose step is the number of comparisons."""
    writer.add_figure(f"{tag}/convergence", convergence_figure(curve, tag), step)
    for agg, values in curve.curves.items():
        for metric in METRICS:
            for edges, value in zip(curve.edges, values[metric]):
                if np.isfinite(value):
                    writer.add_scalar(f"{tag}/convergence/{agg}_{metric}", value, edges)


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
    step = trainer.global_step
    for name, o in outcomes.items():
        curve = curves.get(name)
        if curve is not None:
            _log_curves(writer, f"{stage}/{name}", curve, step)
        main = "direct" if "direct" in o.scores else "lsq"
        if main in o.scores and o.valid is not None and np.isfinite(o.mos[o.valid]).any():
            writer.add_figure(f"{stage}/{name}/scatter", _scatter_figure(o, main), step)
        text = "\n\n".join(f"**{a}** vs **{b}**: margin {m:+.3f}\n\n{r}" for a, b, m, r in o.rationales)
        if text:
            writer.add_text(f"{stage}/{name}/rationales", text, step)


def find_convergence(run: str | Path, stage: str = "test") -> Path:
    """``convergence.json`` of a run given its log dir, its ``eval/`` dir, or the file."""
    p, name = Path(run), f"{STAGE_PREFIX[stage]}convergence.json"
    candidates = [p] if p.is_file() else [p / name, p / "eval" / name]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(f"no {name} for run {run} (looked at {', '.join(str(c) for c in candidates)})")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m callbacks.figures fig4 RUN_DIR [--stage test|val] [--out DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m callbacks.figures", description="rebuild a finished run's figures")
    sub = parser.add_subparsers(dest="figure", required=True)
    fig4 = sub.add_parser("fig4", help="Fig. 4 convergence PNGs from convergence.json")
    fig4.add_argument("run", help="run directory (log_dir, its eval/, or the json itself)")
    fig4.add_argument("--stage", choices=sorted(STAGE_PREFIX), default="test")
    fig4.add_argument("--out", help="folder for the PNGs (default: beside the json)")
    args = parser.parse_args(argv)
    source = find_convergence(args.run, args.stage)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
        curves = {name: ConvergenceResult.from_dict(entry) for name, entry in data.items()}
    except (ValueError, AttributeError, TypeError) as err:
        raise ValueError(f"{source}: not a convergence.json ({err})") from err
    out = Path(args.out) if args.out else source.parent
    out.mkdir(parents=True, exist_ok=True)
    for path in write_fig4(out, STAGE_PREFIX[args.stage], curves):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
