"""Batches, datasets and collate functions of :class:`datamodules.pairwise.PairwiseVideoDataModule`.

Videos are decoded in ``Dataset.__getitem__`` (through :class:`DecodeSettings`, which keeps a
per-process LRU of decoded clips). A video that cannot be decoded is reported with its path:

* in a **training** dataset it is skipped when ``skip_bad=True`` — the item is replaced by the next
  valid one, the path is warned about once and kept in ``dataset.bad`` — else the
  :class:`~datamodules.video.VideoDecodeError` propagates;
* in an **evaluation / predict** dataset the item keeps ``clip=None`` and the reason in ``error``,
  so the evaluation callback can list it and carry on.

With DataLoader workers each worker holds its own copy of ``bad`` (and warns in its own process).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from datamodules.benchmarks import VideoTable
from datamodules.pairs import PairList
from datamodules.video import Clip, VideoDecodeError, load_clip

__all__ = [
    "VideoBatch",
    "PairBatch",
    "DecodeSettings",
    "BadVideos",
    "PairDataset",
    "VideoDataset",
    "collate_pairs",
    "collate_videos",
]


@dataclass
class VideoBatch:
    """Single videos (evaluation / prediction items, pointwise training)."""

    clips: list[Clip | None]  # None where the video could not be decoded
    index: torch.Tensor  # (B,) long, row in the benchmark's VideoTable
    benchmark: list[str]
    name: list[str]
    mos: torch.Tensor  # (B,) float32, nan when unknown (predict)
    error: list[str | None]  # reason when clip is None
    rationale: list[str] | None = None  # pointwise SFT rationale per video (no tags); None: none

    def __len__(self) -> int:
        return len(self.clips)


@dataclass
class PairBatch:
    """Ordered video pairs: the model sees ``a`` first and predicts ``MOS_a - MOS_b``."""

    clips_a: list[Clip]
    clips_b: list[Clip]
    margin: torch.Tensor | None  # (B,) float32, m* = mos_a - mos_b (None at inference)
    rationale: list[str] | None  # SFT rationale text (no tags); None when not available
    benchmark: list[str]
    index_a: torch.Tensor  # (B,) long
    index_b: torch.Tensor  # (B,) long

    def __len__(self) -> int:
        return len(self.clips_a)


@dataclass
class DecodeSettings:
    """How videos are decoded, plus an LRU of decoded clips keyed by path.

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
    motion_crop: str = "resize"
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def load(self, path: str) -> Clip:
        """Decoded clip of ``path`` (cached); raises :class:`VideoDecodeError`."""
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        clip = load_clip(
            path,
            num_frames=self.num_frames,
            motion_frames=self.motion_frames,
            size=self.size,
            motion_size=self.motion_size,
            alpha=self.alpha,
            backend=self.backend,
            motion_crop=self.motion_crop,
        )
        if self.cache_size > 0:
            self._cache[path] = clip
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return clip


@dataclass
class BadVideos:
    """Paths that failed to decode (path → reason), each warned about once."""

    seen: dict[str, str] = field(default_factory=dict)

    def add(self, err: VideoDecodeError) -> None:
        path = str(getattr(err, "path", "?"))
        if path not in self.seen:
            self.seen[path] = str(getattr(err, "reason", err))
            warnings.warn(
                f"skipping undecodable video {path}: {self.seen[path]} ({len(self.seen)} bad so far)", stacklevel=3
            )


