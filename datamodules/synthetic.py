"""Synthetic benchmark: real mp4 clips with known quality and source-specific calibration.

The embedded CPU default trains and evaluates on this data. Each clip is a procedural content
family with motion (``synthetic_content``), 1–3 distortions with continuous severity, the last
possibly real libx264 compression at a chosen CRF (``synthetic_distort``), a latent quality
``q ∈ [0, 1]`` from the severities with content masking, and a MOS from one rating *source* with
its own scale, curve and rater noise — the calibration bias pointwise training absorbs.

Splits mirror the paper's Table 1: ``train`` (three sources mixed, like LSVQ), ``test`` (in
domain), and three out-of-domain sets: ``ood_content`` (the unseen ``ripples`` family),
``ood_distortion`` (every clip has an unseen ``flicker`` or ``motion_blur``) and
``ood_calibration`` (an unseen rating source at a different resolution and aspect).

Output folder: ``<split>/<index>.mp4``, ``labels.csv`` with columns ``LABEL_COLUMNS`` (``video``
relative to the folder; ``distortions``/``severities`` ``;``-joined) and ``benchmark.json``
(settings and per-split counts). Same seed → identical labels file and decoded frames.

CLI: ``python -m datamodules.synthetic --out DIR --seed S [--size tiny|default|large]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from datamodules.synthetic_content import motion_level, render_content, texture_level
from datamodules.synthetic_distort import (
    DISTORTIONS,
    HELD_OUT_DISTORTIONS,
    HELD_OUT_SOURCES,
    SOURCES,
    TRAIN_DISTORTIONS,
    TRAIN_SOURCES,
    apply_distortions,
    crf_for_severity,
    latent_quality,
)

GENERATOR_VERSION = 2  # 2: libx264 mbtree=0 (byte-identical encodes)
LABEL_COLUMNS = ("video", "mos", "source", "split", "content", "distortions", "severities", "q", "scale_lo", "scale_hi")
TRAIN_FAMILIES = ("texture_pan", "shapes", "zoom_noise", "scene")
HELD_OUT_FAMILIES = ("ripples",)


@dataclass(frozen=True)
class SplitSpec:
    """What a split draws from: content families, distortion pool, required pool, sources."""

    families: tuple[str, ...]
    distortions: tuple[str, ...]
    required: tuple[str, ...]  # every clip gets exactly one of these (empty: no requirement)
    sources: tuple[str, ...]
    alt_resolution: bool  # use the preset's ``alt_size`` instead of ``size``


SPLITS: dict[str, SplitSpec] = {
    "train": SplitSpec(TRAIN_FAMILIES, TRAIN_DISTORTIONS, (), TRAIN_SOURCES, False),
    "test": SplitSpec(TRAIN_FAMILIES, TRAIN_DISTORTIONS, (), TRAIN_SOURCES, False),
    "ood_content": SplitSpec(HELD_OUT_FAMILIES, TRAIN_DISTORTIONS, (), TRAIN_SOURCES, False),
    "ood_distortion": SplitSpec(TRAIN_FAMILIES, TRAIN_DISTORTIONS, HELD_OUT_DISTORTIONS, TRAIN_SOURCES, False),
    "ood_calibration": SplitSpec(TRAIN_FAMILIES, TRAIN_DISTORTIONS, (), HELD_OUT_SOURCES, True),
}


@dataclass(frozen=True)
class SizePreset:
    """Clip counts per split, clip length, frame rate and resolutions ``(H, W)``."""

    counts: dict[str, int]
    frames: int
    fps: int
    size: tuple[int, int]
    alt_size: tuple[int, int]


def _counts(train: int, other: int) -> dict[str, int]:
    return {"train": train, **{name: other for name in SPLITS if name != "train"}}


PRESETS: dict[str, SizePreset] = {
    "tiny": SizePreset(_counts(16, 4), 16, 8, (64, 64), (80, 96)),
    "default": SizePreset(_counts(160, 40), 32, 16, (128, 128), (144, 192)),
    "large": SizePreset(_counts(1200, 200), 64, 24, (224, 224), (240, 320)),
}


def _preset(size: str) -> SizePreset:
    if size not in PRESETS:
        raise ValueError(f"unknown size {size!r}; allowed: {list(PRESETS)}")
    return PRESETS[size]


def encode_mp4(frames: np.ndarray, path: str | Path, crf: int, fps: int = 16) -> None:
    """Write ``(T, H, W, 3)`` uint8 RGB frames as H.264 (libx264, yuv420p) at a given CRF.

    Single-threaded x264 so that the same frames and CRF always give the same bitstream. The file
    is written under a temporary name and renamed, so a killed run leaves no truncated mp4.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        # mbtree=0: with macroblock-tree rate control this libx264 build gives a different bitstream
        # on every encode of some inputs (e.g. ood_calibration 144x192 clips; 128x128 ones were stable)
        stream.options = {"crf": str(crf), "preset": "medium", "threads": "1", "x264-params": "mbtree=0"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    os.replace(tmp, path)


def _draw_distortions(spec: SplitSpec, beta: tuple[float, float], rng: np.random.Generator) -> dict[str, float]:
    """1–3 distortions (one from ``spec.required`` if set) with Beta-distributed severities."""
    count = int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25]))
    chosen = [str(rng.choice(spec.required))] if spec.required else []
    pool = [d for d in spec.distortions if d not in chosen]
    chosen += [str(d) for d in rng.choice(pool, size=count - len(chosen), replace=False)]
    severities = np.round(rng.beta(*beta, size=len(chosen)), 3).clip(0.001, 1.0)
    order = list(DISTORTIONS)  # canonical application order
    return {d: float(s) for d, s in sorted(zip(chosen, severities), key=lambda p: order.index(p[0]))}


