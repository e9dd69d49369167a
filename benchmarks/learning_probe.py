"""Where the embedded default's learning stops: the tiny model with its own vision tower vs an oracle.

Trains the tiny VersusQ model (SFT, the same losses as ``run.py fit``) on the synthetic training
split and scores the LSQ leaderboard of its OWN generated comparisons (5N random pairs per split,
``predict_margin``: greedy rationale -> ``<reg>`` -> head) against the held-out MOS. Two vision
inputs, side by side in one run:

* ``model``: the tiny Qwen3-VL vision tower (trainable), as in ``make demo``;
* ``oracle``: every visual token of a video replaced by ``gain * (q - 0.5) * u`` (``q`` = the
  set's latent quality, ``u`` a fixed random unit vector). Everything after the vision tower --
  the LLM, rationale generation, ``<reg>``, the head, LSQ -- is unchanged.

If the oracle row ranks and the model row does not, the language side of the method learns and
the tiny vision tower is what does not (issue 12)::

    python benchmarks/learning_probe.py --data data/synthetic --steps 300 --reasoning 1
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ranking  # noqa: E402
from datamodules.benchmarks import read_label_csv  # noqa: E402
from datamodules.pair_datasets import DecodeSettings, PairBatch  # noqa: E402
from datamodules.pairs import build_pairs  # noqa: E402
from datamodules.synthetic_rationale import rationale_for_table  # noqa: E402
from lightning_modules.cache import VisionFeatures  # noqa: E402
from lightning_modules.versusq import VersusQModule  # noqa: E402

EVAL_SPLITS = ("test", "ood_content", "ood_distortion", "ood_calibration")


def install_oracle(module: VersusQModule, quality: dict[str, float], gain: float, seed: int) -> None:
    """Replace the vision features of every clip by ``gain * (q - 0.5) * u`` on each token."""
    encoders = module.model.encoders
    real = encoders.vision
    direction = torch.randn(
        module.model.vlm.config.text_config.hidden_size, generator=torch.Generator().manual_seed(seed)
    )
    direction /= direction.norm()

    def oracle(clips: Sequence[Any], device: torch.device, dtype: torch.dtype) -> list[VisionFeatures]:
        out = []
        for feats, clip in zip(real(clips, device, dtype), clips):
            token = (direction * gain * (quality[clip.path] - 0.5)).to(device, dtype)
            out.append(
                VisionFeatures(
                    feats.grid_thw,
                    token.expand_as(feats.embeds).clone(),
                    [torch.zeros_like(d) for d in feats.deepstack],
                )
            )
        return out

    encoders.vision = oracle


def scale_vision(module: VersusQModule, factor: float) -> None:
    """Multiply every visual token (and DeepStack level) by ``factor`` (a probe of token scale)."""
    encoders = module.model.encoders
    real = encoders.vision

    def scaled(clips: Sequence[Any], device: torch.device, dtype: torch.dtype) -> list[VisionFeatures]:
        return [
            VisionFeatures(f.grid_thw, f.embeds * factor, [d * factor for d in f.deepstack])
            for f in real(clips, device, dtype)
        ]

    encoders.vision = scaled


def pair_batch(
    table: Any,
    clips: dict[str, Any],
    a: np.ndarray,
    b: np.ndarray,
    margins: np.ndarray | None,
    rationales: list[str] | None,
) -> PairBatch:
    """A ``PairBatch`` of rows ``a`` vs ``b`` of ``table``."""
    return PairBatch(
        [clips[table.paths[i]] for i in a],
        [clips[table.paths[j]] for j in b],
        None if margins is None else torch.tensor(margins, dtype=torch.float32),
        rationales,
        [table.benchmark] * len(a),
        torch.as_tensor(a),
        torch.as_tensor(b),
    )


@torch.no_grad()
def evaluate(
    module: VersusQModule, tables: dict[str, Any], clips: dict[str, Any], batch: int = 32
) -> dict[str, dict[str, float]]:
    """LSQ SRCC/PLCC of each eval split from 5N random generated comparisons, and the forced share."""
    module.eval()
    out = {}
    for split in EVAL_SPLITS:
        table, rng = tables[split], np.random.default_rng(0)
        n = len(table.paths)
        edges = np.array([rng.choice(n, 2, replace=False) for _ in range(5 * n)])  # (5N, 2)
        values, forced = [], []
        for k in range(0, len(edges), batch):
            a, b = edges[k : k + batch, 0], edges[k : k + batch, 1]
            m, _, f = module.predict_margin(pair_batch(table, clips, a, b, None, None))
            values.append(m.numpy())
            forced.append(f.numpy())
        margins = np.concatenate(values)
        scores = ranking.lsq_solve(edges, margins, n, warn=False).scores
        out[split] = {
            "srcc": float(spearmanr(scores, table.mos)[0]),
            "plcc": float(np.corrcoef(scores, table.mos)[0, 1]),
            "forced_frac": float(np.concatenate(forced).mean()),
        }
    module.train()
    return out


def run(args: argparse.Namespace, vision: str) -> dict[str, Any]:
    """Train one model (``vision``: ``model`` or ``oracle``) and evaluate it every ``eval_every`` steps."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    labels = Path(args.data) / "labels.csv"
    tables = {s: read_label_csv(labels, s, split=s) for s in ("train", *EVAL_SPLITS)}
    decode = DecodeSettings(8, 16, 64, args.motion_size, 4, "auto", 0, motion_crop=args.motion_crop)
    clips: dict[str, Any] = {}
    for split, table in tables.items():
        table.paths = [str(Path(args.data) / name) for name in table.names]
        table.benchmark = split
        clips.update({p: decode.load(p) for p in table.paths})
    module = VersusQModule(
        motion_frames=16,
        head_hidden=64,
        freeze_vision=bool(args.freeze_vision),
        motion_weights=args.motion_weights,
        reasoning=bool(args.reasoning),
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    if vision == "oracle":
        quality = {p: float(q) for t in tables.values() for p, q in zip(t.paths, t.extra["q"])}
        install_oracle(module, quality, args.oracle_gain, args.seed)
    elif args.vision_scale != 1.0:
        scale_vision(module, args.vision_scale)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps)))
    )
    train = tables["train"]
    pairs = build_pairs(train, 20000, seed=args.seed)
    history, start = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        idx = rng.integers(0, len(pairs.margin), args.batch_size)
        a, b, m = pairs.index_a[idx], pairs.index_b[idx], pairs.margin[idx]
        texts = (
            [rationale_for_table(train, int(i), int(j), float(g)) for i, j, g in zip(a, b, m)]
            if args.reasoning and step > args.reasoning_after
            else [""] * len(a)
        )
        loss = module.sft_loss(pair_batch(train, clips, a, b, m, texts))["loss"]
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if step % args.eval_every == 0 or step == args.steps:
            result = evaluate(module, tables, clips)
            history.append({"step": step, "seconds": round(time.perf_counter() - start, 1), **result})
            print(
                f"{vision:>6} step {step:4d}  " + "  ".join(f"{s} {r['srcc']:+.2f}" for s, r in result.items()),
                flush=True,
            )
    return {"vision": vision, "history": history, "final": history[-1]}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/synthetic", help="synthetic benchmark folder")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--reasoning", type=int, default=1, choices=(0, 1))
    ap.add_argument(
        "--reasoning-after",
        type=int,
        default=0,
        help="curriculum: the first K steps without rationales (empty <think>), then with them",
    )
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--oracle-gain", type=float, default=4.0)
    ap.add_argument("--vision", nargs="+", default=["oracle", "model"], choices=("oracle", "model"))
    ap.add_argument(
        "--freeze-vision",
        type=int,
        default=0,
        choices=(0, 1),
        help="1: the tiny vision tower stays at its random initialisation (features cached)",
    )
    ap.add_argument(
        "--motion-weights", help="tiny SlowFast checkpoint of python -m lightning_modules.motion_pretrain (else random)"
    )
    ap.add_argument("--motion-size", type=int, default=64, help="motion clip size (the pre-training's --motion-size)")
    ap.add_argument("--motion-crop", default="native", choices=("resize", "native"), help="data.motion_crop")
    ap.add_argument("--vision-scale", type=float, default=1.0, help="multiply the tower's tokens (probe)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/learning_probe.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # two processes' worth of threads on 2 cores is slower, not faster
    runs = [run(args, v) for v in args.vision]
    print("\nLSQ SRCC from own generations after", args.steps, "SFT steps:")
    print(f"{'vision':>8} " + " ".join(f"{s:>16}" for s in EVAL_SPLITS))
    for r in runs:
        print(f"{r['vision']:>8} " + " ".join(f"{r['final'][s]['srcc']:>+16.3f}" for s in EVAL_SPLITS))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"settings": vars(args), "runs": runs}, indent=1) + "\n")
    print("written:", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
