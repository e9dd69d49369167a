"""``PairwiseVideoDataModule``: from label files and video folders to model-ready batches.

* **fit** — training items are *pairs* (:class:`PairBatch`: two decoded clips, the target margin
  ``m* = MOS_a - MOS_b`` and, for SFT with reasoning, the rationale text); in ``mode="pointwise"``
  (the paper's pointwise ablation) they are single videos with their MOS (:class:`VideoBatch`).
  Validation yields held-out pairs of the ``val_sets`` (teacher-forced losses).
* **test / predict** — items are *single videos* (:class:`VideoBatch`); the
  ``ComparisonGraphEvaluation`` callback forms the pairs itself through ``ranking/`` and fetches
  clips with :meth:`PairwiseVideoDataModule.get_clip`.

Videos are decoded in ``Dataset.__getitem__`` (never in the module). A video that cannot be decoded
is reported with its path: in training it is skipped (the next valid item is used) when
``skip_bad_videos`` is set, else the error propagates; in evaluation it becomes ``clip=None`` with
the reason in ``error`` so the callback can list it and keep going.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from datamodules.benchmarks import VideoTable, read_benchmark
from datamodules.pairs import PairList, build_pairs, pairs_from_names
from datamodules.video import Clip, VideoDecodeError, list_videos, load_clip

__all__ = ["BenchmarkSpec", "EvalSet", "PairBatch", "VideoBatch", "PairwiseVideoDataModule"]


@dataclass
class BenchmarkSpec:
    """One label list (+ video folder) as written in YAML.

    Attributes:
        name: display/log name (``test/<name>/lsq_srcc``).
        benchmark: reader name for :func:`datamodules.benchmarks.read_benchmark` (``csv`` for the
            synthetic benchmark and users' own lists; ``synthetic`` is an alias of ``csv``).
        label_file: label file; ``None`` uses the list bundled with the package.
        video_root: folder the label file's video names are relative to.
        split: keep only rows of this split (LSVQ lists, synthetic ``split`` column).
        group: ``in_domain`` or ``out_of_domain`` (averages in the result tables).
    """

    name: str
    benchmark: str = "csv"
    label_file: str | None = None
    video_root: str | None = None
    split: str | None = None
    group: str = "in_domain"


@dataclass
class EvalSet:
    """A benchmark evaluated by the comparison-graph callback."""

    name: str
    table: VideoTable
    group: str


@dataclass
class VideoBatch:
    """Single videos (evaluation / prediction items, pointwise training)."""

    clips: list[Clip | None]
    index: torch.Tensor  # (B,) long, row in the benchmark's VideoTable
    benchmark: list[str]
    name: list[str]
    mos: torch.Tensor  # (B,) float32, nan when unknown
    error: list[str | None]

    def __len__(self) -> int:
        return len(self.clips)


@dataclass
class PairBatch:
    """Ordered video pairs: the model sees ``a`` first and predicts ``MOS_a - MOS_b``."""

    clips_a: list[Clip]
    clips_b: list[Clip]
    margin: torch.Tensor | None  # (B,) float32
    rationale: list[str] | None
    benchmark: list[str]
    index_a: torch.Tensor  # (B,) long
    index_b: torch.Tensor  # (B,) long

    def __len__(self) -> int:
        return len(self.clips_a)


@dataclass
class _DecodeSettings:
    """How videos are decoded, plus an LRU of decoded clips.

    Decoding dominates a tiny-model training step on CPU (~0.17 s per 32-frame clip), and a
    training epoch shows each video ~2·pairs/videos times, so decoded clips are kept (per process:
    each DataLoader worker holds its own LRU). ``cache_size=0`` disables it.
    """

    num_frames: int
    motion_frames: int
    size: int | None
    motion_size: int | None
    alpha: int
    backend: str
    cache_size: int = 0
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def load(self, path: str) -> Clip:
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        clip = load_clip(path, num_frames=self.num_frames, motion_frames=self.motion_frames,
                         size=self.size, motion_size=self.motion_size, alpha=self.alpha,
                         backend=self.backend)
        if self.cache_size > 0:
            self._cache[path] = clip
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return clip


@dataclass
class _BadVideos:
    """Paths that failed to decode, each warned about once."""

    seen: dict[str, str] = field(default_factory=dict)

    def add(self, err: VideoDecodeError) -> None:
        path = str(getattr(err, "path", "?"))
        if path not in self.seen:
            self.seen[path] = str(getattr(err, "reason", err))
            warnings.warn(f"skipping undecodable video {path}: {self.seen[path]}", stacklevel=3)


class PairDataset(Dataset):
    """Pairs of one table; decodes both clips per item."""

    def __init__(self, table: VideoTable, pairs: PairList, rationales: list[str] | None,
                 decode: _DecodeSettings, skip_bad: bool) -> None:
        self.table, self.pairs, self.rationales = table, pairs, rationales
        self.decode, self.skip_bad, self.bad = decode, skip_bad, _BadVideos()

    def __len__(self) -> int:
        return len(self.pairs)

    def _item(self, k: int) -> dict[str, Any]:
        a, b = int(self.pairs.index_a[k]), int(self.pairs.index_b[k])
        return {"clip_a": self.decode.load(self.table.paths[a]),
                "clip_b": self.decode.load(self.table.paths[b]),
                "margin": float(self.pairs.margin[k]), "index_a": a, "index_b": b,
                "rationale": None if self.rationales is None else self.rationales[k],
                "benchmark": self.table.benchmark}

    def __getitem__(self, k: int) -> dict[str, Any]:
        for attempt in range(len(self)):
            try:
                return self._item((k + attempt) % len(self))
            except VideoDecodeError as err:
                if not self.skip_bad:
                    raise
                self.bad.add(err)
        raise RuntimeError(f"no decodable pair left in {self.table.benchmark!r}: "
                           f"bad videos {sorted(self.bad.seen)}")


class VideoDataset(Dataset):
    """Single videos of one table; an undecodable video becomes ``clip=None`` with its reason."""

    def __init__(self, table: VideoTable, decode: _DecodeSettings, skip_bad: bool = False) -> None:
        self.table, self.decode, self.skip_bad, self.bad = table, decode, skip_bad, _BadVideos()

    def __len__(self) -> int:
        return len(self.table)

    def _item(self, k: int) -> dict[str, Any]:
        clip, error = None, None
        try:
            clip = self.decode.load(self.table.paths[k])
        except VideoDecodeError as err:
            self.bad.add(err)
            error = str(err)
        return {"clip": clip, "index": k, "benchmark": self.table.benchmark,
                "name": self.table.names[k], "mos": float(self.table.mos[k]), "error": error}

    def __getitem__(self, k: int) -> dict[str, Any]:
        item = self._item(k)
        if not self.skip_bad or item["clip"] is not None:  # eval: keep the failure for reporting
            return item
        for attempt in range(1, len(self)):  # pointwise training: skip to the next valid video
            item = self._item((k + attempt) % len(self))
            if item["clip"] is not None:
                return item
        raise RuntimeError(f"no decodable video in {self.table.benchmark!r}")


def collate_pairs(items: Sequence[dict[str, Any]]) -> PairBatch:
    """Stack pair items into a :class:`PairBatch`."""
    rationale = [it["rationale"] for it in items]
    return PairBatch(
        clips_a=[it["clip_a"] for it in items], clips_b=[it["clip_b"] for it in items],
        margin=torch.tensor([it["margin"] for it in items], dtype=torch.float32),
        rationale=None if any(r is None for r in rationale) else rationale,
        benchmark=[it["benchmark"] for it in items],
        index_a=torch.tensor([it["index_a"] for it in items], dtype=torch.long),
        index_b=torch.tensor([it["index_b"] for it in items], dtype=torch.long))


def collate_videos(items: Sequence[dict[str, Any]]) -> VideoBatch:
    """Stack single-video items into a :class:`VideoBatch`."""
    return VideoBatch(
        clips=[it["clip"] for it in items],
        index=torch.tensor([it["index"] for it in items], dtype=torch.long),
        benchmark=[it["benchmark"] for it in items], name=[it["name"] for it in items],
        mos=torch.tensor([it["mos"] for it in items], dtype=torch.float32),
        error=[it["error"] for it in items])


def _as_spec(spec: BenchmarkSpec | dict[str, Any]) -> BenchmarkSpec:
    return spec if isinstance(spec, BenchmarkSpec) else BenchmarkSpec(**spec)


def read_spec(spec: BenchmarkSpec) -> VideoTable:
    """Read one :class:`BenchmarkSpec` into a :class:`VideoTable` named ``spec.name``."""
    reader = "csv" if spec.benchmark == "synthetic" else spec.benchmark
    root = spec.video_root
    if root is None and spec.label_file is not None and reader == "csv":
        root = str(Path(spec.label_file).parent)
    table = read_benchmark(reader, label_file=spec.label_file, video_root=root, split=spec.split)
    table.benchmark = spec.name
    return table


def table_from_videos(videos: str, anchors: str | None = None) -> VideoTable:
    """Predict-time table: every video of a folder, or the rows of a ``video[,mos]`` csv."""
    path = Path(videos)
    if path.is_dir():
        files = list_videos(path)
        if not files:
            raise FileNotFoundError(f"no video files found in folder {path}")
        names = [str(f.relative_to(path)) for f in files]
        nan = np.full(len(files), np.nan)
        return VideoTable(benchmark="predict", names=names, paths=[str(f) for f in files],
                          mos=nan, mos_raw=nan.copy(), split=["predict"] * len(files),
                          missing=[], extra={})
    if path.is_file():
        return _table_from_csv(path)
    raise FileNotFoundError(f"--data.videos: {path} is neither a folder nor a csv file")


def _table_from_csv(path: Path) -> VideoTable:
    import pandas as pd

    frame = pd.read_csv(path)
    if "video" not in frame.columns:
        raise ValueError(f"{path}: a video list needs a 'video' column, found {list(frame.columns)}")
    if "mos" in frame.columns and frame["mos"].notna().all():
        table = read_benchmark("csv", label_file=str(path), video_root=str(path.parent))
    else:
        names = [str(v) for v in frame["video"]]
        nan = np.full(len(names), np.nan)
        paths = [str(Path(n) if Path(n).is_absolute() else path.parent / n) for n in names]
        table = VideoTable(benchmark="predict", names=names, paths=paths, mos=nan,
                           mos_raw=nan.copy(), split=["predict"] * len(names), missing=[], extra={})
    table.benchmark = "predict"
    return table


class PairwiseVideoDataModule(LightningDataModule):
    """Pairs for training, single videos for evaluation and prediction.

    Args:
        train_sets: label lists used for training pairs (pairs never cross lists or, within a list,
            the ``pair_group_key`` column, e.g. the synthetic benchmark's rating ``source``).
        val_sets: held-out lists for validation pairs.
        test_sets: lists evaluated by the comparison-graph callback at test time.
        videos: predict input: a folder of videos or a ``video[,mos]`` csv.
        anchors: optional ``video,mos`` csv of videos with known MOS (score mapping at predict).
        mode: ``pairwise`` (default) or ``pointwise`` (single video + MOS, for the ablation).
        num_train_pairs: training pairs per epoch (paper: 18k SFT, 60k GRPO prompts).
        num_val_pairs: validation pairs per val set.
        pair_seed: seed of the pair sampler.
        pair_group_key: ``extra`` column delimiting calibration groups.
        rationale_file: JSONL of annotated rationales (``datamodules.annotate``); when given, the
            annotated pairs are the training pairs.
        batch_size: pairs (or videos) per training batch.
        eval_batch_size: videos per batch in test/predict (encoder warm-up pass).
        num_workers: DataLoader workers.
        num_frames: frames per video for the VLM (paper: 8).
        motion_frames: dense frames per video for SlowFast (paper: 64 motion tokens).
        size: short side of the VLM frames.
        motion_size: square side of the motion clip.
        alpha: SlowFast speed ratio (motion length is a multiple of it).
        decode_backend: ``auto``, ``decord``, ``pyav`` or ``torchcodec``.
        skip_bad_videos: skip undecodable training videos (listed once) instead of failing.
        clip_cache_size: decoded clips kept in memory (LRU, per process) by the datasets and
            :meth:`get_clip`; 0 disables. Real 224-px clips take ~12 MB each.
    """

    def __init__(
        self,
        train_sets: list[BenchmarkSpec] | None = None,
        val_sets: list[BenchmarkSpec] | None = None,
        test_sets: list[BenchmarkSpec] | None = None,
        videos: str | None = None,
        anchors: str | None = None,
        mode: Literal["pairwise", "pointwise"] = "pairwise",
        num_train_pairs: int = 18000,
        num_val_pairs: int = 64,
        pair_seed: int = 0,
        pair_group_key: str | None = "source",
        rationale_file: str | None = None,
        batch_size: int = 1,
        eval_batch_size: int = 4,
        num_workers: int = 0,
        num_frames: int = 8,
        motion_frames: int = 64,
        size: int | None = 224,
        motion_size: int | None = 224,
        alpha: int = 4,
        decode_backend: str = "auto",
        skip_bad_videos: bool = True,
        clip_cache_size: int = 64,
    ) -> None:
        super().__init__()
        if mode not in ("pairwise", "pointwise"):
            raise ValueError(f"mode must be one of ['pairwise', 'pointwise'], got {mode!r}")
        self.save_hyperparameters()
        self.train_specs = [_as_spec(s) for s in train_sets or []]
        self.val_specs = [_as_spec(s) for s in val_sets or []]
        self.test_specs = [_as_spec(s) for s in test_sets or []]
        self.decode = _DecodeSettings(num_frames, motion_frames, size, motion_size, alpha,
                                      decode_backend, clip_cache_size)
        self._tables: dict[str, VideoTable] = {}
        self._groups: dict[str, str] = {}
        self._datasets: dict[str, Dataset] = {}
        self._clips: OrderedDict[tuple[str, int], Clip] = OrderedDict()

    # ----------------------------------------------------------------- tables
    def _table(self, spec: BenchmarkSpec) -> VideoTable:
        if spec.name not in self._tables:
            self._tables[spec.name] = read_spec(spec)
            self._groups[spec.name] = spec.group
        return self._tables[spec.name]

    def _check_no_leakage(self) -> None:
        train = {p for s in self.train_specs for p in self._table(s).paths}
        for spec in self.val_specs + self.test_specs:
            shared = train.intersection(self._table(spec).paths)
            if shared:
                raise ValueError(f"{len(shared)} videos of eval set {spec.name!r} are also in the "
                                 f"training sets, e.g. {sorted(shared)[0]}")

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        """Read label lists and build datasets for ``stage`` (idempotent)."""
        if stage in (None, "fit") and "train" not in self._datasets:
            self._check_no_leakage()
            self._datasets["train"] = self._train_dataset(self.train_specs,
                                                          self.hparams.num_train_pairs, 0)
        if stage in (None, "fit", "validate") and "val" not in self._datasets and self.val_specs:
            self._datasets["val"] = self._train_dataset(self.val_specs, self.hparams.num_val_pairs, 1)
        if stage in (None, "test") and "test" not in self._datasets:
            self._datasets["test"] = self._video_dataset(self.test_specs)
        if stage in (None, "predict") and "predict" not in self._datasets and self.hparams.videos:
            table = table_from_videos(self.hparams.videos)
            self._tables["predict"], self._groups["predict"] = table, "predict"
            self._datasets["predict"] = VideoDataset(table, self.decode)

    def _train_dataset(self, specs: list[BenchmarkSpec], num_pairs: int, offset: int) -> Dataset:
        if not specs:
            raise ValueError("fit needs at least one entry in data.train_sets")
        if self.hparams.mode == "pointwise":
            return torch.utils.data.ConcatDataset(
                [VideoDataset(self._table(s), self.decode, skip_bad=self.hparams.skip_bad_videos)
                 for s in specs])
        sizes = np.array([len(self._table(s)) for s in specs], dtype=np.float64)
        share = np.maximum(1, np.round(num_pairs * sizes / sizes.sum())).astype(int)
        parts = [self._pair_dataset(s, int(k), self.hparams.pair_seed + offset)
                 for s, k in zip(specs, share)]
        return torch.utils.data.ConcatDataset(parts)

    def _pair_dataset(self, spec: BenchmarkSpec, num_pairs: int, seed: int) -> PairDataset:
        table = self._table(spec)
        rationales = None
        if self.hparams.rationale_file:
            from datamodules.annotate import load_rationales

            notes = load_rationales(self.hparams.rationale_file)
            keyed = [k for k in notes if k[0] in set(table.names)]
            pairs = pairs_from_names(table, keyed[:num_pairs])
            rationales = [notes[k] for k in keyed[:num_pairs]]
        else:
            pairs = build_pairs(table, num_pairs, seed=seed, group_key=self.hparams.pair_group_key)
            if {"distortions", "severities", "content"} <= set(table.extra):
                from datamodules.synthetic import rationale_for_table

                rng = np.random.default_rng(seed)
                rationales = [rationale_for_table(table, int(a), int(b), float(m), rng=rng)
                              for a, b, m in zip(pairs.index_a, pairs.index_b, pairs.margin)]
        return PairDataset(table, pairs, rationales, self.decode, self.hparams.skip_bad_videos)

    def _video_dataset(self, specs: list[BenchmarkSpec]) -> Dataset:
        return torch.utils.data.ConcatDataset([VideoDataset(self._table(s), self.decode)
                                               for s in specs]) if specs else VideoDataset(
            VideoTable("empty", [], [], np.zeros(0), np.zeros(0), [], [], {}), self.decode)

    # ------------------------------------------------------------ dataloaders
    def _loader(self, key: str, batch_size: int, shuffle: bool) -> DataLoader:
        if key not in self._datasets:
            self.setup({"train": "fit", "val": "validate"}.get(key, key))
        dataset = self._datasets[key]
        pairwise = self.hparams.mode == "pairwise" and key in ("train", "val")
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle,
                          num_workers=self.hparams.num_workers,
                          collate_fn=collate_pairs if pairwise else collate_videos,
                          persistent_workers=self.hparams.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", self.hparams.batch_size, shuffle=False) if self.val_specs else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        if not self.hparams.videos:
            raise ValueError("predict needs --data.init_args.videos <folder or csv>")
        return self._loader("predict", self.hparams.eval_batch_size, shuffle=False)

    # ----------------------------------------------------- evaluation access
    def eval_sets(self, stage: str) -> list[EvalSet]:
        """Benchmarks evaluated by the comparison-graph callback at ``stage``."""
        if stage == "predict":
            self.setup("predict")
            return [EvalSet("predict", self._tables["predict"], "predict")]
        specs = {"test": self.test_specs, "validate": self.val_specs,
                 "fit": self.val_specs}.get(stage)
        if specs is None:
            raise ValueError(f"stage must be one of ['fit', 'validate', 'test', 'predict'], got {stage!r}")
        return [EvalSet(s.name, self._table(s), s.group) for s in specs]

    def get_clip(self, benchmark: str, index: int) -> Clip:
        """Decoded clip of row ``index`` of ``benchmark`` (LRU-cached; raises VideoDecodeError)."""
        key = (benchmark, int(index))
        if key in self._clips:
            self._clips.move_to_end(key)
            return self._clips[key]
        if benchmark not in self._tables:
            raise KeyError(f"unknown benchmark {benchmark!r}; known: {sorted(self._tables)}")
        clip = self.decode.load(self._tables[benchmark].paths[int(index)])
        self._clips[key] = clip
        while len(self._clips) > max(0, self.hparams.clip_cache_size):
            self._clips.popitem(last=False)
        return clip

    def anchor_table(self) -> VideoTable | None:
        """Videos with known MOS for mapping predicted scores to a user's scale (or ``None``)."""
        if not self.hparams.anchors:
            return None
        return read_benchmark("csv", label_file=self.hparams.anchors,
                              video_root=str(Path(self.hparams.anchors).parent))

    def bad_videos(self) -> dict[str, str]:
        """Undecodable videos met so far in this process (path → reason)."""
        out: dict[str, str] = {}
        for ds in self._datasets.values():
            for part in getattr(ds, "datasets", [ds]):
                out.update(getattr(part, "bad", _BadVideos()).seen)
        return out