class PairDataset(Dataset):
    """Ordered pairs of one table; decodes both clips per item."""

    def __init__(
        self, table: VideoTable, pairs: PairList, rationales: list[str] | None, decode: DecodeSettings, skip_bad: bool
    ) -> None:
        if rationales is not None and len(rationales) != len(pairs):
            raise ValueError(f"{len(rationales)} rationales for {len(pairs)} pairs of {table.benchmark!r}")
        self.table, self.pairs, self.rationales = table, pairs, rationales
        self.decode, self.skip_bad, self.bad = decode, skip_bad, BadVideos()

    def __len__(self) -> int:
        return len(self.pairs)

    def _item(self, k: int) -> dict[str, Any]:
        a, b = int(self.pairs.index_a[k]), int(self.pairs.index_b[k])
        for path in (self.table.paths[a], self.table.paths[b]):
            if path in self.bad.seen:  # known bad: do not decode it again
                raise VideoDecodeError(path, self.bad.seen[path])
        return {
            "clip_a": self.decode.load(self.table.paths[a]),
            "clip_b": self.decode.load(self.table.paths[b]),
            "margin": float(self.pairs.margin[k]),
            "index_a": a,
            "index_b": b,
            "rationale": None if self.rationales is None else self.rationales[k],
            "benchmark": self.table.benchmark,
        }

    def __getitem__(self, k: int) -> dict[str, Any]:
        for attempt in range(len(self)):
            try:
                return self._item((k + attempt) % len(self))
            except VideoDecodeError as err:
                if not self.skip_bad:
                    raise
                self.bad.add(err)
        raise RuntimeError(f"no decodable pair left in {self.table.benchmark!r}; bad videos: {sorted(self.bad.seen)}")


class VideoDataset(Dataset):
    """Single videos of one table.

    Args:
        table: the videos.
        decode: decoding settings.
        skip_bad: training use (pointwise ablation): replace an undecodable video by the next
            valid one. ``False`` (evaluation): keep it as ``clip=None`` with its ``error``.
        rationales: one rationale per row (pointwise SFT with reasoning), or ``None``.
    """

    def __init__(
        self, table: VideoTable, decode: DecodeSettings, skip_bad: bool = False, rationales: list[str] | None = None
    ) -> None:
        if rationales is not None and len(rationales) != len(table):
            raise ValueError(f"{len(rationales)} rationales for {len(table)} videos of {table.benchmark!r}")
        self.table, self.decode, self.skip_bad, self.bad = table, decode, skip_bad, BadVideos()
        self.rationales = rationales

    def __len__(self) -> int:
        return len(self.table)

    def _item(self, k: int) -> dict[str, Any]:
        clip, error = None, None
        path = self.table.paths[k]
        try:
            if path in self.bad.seen:
                raise VideoDecodeError(path, self.bad.seen[path])
            clip = self.decode.load(path)
        except VideoDecodeError as err:
            self.bad.add(err)
            error = str(err)
        return {
            "clip": clip,
            "index": k,
            "benchmark": self.table.benchmark,
            "name": self.table.names[k],
            "mos": float(self.table.mos[k]),
            "error": error,
            "rationale": None if self.rationales is None else self.rationales[k],
        }

    def __getitem__(self, k: int) -> dict[str, Any]:
        item = self._item(k)
        if not self.skip_bad or item["clip"] is not None:
            return item
        for attempt in range(1, len(self)):  # training: skip to the next valid video
            item = self._item((k + attempt) % len(self))
            if item["clip"] is not None:
                return item
        raise RuntimeError(f"no decodable video in {self.table.benchmark!r}; bad videos: {sorted(self.bad.seen)}")


def collate_pairs(items: Sequence[dict[str, Any]]) -> PairBatch:
    """Stack pair items into a :class:`PairBatch` (``rationale=None`` if any item lacks one)."""
    rationale = [it["rationale"] for it in items]
    return PairBatch(
        clips_a=[it["clip_a"] for it in items],
        clips_b=[it["clip_b"] for it in items],
        margin=torch.tensor([it["margin"] for it in items], dtype=torch.float32),
        rationale=None if any(r is None for r in rationale) else rationale,
        benchmark=[it["benchmark"] for it in items],
        index_a=torch.tensor([it["index_a"] for it in items], dtype=torch.long),
        index_b=torch.tensor([it["index_b"] for it in items], dtype=torch.long),
    )


def collate_videos(items: Sequence[dict[str, Any]]) -> VideoBatch:
    """Stack single-video items into a :class:`VideoBatch` (``rationale=None`` if any item lacks one)."""
    rationale = [it.get("rationale") for it in items]
    return VideoBatch(
        clips=[it["clip"] for it in items],
        index=torch.tensor([it["index"] for it in items], dtype=torch.long),
        benchmark=[it["benchmark"] for it in items],
        name=[it["name"] for it in items],
        mos=torch.tensor([it["mos"] for it in items], dtype=torch.float32),
        error=[it["error"] for it in items],
        rationale=None if any(r is None for r in rationale) else rationale,
    )
