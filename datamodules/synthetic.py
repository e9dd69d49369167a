"""Synthetic benchmark: real mp4 clips with known quality and source-specific calibration.

The embedded CPU default trains and evaluates on this data. Each clip is a procedural content
family with motion (``synthetic_content``), 1–3 distortions with continuous severity, the last
possibly real libx264 compression at a chosen CRF (``synthetic_distort``), a latent quality
``q ∈ [0, 1]`` from the severities with content masking, and a MOS from one rating *source* with
its own scale, curve and rater noise — the calibration bias pointwise training absorbs.

Splits mirror the paper's Table 1: ``train`` (three sources mixed, like LSVQ), ``test`` (in
domain), and three out-of-domain sets: ``ood_content`` (the unseen ``ripples`` family),
``ood_distortion`` (every clip has an unseen ``flicker`` or ``motion_blur``) and
``ood_calibration`` (an unseen rating source at a different resolution and aspect); ``val`` (in
domain, what ``fit`` validates on, so that no setting is read off a test split).

Output folder: ``<split>/<index>.mp4``, ``labels.csv`` with columns ``LABEL_COLUMNS`` (``video``
relative to the folder; ``distortions``/``severities`` ``;``-joined) and ``benchmark.json``
(settings and per-split counts). Same seed → identical labels file and decoded frames.

CLI: ``python -m datamodules.synthetic --out DIR --seed S [--size tiny|default|small|large]``; a named
design (``--design benchmark|crisp``, ``DESIGNS``; ``make demo`` uses ``--size small --design crisp``)
and per-field overrides (``Design``): ``--families``, ``--distortions``, ``--max-distortions``,
``--scene-bank``, ``--train-clips`` (docs/learning.md).
"""

from __future__ import annotations

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

GENERATOR_VERSION = 3  # 2: libx264 mbtree=0 (byte-identical encodes); 3: a `val` split
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
    # in domain, what fit validates on; last, so that adding it left the earlier splits' clips as they were
    "val": SplitSpec(TRAIN_FAMILIES, TRAIN_DISTORTIONS, (), TRAIN_SOURCES, False),
}


@dataclass(frozen=True)
class Design:
    """Variants of the benchmark's design for learnability experiments (defaults: the benchmark).

    Attributes:
        families: content families of the in-domain splits (train, test, ood_distortion,
            ood_calibration); ``None`` = ``TRAIN_FAMILIES``. ``ood_content`` keeps the held-out ones.
        distortions: training distortion pool of every split; ``None`` = ``TRAIN_DISTORTIONS``.
            ``ood_distortion`` still adds one held-out distortion per clip.
        max_distortions: at most this many distortions per clip (1-3).
        scene_bank: ``K > 0`` draws every clip's clean content from ``K`` fixed scenes per family
            and resolution (few sources x many distortions, as in LIVE or Waterloo-IVC-4K);
            0 renders new content for every clip.
        train_clips: number of training clips (``None``: the size preset's).
        eval_source: one training rating source that rates every clip of ``val``, ``test``,
            ``ood_content`` and ``ood_distortion`` (a real test set is one study: one MOS scale);
            ``None`` mixes the training sources there too; ``ood_calibration`` keeps its own.
        held_out_on_top: ``ood_distortion`` clips get their held-out distortion *on top of*
            1..``max_distortions`` training ones (False: it counts towards ``max_distortions``, so
            with ``max_distortions=1`` a clip's quality would hang on the unseen distortion alone).
    """

    families: tuple[str, ...] | None = None
    distortions: tuple[str, ...] | None = None
    max_distortions: int = 3
    scene_bank: int = 0
    train_clips: int | None = None
    eval_source: str | None = None
    held_out_on_top: bool = False

    def __post_init__(self) -> None:
        if self.families is not None:
            bad = sorted(set(self.families) - set(TRAIN_FAMILIES))
            if bad or not self.families:
                raise ValueError(f"design families {bad or '()'} not allowed; choose from {list(TRAIN_FAMILIES)}")
        if self.distortions is not None:
            bad = sorted(set(self.distortions) - set(TRAIN_DISTORTIONS))
            if bad or not self.distortions:
                raise ValueError(f"design distortions {bad or '()'} not allowed; choose from {list(TRAIN_DISTORTIONS)}")
        if not 1 <= self.max_distortions <= 3:
            raise ValueError(f"max_distortions must be 1-3, got {self.max_distortions}")
        if self.scene_bank < 0:
            raise ValueError(f"scene_bank must be >= 0, got {self.scene_bank}")
        if self.train_clips is not None and self.train_clips < 1:
            raise ValueError(f"train_clips must be >= 1, got {self.train_clips}")
        if self.eval_source is not None and self.eval_source not in TRAIN_SOURCES:
            raise ValueError(f"eval_source {self.eval_source!r} not allowed; choose from {list(TRAIN_SOURCES)}")

    def split(self, name: str) -> SplitSpec:
        """The split's spec under this design."""
        spec = SPLITS[name]
        families = spec.families if spec.families == HELD_OUT_FAMILIES else (self.families or spec.families)
        sources = spec.sources
        if self.eval_source and name != "train" and spec.sources == TRAIN_SOURCES:
            sources = (self.eval_source,)
        return SplitSpec(families, self.distortions or spec.distortions, spec.required, sources, spec.alt_resolution)