def make_clip(out_dir: str | Path, seed: int, index: int, split: str, size: str) -> dict[str, Any]:
    """Generate, encode and rate one clip; every random choice comes from ``(seed, index)``.

    Args:
        out_dir: benchmark folder; the clip goes to ``<split>/<index:06d>.mp4``.
        seed: benchmark seed.
        index: global clip index.
        split: one of ``SPLITS``.
        size: one of ``PRESETS``.

    Returns:
        The clip's labels row (keys ``LABEL_COLUMNS``).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {list(SPLITS)}")
    preset, spec = _preset(size), SPLITS[split]
    rng = np.random.default_rng([seed, index])
    family = str(rng.choice(spec.families))
    source = SOURCES[spec.sources[index % len(spec.sources)]]  # balanced mix
    distortions = _draw_distortions(spec, source.severity_beta, rng)
    height, width = preset.alt_size if spec.alt_resolution else preset.size
    clean = render_content(family, preset.frames, height, width, rng)  # (T, H, W, 3)
    texture, motion = texture_level(clean), motion_level(clean)
    distorted = apply_distortions(clean, distortions, rng)  # (T, H, W, 3) float
    video = f"{split}/{index:06d}.mp4"
    crf = crf_for_severity(distortions.get("compression"))
    encode_mp4(np.round(distorted).astype(np.uint8), Path(out_dir) / video, crf, preset.fps)
    q = latent_quality(distortions, texture, motion)
    return {
        "video": video,
        "mos": f"{source.rate(q, rng):.4f}",
        "source": source.name,
        "split": split,
        "content": family,
        "distortions": ";".join(distortions),
        "severities": ";".join(f"{s:.3f}" for s in distortions.values()),
        "q": f"{q:.4f}",
        "scale_lo": f"{source.scale_lo:g}",
        "scale_hi": f"{source.scale_hi:g}",
    }


def _make_clip_job(job: tuple[str, int, int, str, str]) -> dict[str, Any]:
    return make_clip(*job)


def _settings(seed: int, size: str) -> dict[str, Any]:
    return {
        "generator": "versusq-synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "preset": asdict(_preset(size)),
    }


def _is_complete(out: Path, settings: dict[str, Any]) -> bool:
    """True when ``out`` holds a finished benchmark made with exactly these settings."""
    meta, labels = out / "benchmark.json", out / "labels.csv"
    if not (meta.is_file() and labels.is_file()):
        return False
    try:
        recorded = json.loads(meta.read_text())
    except json.JSONDecodeError:
        return False
    if {k: recorded.get(k) for k in settings} != json.loads(json.dumps(settings)):
        return False
    with open(labels, newline="") as f:
        rows = list(csv.DictReader(f))
    return len(rows) == recorded.get("clips") and all((out / r["video"]).is_file() for r in rows)


def generate_benchmark(
    out_dir: str | Path, seed: int = 0, size: str = "default", workers: int = 2, progress: bool = True
) -> Path:
    """Generate the synthetic benchmark (or reuse a complete one made with the same settings).

    Args:
        out_dir: output folder (created).
        seed: benchmark seed; the same seed gives identical labels and decoded frames.
        size: ``"tiny"`` (tests, seconds), ``"default"`` (CPU demo) or ``"large"``.
        workers: worker processes (1: in-process).
        progress: show a tqdm progress bar.

    Returns:
        Path of ``labels.csv``.
    """
    preset, settings = _preset(size), _settings(seed, size)
    out = Path(out_dir)
    if _is_complete(out, settings):
        return out / "labels.csv"
    start = time.perf_counter()
    (out / "benchmark.json").unlink(missing_ok=True)  # incomplete until rewritten at the end
    jobs, index = [], 0
    for split, count in preset.counts.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        for stale in (out / split).glob("[0-9]*.mp4*"):
            stale.unlink()
        jobs += [(str(out), seed, index + i, split, size) for i in range(count)]
        index += count
    rows = sorted(_run_jobs(jobs, workers, progress), key=lambda r: r["video"].split("/")[1])
    with open(out / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LABEL_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    meta = {
        **settings,
        "clips": len(rows),
        "labels": "labels.csv",
        "splits": dict(Counter(r["split"] for r in rows)),
        "sources": {name: asdict(SOURCES[name]) for name in sorted({r["source"] for r in rows})},
        "held_out": {
            "content": list(HELD_OUT_FAMILIES),
            "distortions": list(HELD_OUT_DISTORTIONS),
            "sources": list(HELD_OUT_SOURCES),
        },
        "seconds": round(time.perf_counter() - start, 2),
        "workers": workers,
    }
    (out / "benchmark.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out / "labels.csv"


def _run_jobs(jobs: list[tuple], workers: int, progress: bool) -> list[dict[str, Any]]:
    """Run clip jobs in-process or in a spawn pool with single-threaded BLAS per worker."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="synthetic clips", unit="clip", disable=not progress)
    if workers <= 1:
        rows = []
        for job in jobs:
            rows.append(_make_clip_job(job))
            bar.update()
        bar.close()
        return rows
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in saved})  # inherited by the spawned workers
    try:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            rows = []
            for row in pool.imap_unordered(_make_clip_job, jobs, chunksize=2):
                rows.append(row)
                bar.update()
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        bar.close()
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: generate a benchmark and print a one-line summary."""
    parser = argparse.ArgumentParser(description="Generate the VersusQ synthetic benchmark.")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", default="default", choices=list(PRESETS))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    labels = generate_benchmark(args.out, args.seed, args.size, args.workers)
    meta = json.loads((labels.parent / "benchmark.json").read_text())
    splits = ", ".join(f"{k}={v}" for k, v in meta["splits"].items())
    print(
        f"synthetic benchmark ({args.size}, seed {args.seed}): {meta['clips']} clips [{splits}] "
        f"→ {labels} in {time.perf_counter() - start:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
