"""Tiny SFT on CPU: pairs/s, peak RSS, and frozen-encoder calls per video in an evaluation pass.

    python benchmarks/train_bench.py [--data data/synthetic] [--steps 40] [--batch 4]

Uses the synthetic benchmark (generated with ``--size tiny`` into ``--data`` when absent). The
evaluation pass simulates the paper's 5N budget: 5N random pairs over the N clips, scored with
``predict_margin`` in batches, once with the encoder cache and once without. Writes
``benchmarks/results/train_bench.json`` and prints a table. CPU timings are noisy when the
machine is shared.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from datamodules.pair_datasets import PairBatch
from datamodules.synthetic import generate_benchmark
from datamodules.synthetic_rationale import make_rationale
from datamodules.video import load_clip
from lightning_modules import training
from lightning_modules.versusq import VersusQModule

MOTION_FRAMES = 16


def load_table(root: Path) -> tuple[pd.DataFrame, list[Any]]:
    """labels.csv with MOS mapped to [1, 5], and every clip decoded once."""
    if not (root / "labels.csv").is_file():
        generate_benchmark(root, seed=0, size="tiny", workers=1)
    df = pd.read_csv(root / "labels.csv")
    df["mos5"] = 1 + 4 * (df["mos"] - df["scale_lo"]) / (df["scale_hi"] - df["scale_lo"])
    clips = [
        load_clip(root / v, num_frames=8, motion_frames=MOTION_FRAMES, size=64, motion_size=32) for v in df["video"]
    ]
    return df, clips


def _info(row: pd.Series) -> dict[str, Any]:
    split = lambda v: [s for s in str(v).split(";") if s and s != "nan"]  # noqa: E731
    return {
        "content": row["content"],
        "distortions": split(row["distortions"]),
        "severities": [float(s) for s in split(row["severities"])],
    }


def pair_batch(df: pd.DataFrame, clips: list[Any], pairs: np.ndarray) -> PairBatch:
    """The ``PairBatch`` of rows ``pairs[:, 0]`` vs ``pairs[:, 1]``."""
    margin = torch.tensor([df.mos5[i] - df.mos5[j] for i, j in pairs], dtype=torch.float32)
    rationale = [make_rationale(_info(df.iloc[i]), _info(df.iloc[j]), float(m)) for (i, j), m in zip(pairs, margin)]
    return PairBatch(
        clips_a=[clips[i] for i, _ in pairs],
        clips_b=[clips[j] for _, j in pairs],
        margin=margin,
        rationale=rationale,
        benchmark=["synthetic"] * len(pairs),
        index_a=torch.tensor(pairs[:, 0]),
        index_b=torch.tensor(pairs[:, 1]),
    )


def random_pairs(rows: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` random ordered pairs of distinct rows, ``(count, 2)``."""
    a = rng.choice(rows, count)
    b = np.array([rng.choice(rows[rows != x]) for x in a])
    return np.stack([a, b], 1)


def train(model: VersusQModule, df: pd.DataFrame, clips: list[Any], steps: int, batch: int) -> dict[str, float]:
    """``steps`` SFT steps on train-split pairs; losses, throughput, held-out head MSE vs zero."""
    rng = np.random.default_rng(0)
    train_rows = np.flatnonzero(df.split.to_numpy() == "train")
    test_rows = np.flatnonzero(df.split.to_numpy() != "train")
    opt = torch.optim.AdamW(training.param_groups(model.model, model.hparams), weight_decay=0.0)
    for g in opt.param_groups:
        g["lr"] = 1e-3
    losses, start = [], time.perf_counter()
    for _ in range(steps):
        out = model.sft_loss(pair_batch(df, clips, random_pairs(train_rows, batch, rng)))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        held = model.sft_loss(pair_batch(df, clips, random_pairs(test_rows, 32, np.random.default_rng(1))))
    return {
        "pairs_per_s": steps * batch / elapsed,
        "loss_first5": float(np.mean(losses[:5])),
        "loss_last5": float(np.mean(losses[-5:])),
        "heldout_head_mse": float(held["reg_mse"]),
        "heldout_zero_mse": float(held["zero_mse"]),
    }


def eval_pass(model: VersusQModule, df: pd.DataFrame, clips: list[Any], cache: bool, batch: int) -> dict[str, float]:
    """5N random pairs through ``predict_margin``; encoder calls per video with/without the cache."""
    net = model.model
    net.cache.clear()
    net.encoders.cache = net.cache if cache else None
    n = len(clips)
    pairs = random_pairs(np.arange(n), 5 * n, np.random.default_rng(2))
    before = net.encoder_calls
    start = time.perf_counter()
    for k in range(0, len(pairs), batch):
        model.predict_margin(pair_batch(df, clips, pairs[k : k + batch]))
    calls = {key: (net.encoder_calls[key] - before[key]) / n for key in before}
    net.encoders.cache = net.cache
    return {
        "videos": n,
        "pairs": len(pairs),
        "vision_calls_per_video": calls["vision"],
        "motion_calls_per_video": calls["motion"],
        "pairs_per_s": len(pairs) / (time.perf_counter() - start),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write the JSON, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/synthetic")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--eval-batch", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/train_bench.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    df, clips = load_table(Path(args.data))
    model = VersusQModule(motion_frames=MOTION_FRAMES, head_hidden=64, max_new_tokens=16)
    result = {"sft": train(model, df, clips, args.steps, args.batch)}
    model.eval()
    result["eval_cache_on"] = eval_pass(model, df, clips, True, args.eval_batch)
    result["eval_cache_off"] = eval_pass(model, df, clips, False, args.eval_batch)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["settings"] = vars(args) | {"torch_threads": torch.get_num_threads(), "clips": len(clips)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{'metric':34s} value")
    for section, values in result.items():
        if isinstance(values, dict) and section != "settings":
            for key, value in values.items():
                print(f"{section + '/' + key:34s} {value:.4g}")
    print(f"{'peak_rss_mb':34s} {result['peak_rss_mb']:.1f}")
    return result


if __name__ == "__main__":
    main()