DESIGNS: dict[str, Design] = {
    "benchmark": Design(),
    # the embedded default's design (make demo): crisp content, one visible distortion per clip,
    # so that quality is what a small encoder can see; each test split rated by one study, and the
    # unseen distortion of ood_distortion on top of a seen one (docs/learning.md)
    "crisp": Design(
        families=("shapes",),
        distortions=("blur", "noise", "compression"),
        max_distortions=1,
        eval_source="acr5",
        held_out_on_top=True,
    ),
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
    # more, smaller clips: the learnability experiments of docs/learning.md
    "small": SizePreset(_counts(600, 40), 16, 8, (64, 64), (96, 128)),
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


def _draw_distortions(
    spec: SplitSpec, beta: tuple[float, float], rng: np.random.Generator, max_count: int = 3, on_top: bool = False
) -> dict[str, float]:
    """1–``max_count`` distortions (one from ``spec.required`` if set, counted among them unless
    ``on_top``), Beta-distributed severities."""
    weights = np.array([0.4, 0.35, 0.25][:max_count])
    count = int(rng.choice(np.arange(1, max_count + 1), p=weights / weights.sum()))
    chosen = [str(rng.choice(spec.required))] if spec.required else []
    pool = [d for d in spec.distortions if d not in chosen]
    size = max(0, min(count - (0 if on_top else len(chosen)), len(pool)))  # a small design pool caps the count
    chosen += [str(d) for d in rng.choice(pool, size=size, replace=False)]
    severities = np.round(rng.beta(*beta, size=len(chosen)), 3).clip(0.001, 1.0)
    order = list(DISTORTIONS)  # canonical application order
    return {d: float(s) for d, s in sorted(zip(chosen, severities), key=lambda p: order.index(p[0]))}


def make_clip(
    out_dir: str | Path, seed: int, index: int, split: str, size: str, design: Design | None = None
) -> dict[str, Any]:
    """Generate, encode and rate one clip; every random choice comes from ``(seed, index)``.

    Args:
        out_dir: benchmark folder; the clip goes to ``<split>/<index:06d>.mp4``.
        seed: benchmark seed.
        index: global clip index.
        split: one of ``SPLITS``.
        size: one of ``PRESETS``.
        design: variant of the design (``None``: the benchmark's own).

    Returns:
        The clip's labels row (keys ``LABEL_COLUMNS``).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {list(SPLITS)}")
    design = design or Design()
    preset, spec = _preset(size), design.split(split)
    rng = np.random.default_rng([seed, index])
    family = str(rng.choice(spec.families))
    source = SOURCES[spec.sources[index % len(spec.sources)]]  # balanced mix
    distortions = _draw_distortions(spec, source.severity_beta, rng, design.max_distortions, design.held_out_on_top)
    height, width = preset.alt_size if spec.alt_resolution else preset.size
    content_rng = rng
    if design.scene_bank:  # one of K fixed scenes of this family (and resolution)
        scene = int(rng.integers(design.scene_bank))
        family_index = (TRAIN_FAMILIES + HELD_OUT_FAMILIES).index(family)
        content_rng = np.random.default_rng([seed, 7919, family_index, scene, height, width])
    clean = render_content(family, preset.frames, height, width, content_rng)  # (T, H, W, 3)
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


def _make_clip_job(job: tuple[str, int, int, str, str, Design]) -> dict[str, Any]:
    return make_clip(*job)


def _settings(seed: int, size: str, design: Design) -> dict[str, Any]:
    return {
        "design": asdict(design),
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
    out_dir: str | Path,
    seed: int = 0,
    size: str = "default",
    workers: int = 2,
    progress: bool = True,
    design: Design | None = None,
) -> Path:
    """Generate the synthetic benchmark (or reuse a complete one made with the same settings).

    Args:
        out_dir: output folder (created).
        seed: benchmark seed; the same seed gives identical labels and decoded frames.
        size: ``"tiny"`` (tests, seconds), ``"default"`` (CPU demo) or ``"large"``.
        workers: worker processes (1: in-process).
        progress: show a tqdm progress bar.
        design: variant of the design for learnability experiments (``None``: the benchmark's).

    Returns:
        Path of ``labels.csv``.
    """
    design = design or Design()
    preset, settings = _preset(size), _settings(seed, size, design)
    out = Path(out_dir)
    if _is_complete(out, settings):
        return out / "labels.csv"
    start = time.perf_counter()
    (out / "benchmark.json").unlink(missing_ok=True)  # incomplete until rewritten at the end
    jobs, index = [], 0
    counts = {**preset.counts, **({"train": design.train_clips} if design.train_clips else {})}
    for split, count in counts.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        for stale in (out / split).glob("[0-9]*.mp4*"):
            stale.unlink()
        jobs += [(str(out), seed, index + i, split, size, design) for i in range(count)]
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
        "held_out": {"content": HELD_OUT_FAMILIES, "distortions": HELD_OUT_DISTORTIONS, "sources": HELD_OUT_SOURCES},
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
    """CLI: generate a benchmark and print a one-line summary (``datamodules/synthetic_cli.py``)."""
    from datamodules.synthetic_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
