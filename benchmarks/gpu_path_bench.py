"""Issue 9's headline figure: how much of the language model 5 SFT steps at lr 1e-5 actually move.

    python benchmarks/gpu_path_bench.py [--data data/bench_synthetic] [--steps 5] [--lr 1e-5]

Runs ``run.py fit --config conf/sft.yaml --config conf/tiny.yaml`` on the tiny model with the GPU
configs' weights dtype and precision put back (``model.dtype: bfloat16`` from conf/model.yaml,
``trainer.precision: bf16-mixed`` from conf/sft.yaml; tiny.yaml sets float32 / 32-true for CPU
speed), in one process, side by side:

* ``before``: the old behaviour, emulated explicitly -- the trainable weights stay in bf16 (the
  float32-master rule ``training.keep_trainable_fp32`` and its guard ``check_trainable_fp32``
  are switched off), so plain AdamW updates bf16 weights under bf16 autocast;
* ``after``: the shipped code and configs (trainable weights held in float32, autocast bf16);
* ``fp32_reference``: ``model.dtype: float32`` with the same precision (the issue's 100 %);
* ``bf16_true``: ``trainer.precision: bf16-true`` (casts the weights, no masters): must be refused.

Measured per run: the fraction of language-model layer weight elements (``*.language_model.
layers.*``) whose stored value changed, the same over every trainable element, the trainable
parameters' dtype and the wall-clock seconds. (Trainable elements that stay put are mostly the
embedding rows of tokens no batch used: no gradient, no AdamW update.) Writes ``benchmarks/results/gpu_path.json`` and
prints a table. Uses the synthetic benchmark (``--size tiny``, generated into ``--data`` when absent).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the checkout

import run  # noqa: E402
from datamodules.synthetic import generate_benchmark  # noqa: E402
from lightning_modules import training  # noqa: E402

LM_LAYERS = ".language_model.layers."
#: The GPU configs' dtype and precision (conf/model.yaml, conf/sft.yaml), over tiny.yaml's CPU ones.
GPU_SETTINGS = ["--model.init_args.dtype=bfloat16", "--trainer.precision=bf16-mixed"]
RUNS: dict[str, dict[str, Any]] = {
    "before": {
        "args": GPU_SETTINGS,
        "old": True,
        "what": "bf16 weights, bf16-mixed, AdamW on bf16 (old behaviour, emulated)",
    },
    "after": {"args": GPU_SETTINGS, "old": False, "what": "shipped: bf16 storage, fp32 trainable, bf16-mixed"},
    "fp32_reference": {
        "args": ["--model.init_args.dtype=float32", "--trainer.precision=bf16-mixed"],
        "old": False,
        "what": "fp32 weights, bf16-mixed",
    },
    "bf16_true": {
        "args": ["--model.init_args.dtype=bfloat16", "--trainer.precision=bf16-true"],
        "old": False,
        "what": "bf16-true (weights cast, no masters): refused",
    },
}


@contextlib.contextmanager
def old_behaviour(enabled: bool) -> Iterator[None]:
    """Switch off the float32-master rule and its guard (the code before issue 9's fix)."""
    if not enabled:
        yield
        return
    with (
        mock.patch.object(training, "keep_trainable_fp32", lambda module: 0),
        mock.patch.object(training, "check_trainable_fp32", lambda *a, **k: None),
    ):
        yield


def data_args(root: Path) -> list[str]:
    """Train on the synthetic train split; no validation (only the optimiser steps matter)."""

    def sets(split: str) -> str:
        return json.dumps(
            [{"name": f"syn_{split}", "label_file": str(root / "labels.csv"), "video_root": str(root), "split": split}]
        )

    return [
        f"--data.init_args.train_sets={sets('train')}",
        f"--data.init_args.val_sets={sets('test')}",
        f"--data.init_args.test_sets={sets('test')}",
        "--trainer.limit_val_batches=0",
    ]


def moved(before: dict[str, torch.Tensor], module: torch.nn.Module) -> tuple[int, int]:
    """(changed elements, elements) of the tensors in ``before`` against the module's now."""
    now = dict(module.named_parameters())
    changed = sum(int((now[n].detach() != t).sum()) for n, t in before.items())
    return changed, sum(t.numel() for t in before.values())


def fit_once(name: str, spec: dict[str, Any], data: Path, steps: int, lr: float, out: Path) -> dict[str, Any]:
    """One ``run.py fit`` (no subcommand run; ``trainer.fit`` called here) and its measurements."""
    args = [
        "--config",
        str(run.CONF / "sft.yaml"),
        "--config",
        str(run.CONF / "tiny.yaml"),
        *spec["args"],
        f"--model.init_args.lr_backbone={lr}",
        "--model.init_args.warmup_steps=0",
        f"--trainer.max_steps={steps}",
        f"--trainer.default_root_dir={out / name}",
        f"--trainer.logger.init_args.save_dir={out / name}",
        *data_args(data),
    ]
    start = time.perf_counter()
    with old_behaviour(spec["old"]):
        cli = run.main(args, run=False)
        model = cli.model
        trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        layers = {n: t for n, t in trainable.items() if LM_LAYERS in n}
        row: dict[str, Any] = {
            "what": spec["what"],
            "args": spec["args"],
            "trainable_dtypes": sorted({str(t.dtype).removeprefix("torch.") for t in trainable.values()}),
        }
        try:
            cli.trainer.fit(model, datamodule=cli.datamodule)
        except ValueError as error:
            return {**row, "refused": str(error).split(":")[0], "seconds": round(time.perf_counter() - start, 1)}
    lm_changed, lm_total = moved(layers, model)
    all_changed, all_total = moved(trainable, model)
    return {
        **row,
        "steps": cli.trainer.global_step,
        "lm_layer_weights_moved": lm_changed / lm_total,
        "lm_layer_elements": lm_total,
        "trainable_moved": all_changed / all_total,
        "train_loss": float(cli.trainer.callback_metrics.get("train/loss", float("nan"))),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the four fits, write the JSON, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/bench_synthetic"))
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_path.json"))
    args = parser.parse_args(argv)
    if not (args.data / "labels.csv").is_file():
        generate_benchmark(args.data, seed=0, size="tiny", workers=1, progress=False)
    with tempfile.TemporaryDirectory(prefix="gpu-path-bench-") as tmp:
        runs = {name: fit_once(name, spec, args.data, args.steps, args.lr, Path(tmp)) for name, spec in RUNS.items()}
    result = {
        "command": "python benchmarks/gpu_path_bench.py " + " ".join(argv or sys.argv[1:]),
        "steps": args.steps,
        "lr_backbone": args.lr,
        "model": "tiny",
        "torch": torch.__version__,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{'run':16s} {'LM layer weights moved':>23s} {'trainable moved':>16s} {'trainable dtype':>16s}  note")
    for name, r in runs.items():
        lm = f"{100 * r['lm_layer_weights_moved']:.1f} %" if "lm_layer_weights_moved" in r else "-"
        tr = f"{100 * r['trainable_moved']:.1f} %" if "trainable_moved" in r else "-"
        print(f"{name:16s} {lm:>23s} {tr:>16s} {','.join(r['trainable_dtypes']):>16s}  {r.get('refused') or r['what']}")
    return result


if __name__ == "__main__":
    main()
