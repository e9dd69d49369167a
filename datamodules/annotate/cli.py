"""``python -m datamodules.annotate {pairs,run}``: pair design to CSV, then annotation to JSONL."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from collections.abc import Sequence

from datamodules.annotate.client import ChatClient
from datamodules.annotate.descriptors import margin_descriptor
from datamodules.annotate.pairs_csv import PairRow, read_pairs, write_pairs
from datamodules.annotate.prompt import DEFAULT_TEMPLATE, INPUTS, load_template
from datamodules.annotate.records import read_records
from datamodules.annotate.runner import RunSettings, annotate_pairs
from datamodules.benchmarks import BENCHMARKS
from datamodules.pairs import build_present_pairs
from datamodules.pairwise import BenchmarkSpec, read_spec

__all__ = ["main", "design_pairs"]


def design_pairs(
    benchmark: str,
    label_file: str | None,
    video_root: str | None,
    split: str | None,
    num_pairs: int,
    seed: int,
    group_key: str | None = "source",
) -> list[PairRow]:
    """The SFT pair design of one training set, as rows to annotate.

    The table is read exactly as ``data.init_args.train_sets`` reads it (:func:`read_spec`) and
    the pairs are :func:`build_present_pairs` -- what SFT samples with ``pair_seed=seed`` and
    ``num_train_pairs=num_pairs`` when this is its only training set.
    """
    table = read_spec(
        BenchmarkSpec(name=benchmark, benchmark=benchmark, label_file=label_file, video_root=video_root, split=split)
    )
    if table.missing:
        print(
            f"{len(table.missing)} of {len(table)} listed videos are not under {video_root} "
            f"(e.g. {table.missing[0]}); pairs use the other videos",
            file=sys.stderr,
        )
    pl = build_present_pairs(table, num_pairs, seed=seed, group_key=group_key)
    mos = table.mos.tolist()
    return [
        PairRow(table.names[a], table.names[b], mos[a], mos[b], benchmark)
        for a, b in zip(pl.index_a.tolist(), pl.index_b.tolist())
    ]


def _pairs_command(args: argparse.Namespace) -> int:
    rows = design_pairs(
        args.benchmark, args.label_file, args.video_root, args.split, args.num_pairs, args.seed, args.group_key or None
    )
    write_pairs(args.out, rows)
    words = Counter(margin_descriptor(r.margin) for r in rows)
    print(
        f"{len(rows)} pairs of {args.benchmark} (seed {args.seed}) -> {args.out}; "
        + ", ".join(f"{w} {n}" for w, n in sorted(words.items()))
    )
    return 0


def _warn_mixed(out: str, model: str, version: str) -> None:
    """Say so when the file already holds records of another annotator or template."""
    seen = Counter((r.get("model"), r.get("template")) for r in read_records(out).values())
    other = {k: n for k, n in seen.items() if k != (model, version)}
    if other:
        print(
            f"note: {out} already holds records of other (model, template): {other}; they are "
            "kept, and their pairs are not sent again",
            file=sys.stderr,
        )


def _run_command(args: argparse.Namespace) -> int:
    template = load_template(args.template)
    client = ChatClient(
        args.base_url,
        args.model,
        os.environ.get(args.api_key_env, ""),
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        timeout=args.timeout,
        max_retries=args.max_retries,
        backoff=args.backoff,
    )
    settings = RunSettings(
        args.input,
        args.num_frames,
        args.frame_size or None,
        args.attempts,
        args.concurrency,
        args.video_root,
        args.retry_failed,
    )
    pairs = read_pairs(args.pairs)
    _warn_mixed(args.out, args.model, template.version)
    try:
        total, run = annotate_pairs(pairs, args.out, client, template, settings, progress=not args.no_progress)
    except KeyboardInterrupt:
        done = read_records(args.out)
        print(
            f"\ninterrupted; {sum(p.key in done for p in pairs)} of {len(pairs)} pairs are "
            f"recorded in {args.out}; rerun the same command to go on",
            file=sys.stderr,
        )
        return 130
    print(f"this run : {run}")
    print(f"{args.out}: {total}")
    return 0 if total.pending == 0 else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m datamodules.annotate", description="Rationale annotation for SFT (docs/annotation.md)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pairs", help="write the SFT pair design of a benchmark as a pairs CSV")
    p.add_argument("--benchmark", required=True, choices=[*BENCHMARKS, "synthetic"])
    p.add_argument("--label-file", default=None, help="label file (default: the bundled list)")
    p.add_argument("--video-root", default=None, help="video folder: pairs use the videos found there")
    p.add_argument("--split", default=None, help="keep rows of this split (csv / synthetic lists)")
    p.add_argument("--num-pairs", type=int, required=True, help="the SFT num_train_pairs (paper: 18000)")
    p.add_argument("--seed", type=int, default=0, help="the SFT data.init_args.pair_seed")
    p.add_argument("--group-key", default="source", help="the SFT pair_group_key ('' for none)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_pairs_command)
    r = sub.add_parser("run", help="annotate a pairs CSV into a rationale JSONL (resumable)")
    r.add_argument("--pairs", required=True, help="CSV from `pairs` (video_a, video_b, mos_a, mos_b)")
    r.add_argument("--out", required=True, help="JSONL, appended; pairs already in it are skipped")
    r.add_argument("--base-url", required=True, help="OpenAI-compatible root, e.g. http://host:8000/v1")
    r.add_argument("--model", required=True, help="model name the endpoint serves")
    r.add_argument("--video-root", default=None, help="folder the video names are relative to")
    r.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    r.add_argument("--input", default="frames", choices=INPUTS, help="JPEG frames or the video file")
    r.add_argument("--api-key-env", default="OPENAI_API_KEY", help="env var holding the API key")
    r.add_argument("--num-frames", type=int, default=8, help="frames per video (--input frames)")
    r.add_argument("--frame-size", type=int, default=448, help="short side of frames (0: native)")
    r.add_argument("--attempts", type=int, default=3, help="replies per pair before 'rejected'")
    r.add_argument("--max-retries", type=int, default=6, help="retries of a transient HTTP failure")
    r.add_argument("--backoff", type=float, default=2.0, help="first retry wait, seconds (doubles)")
    r.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    r.add_argument("--temperature", type=float, default=0.7)
    r.add_argument("--max-tokens", type=int, default=1024, help="completion cap per request")
    r.add_argument("--template", default=str(DEFAULT_TEMPLATE), help="prompt template file")
    r.add_argument("--retry-failed", action="store_true", help="send failed pairs again")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=_run_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (1: pairs still pending, 130: interrupted)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args))
