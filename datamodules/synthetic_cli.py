"""``python -m datamodules.synthetic``: generate the synthetic benchmark from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence

from datamodules.synthetic import DESIGNS, PRESETS, TRAIN_FAMILIES, generate_benchmark
from datamodules.synthetic_distort import TRAIN_DISTORTIONS, TRAIN_SOURCES


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, generate the benchmark, print a one-line summary; 0 on success."""
    parser = argparse.ArgumentParser(description="Generate the VersusQ synthetic benchmark.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="default", choices=list(PRESETS))
    parser.add_argument("--workers", type=int, default=2)
    variant = parser.add_argument_group("design (a named design, then per-field overrides)")
    variant.add_argument("--design", default="benchmark", choices=list(DESIGNS), help="crisp: the demo's design")
    variant.add_argument("--families", help=f"comma-separated in-domain content families, of {list(TRAIN_FAMILIES)}")
    variant.add_argument("--distortions", help=f"comma-separated distortion pool, of {list(TRAIN_DISTORTIONS)}")
    variant.add_argument("--max-distortions", type=int, help="at most this many per clip (1-3)")
    variant.add_argument("--scene-bank", type=int, help="K fixed clean scenes per family (0: all new)")
    variant.add_argument("--train-clips", type=int, help="training clips (default: the size preset's)")
    variant.add_argument(
        "--eval-source", choices=TRAIN_SOURCES, help="the one rating source of test, ood_content and ood_distortion"
    )
    variant.add_argument(
        "--held-out-on-top",
        action=argparse.BooleanOptionalAction,
        help="ood_distortion: the unseen distortion on top of 1..max seen ones",
    )
    args = parser.parse_args(argv)
    split = lambda v: tuple(x.strip() for x in v.split(",") if x.strip()) if v else None  # noqa: E731
    try:
        overrides = {
            "families": split(args.families),
            "distortions": split(args.distortions),
            "max_distortions": args.max_distortions,
            "scene_bank": args.scene_bank,
            "train_clips": args.train_clips,
            "eval_source": args.eval_source,
            "held_out_on_top": args.held_out_on_top,
        }
        design = dataclasses.replace(DESIGNS[args.design], **{k: v for k, v in overrides.items() if v is not None})
    except ValueError as err:
        parser.error(str(err))
    start = time.perf_counter()
    labels = generate_benchmark(args.out, args.seed, args.size, args.workers, design=design)
    meta = json.loads((labels.parent / "benchmark.json").read_text())
    splits = ", ".join(f"{k}={v}" for k, v in meta["splits"].items())
    print(
        f"synthetic benchmark ({args.size}, seed {args.seed}): {meta['clips']} clips [{splits}] "
        f"→ {labels} in {time.perf_counter() - start:.1f}s"
    )
    return 0
