"""MC-GRPO speed on CPU with the embedded tiny model: rollouts/s, tokens/s, steps/s, peak RSS.

    python benchmarks/grpo_bench.py [--steps 5] [--pairs 2] [--generations 4] [--max-new-tokens 32]

Writes ``benchmarks/results/grpo_bench.json`` and prints a table. The tiny model is untrained
(random init), so most rollouts run to ``--max-new-tokens``: a worst case for rollout length.
Timings on shared CPUs are noisy; compare runs on the same machine and load only.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch

from callbacks.rollout import RolloutCallback
from datamodules.pair_datasets import PairBatch
from datamodules.video import Clip
from lightning_modules.versusq import VersusQModule

RESULTS = Path(__file__).resolve().parent / "results" / "grpo_bench.json"


def _clip(i: int, motion_frames: int) -> Clip:
    g = torch.Generator().manual_seed(i)
    frames = torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8)
    motion = torch.randint(0, 256, (motion_frames, 3, 32, 32), generator=g, dtype=torch.uint8)
    return Clip(f"v{i}.mp4", f"k{i}", frames, motion, 24.0, 48, 2.0, 32, 32, 0, False, "synthetic")


def _batch(pairs: int, motion_frames: int) -> PairBatch:
    return PairBatch(
        clips_a=[_clip(2 * i, motion_frames) for i in range(pairs)],
        clips_b=[_clip(2 * i + 1, motion_frames) for i in range(pairs)],
        margin=torch.linspace(-1.0, 1.0, pairs),
        rationale=None,
        benchmark=["synthetic"] * pairs,
        index_a=torch.arange(pairs),
        index_b=torch.arange(pairs) + pairs,
    )


def run(steps: int, pairs: int, generations: int, max_new_tokens: int, motion_frames: int) -> dict:
    """Time ``steps`` rollouts and ``steps`` full MC-GRPO steps (rollout + update)."""
    torch.manual_seed(0)
    module = VersusQModule(
        motion_frames=motion_frames, phase="mcgrpo", num_generations=generations, max_new_tokens=max_new_tokens
    )
    module.log_dict = lambda metrics, **kw: None  # no Trainer here
    callback = RolloutCallback(engine="hf")  # G and the token budget are the module's
    callback.setup(SimpleNamespace(global_step=0), module, "fit")  # type: ignore[arg-type]
    batch = _batch(pairs, motion_frames)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-5)
    callback.generate(module, batch)  # warm-up: encoder caches, first-call overheads

    start, tokens, responses = time.perf_counter(), 0, 0
    for _ in range(steps):
        r = callback.generate(module, batch)
        tokens += int(r.response_mask.sum())
        responses += len(r)
    rollout_s = time.perf_counter() - start

    start = time.perf_counter()
    for step in range(steps):
        loss = module.training_step(batch, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step_s = time.perf_counter() - start
    return {
        "rollouts_per_s": responses / rollout_s,
        "rollout_tokens_per_s": tokens / rollout_s,
        "mean_response_tokens": tokens / max(responses, 1),
        "steps_per_s": steps / step_s,
        "prompts_per_s": steps * pairs / step_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> dict:
    """CLI entry: run, write the JSON, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=2, help="prompts per step (B)")
    parser.add_argument("--generations", type=int, default=4, help="rollouts per prompt (G)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--motion-frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figures = run(args.steps, args.pairs, args.generations, args.max_new_tokens, args.motion_frames)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {
        "benchmark": "grpo_bench",
        "device": "cpu",
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "config": config,
        "results": figures,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"MC-GRPO tiny model, CPU x{args.threads}  (B={args.pairs}, G={args.generations}, "
        f"max_new_tokens={args.max_new_tokens}, {args.steps} steps)"
    )
    for key, value in figures.items():
        print(f"  {key:<24} {value:>10.2f}")
    print(f"  -> {args.out}")
    return result


if __name__ == "__main__":
    main()
