"""``PairwiseVideoDataModule``: from label files and video folders to model-ready batches.

* **fit** — training items are *pairs* (:class:`PairBatch`: two decoded clips, the target margin
  ``m* = MOS_a - MOS_b`` and, for SFT with reasoning, the rationale text); in ``mode="pointwise"``
  (the paper's pointwise ablation) they are single videos with their MOS (:class:`VideoBatch`).
  The validation loader yields held-out *pairs* of the ``val_sets`` (teacher-forced losses); the
  comparison-graph callback evaluates the same sets through :meth:`eval_sets` / :meth:`get_clip`.
* **test / predict** — items are *single videos* (:class:`VideoBatch`, used to warm the frozen
  encoders' caches); the ``ComparisonGraphEvaluation`` callback forms the pairs itself through
  ``ranking/`` and fetches clips with :meth:`PairwiseVideoDataModule.get_clip`.

Videos are decoded in ``Dataset.__getitem__`` (:mod:`datamodules.pair_datasets`), never in the
module. Bad videos: see that module.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from datamodules.annotate.records import read_records
from datamodules.annotated_pairs import Coverage, annotated_pairs
from datamodules.benchmarks import VideoTable, read_label_csv
from datamodules.pair_datasets import (
    BadVideos,
    DecodeSettings,
    PairBatch,
    PairDataset,
    VideoBatch,
    VideoDataset,
    collate_pairs,
    collate_videos,
)
from datamodules.pairs import PairList, attach_rationales, build_present_pairs, largest_remainder
from datamodules.specs import BenchmarkSpec, EvalSet, _as_spec, _unscored, read_spec, table_from_videos
from datamodules.video import Clip

__all__ = [
    "BenchmarkSpec",
    "EvalSet",
    "PairBatch",
    "VideoBatch",
    "PairwiseVideoDataModule",
    "read_spec",
    "table_from_videos",
]

MODES = ("pairwise", "pointwise")
_SYNTHETIC_COLUMNS = {"content", "distortions", "severities"}


class PairwiseVideoDataModule(LightningDataModule):
    """Pairs for training, single videos for evaluation and prediction.

    Args:
        train_sets: label lists used for training pairs (pairs never cross lists or, within a list,
            the ``pair_group_key`` column, e.g. the synthetic benchmark's rating ``source``).
        val_sets: held-out lists for validation pairs and the validation comparison graph.
        test_sets: lists evaluated by the comparison-graph callback at test time.
        videos: predict input: a folder of videos or a ``video[,mos]`` csv.
        anchors: optional ``video,mos`` csv of videos with known MOS on the user's scale, stored
            for the predict callback to map scores to that scale (:meth:`anchor_table`).
        mode: ``pairwise`` (default) or ``pointwise`` (single video + MOS, for the ablation).
        reasoning: attach rationales to training pairs (from ``rationale_file``, or generated for
            the synthetic benchmark); ``False`` gives ``""`` for every pair (SFT w/o reasoning).
        rationale_file: JSONL written by ``python -m datamodules.annotate run``; when given, its
            accepted pairs are the training pairs (both with and without ``reasoning``: the
            ablation's identical data) and setup logs the coverage -- rejected / failed /
            disagreeing records are dropped and counted, none usable is an error
            (:mod:`datamodules.annotated_pairs`). Validation pairs are still sampled.
        num_train_pairs: training pairs per epoch, split over ``train_sets`` by size (paper: 18k
            SFT pairs, 60k GRPO prompts).
        num_val_pairs: validation pairs, split over ``val_sets`` by size.
        pair_seed: seed of the pair sampler (validation uses ``pair_seed + 1``).
        pair_group_key: ``extra`` column delimiting calibration groups.
        batch_size: pairs (or videos) per training batch.
        eval_batch_size: videos per batch in test/predict (encoder warm-up pass).
        num_workers: DataLoader workers.
        num_frames: frames per video for the VLM (paper: 8).
        motion_frames: dense frames per video for SlowFast (paper: 64 motion tokens).
        frame_size: short side of the VLM frames (``None``: native).
        motion_size: square side of the motion clip (``None``: native short side).
        motion_crop: ``"resize"`` (the clip's short side to ``motion_size``, centre square) or
            ``"native"`` (a ``motion_size`` square of the native picture: artefacts keep their
            pixel scale across resolutions; the tiny demo's setting).
        alpha: SlowFast speed ratio (motion length is a multiple of it).
        decode_backend: ``auto``, ``decord``, ``pyav`` or ``torchcodec``.
        skip_bad_videos: skip undecodable training videos (each warned about once) instead of
            failing; evaluation always keeps them as ``clip=None`` with the reason.
        clip_cache_size: decoded clips kept in memory (LRU, per process) by the datasets and
            :meth:`get_clip`; 0 disables. Real 224-px clips take ~12 MB each.
        size: deprecated alias of ``frame_size`` (overrides it when given).
    """

    def __init__(
        self,
        train_sets: list[BenchmarkSpec] | None = None,
        val_sets: list[BenchmarkSpec] | None = None,
        test_sets: list[BenchmarkSpec] | None = None,
        videos: str | None = None,
        anchors: str | None = None,
        mode: Literal["pairwise", "pointwise"] = "pairwise",
        reasoning: bool = True,
        rationale_file: str | None = None,
        num_train_pairs: int = 18000,
        num_val_pairs: int = 64,
        pair_seed: int = 0,
        pair_group_key: str | None = "source",
        batch_size: int = 1,
        eval_batch_size: int = 4,
        num_workers: int = 0,
        num_frames: int = 8,
        motion_frames: int = 64,
        frame_size: int | None = 224,
        motion_size: int | None = 224,
        motion_crop: Literal["resize", "native"] = "resize",
        alpha: int = 4,
        decode_backend: Literal["auto", "decord", "pyav", "torchcodec"] = "auto",
        skip_bad_videos: bool = True,
        clip_cache_size: int = 64,
        size: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        self.save_hyperparameters()
        self.train_specs = [_as_spec(s) for s in train_sets or []]
        self.val_specs = [_as_spec(s) for s in val_sets or []]
        self.test_specs = [_as_spec(s) for s in test_sets or []]
        self.decode = DecodeSettings(
            num_frames,
            motion_frames,
            size if size is not None else frame_size,
            motion_size,
            alpha,
            decode_backend,
            clip_cache_size,
            motion_crop,
        )
        self._tables: dict[str, VideoTable] = {}
        self._datasets: dict[str, Dataset] = {}
        self._records: dict[tuple[str, str], dict] | None = None
        #: per training table, what the rationale file covered (filled at ``setup("fit")``)
        self.rationale_coverage: list[Coverage] = []

    # ----------------------------------------------------------------- tables
    def _table(self, spec: BenchmarkSpec) -> VideoTable:
        if spec.name not in self._tables:
            self._tables[spec.name] = read_spec(spec)
        return self._tables[spec.name]

    def _check_no_leakage(self) -> None:
        """No video of a val/test list may be a training video (compared by resolved path)."""
        train = {p for s in self.train_specs for p in self._table(s).paths}
        for spec in self.val_specs + self.test_specs:
            shared = train.intersection(self._table(spec).paths)
            if shared:
                raise ValueError(
                    f"{len(shared)} videos of eval set {spec.name!r} are also in the "
                    f"training sets, e.g. {sorted(shared)[0]}"
                )

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str | None = None) -> None:
        """Read label lists and build the datasets of ``stage`` (idempotent)."""
        if stage in (None, "fit") and "train" not in self._datasets:
            self._check_no_leakage()
            self._datasets["train"] = self._train_dataset(self.train_specs, self.hparams.num_train_pairs, 0, True)
        if stage in (None, "fit", "validate") and "val" not in self._datasets and self.val_specs:
            self._datasets["val"] = self._train_dataset(self.val_specs, self.hparams.num_val_pairs, 1, False)
        if stage in (None, "test") and "test" not in self._datasets:
            self._datasets["test"] = self._video_dataset(self.test_specs)
        if stage in (None, "predict") and "predict" not in self._datasets and self.hparams.videos:
            table = table_from_videos(self.hparams.videos)
            self._tables["predict"] = table
            self._datasets["predict"] = VideoDataset(table, self.decode)

    def _train_dataset(self, specs: list[BenchmarkSpec], num_pairs: int, offset: int, annotated: bool) -> Dataset:
        """Pairs (or, pointwise, videos) of ``specs``; ``annotated``: use the rationale file."""
        if not specs:
            raise ValueError("fit needs at least one entry in data.train_sets")
        skip = self.hparams.skip_bad_videos
        if self.hparams.mode == "pointwise":
            return ConcatDataset(
                [
                    VideoDataset(
                        self._table(s), self.decode, skip_bad=skip, rationales=self._video_rationales(self._table(s))
                    )
                    for s in specs
                ]
            )
        sizes = np.array([len(self._table(s)) for s in specs], dtype=np.float64)
        share = np.maximum(1, largest_remainder(num_pairs, sizes))
        return ConcatDataset(
            [self._pair_dataset(s, int(k), self.hparams.pair_seed + offset, annotated) for s, k in zip(specs, share)]
        )

    def _pair_dataset(self, spec: BenchmarkSpec, num_pairs: int, seed: int, annotated: bool) -> PairDataset:
        table, hp = self._table(spec), self.hparams
        rationales: list[str] | None
        if hp.rationale_file and annotated:
            if self._records is None:
                if not Path(hp.rationale_file).is_file():
                    raise FileNotFoundError(f"data.rationale_file not found: {hp.rationale_file}")
                self._records = read_records(hp.rationale_file)
            pairs, rationales, coverage = annotated_pairs(
                table, self._records, num_pairs, seed, hp.pair_group_key, hp.rationale_file
            )
            self.rationale_coverage.append(coverage)
            rank_zero_info(coverage.message())
        else:
            pairs = self._sample_present(table, num_pairs, seed)
            rationales = self._generated_rationales(table, pairs)
        if not hp.reasoning:
            rationales = [""] * len(pairs)
        return PairDataset(table, pairs, rationales, self.decode, hp.skip_bad_videos)

    def _sample_present(self, table: VideoTable, num_pairs: int, seed: int) -> PairList:
        """:func:`build_present_pairs` (the SFT pair design), absent videos warned about once."""
        if table.missing:
            warnings.warn(
                f"{table.benchmark!r}: {len(table.missing)} of {len(table)} listed videos "
                f"are not on disk (e.g. {table.paths[table.names.index(table.missing[0])]});"
                " pairs use the other videos",
                stacklevel=3,
            )
        return build_present_pairs(table, num_pairs, seed=seed, group_key=self.hparams.pair_group_key)

    def _generated_rationales(self, table: VideoTable, pairs: Any) -> list[str] | None:
        """Synthetic tables get truthful rationales; others have none without a rationale file."""
        if not self.hparams.reasoning:
            return None
        if _SYNTHETIC_COLUMNS <= set(table.extra):
            from datamodules.synthetic_rationale import rationale_for_table

            return attach_rationales(table, pairs, rationale_for_table)
        warnings.warn(
            f"{table.benchmark!r}: no rationale source (set data.rationale_file, or "
            "reasoning=false); its pairs carry rationale=None",
            stacklevel=3,
        )
        return None

    def _video_rationales(self, table: VideoTable) -> list[str] | None:
        """Pointwise rows: one rationale per video (synthetic tables), ``""`` without reasoning."""
        if not self.hparams.reasoning:
            return [""] * len(table)
        if _SYNTHETIC_COLUMNS <= set(table.extra):
            from datamodules.synthetic_rationale import single_rationale_for_table

            return [single_rationale_for_table(table, k) for k in range(len(table))]
        warnings.warn(
            f"{table.benchmark!r}: no single-video rationale source (the annotation files are "
            "pairwise; set reasoning=false); its videos carry rationale=None",
            stacklevel=3,
        )
        return None

    def _video_dataset(self, specs: list[BenchmarkSpec]) -> Dataset:
        if not specs:
            return VideoDataset(_unscored([], []), self.decode)
        return ConcatDataset([VideoDataset(self._table(s), self.decode) for s in specs])

    # ------------------------------------------------------------ dataloaders
    def _loader(self, key: str, batch_size: int, shuffle: bool) -> DataLoader:
        if key not in self._datasets:
            self.setup({"train": "fit", "val": "validate"}.get(key, key))
        pairwise = self.hparams.mode == "pairwise" and key in ("train", "val")
        return DataLoader(
            self._datasets[key],
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.hparams.num_workers,
            collate_fn=collate_pairs if pairwise else collate_videos,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", self.hparams.batch_size, shuffle=False) if self.val_specs else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        if not self.hparams.videos:
            raise ValueError("predict needs --data.videos <folder or csv>")
        return self._loader("predict", self.hparams.eval_batch_size, shuffle=False)

    # ----------------------------------------------------- evaluation access
    def eval_sets(self, stage: str) -> list[EvalSet]:
        """Benchmarks the comparison-graph callback evaluates at ``stage``.

        Args:
            stage: ``fit`` / ``validate`` (the val sets), ``test`` or ``predict``.
        """
        if stage == "predict":
            self.setup("predict")
            if "predict" not in self._tables:
                raise ValueError("predict needs --data.videos <folder or csv>")
            return [EvalSet("predict", self._tables["predict"], "predict")]
        specs = {"test": self.test_specs, "validate": self.val_specs, "fit": self.val_specs}.get(stage)
        if specs is None:
            raise ValueError(f"stage must be one of ['fit', 'validate', 'test', 'predict'], got {stage!r}")
        return [EvalSet(s.name, self._table(s), s.group) for s in specs]

    def get_clip(self, benchmark: str, index: int) -> Clip:
        """Decoded clip of row ``index`` of ``benchmark``.

        Cached in the LRU of decoded clips (``clip_cache_size``; keyed by the row's path, which is
        one-to-one with ``(benchmark, index)``). Raises ``VideoDecodeError`` for a bad video.
        """
        if benchmark not in self._tables:
            raise KeyError(f"unknown benchmark {benchmark!r}; known: {sorted(self._tables)}")
        table = self._tables[benchmark]
        if not 0 <= int(index) < len(table):
            raise IndexError(f"index {index} out of range for {benchmark!r} ({len(table)} videos)")
        return self.decode.load(table.paths[int(index)])

    def anchor_table(self) -> VideoTable | None:
        """Videos with known MOS on the user's scale (``mos_raw``), or ``None`` without anchors."""
        if not self.hparams.anchors:
            return None
        table = read_label_csv(self.hparams.anchors, "anchors", require_scale=False)
        table.paths = [str(Path(self.hparams.anchors).parent / n) for n in table.names]
        return table

    def bad_videos(self) -> dict[str, str]:
        """Undecodable videos met so far in this process (path → reason)."""
        out: dict[str, str] = {}
        for ds in self._datasets.values():
            for part in getattr(ds, "datasets", [ds]):
                out.update(getattr(part, "bad", BadVideos()).seen)
        return out
