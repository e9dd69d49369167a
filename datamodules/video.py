"""Video decoding and frame sampling: 8 uniform frames for the VLM + a dense motion clip.

:func:`load_clip` is the one entry point. Each video is decoded **once**: the union of the frame
indices both samplings need is decoded in one pass (PyAV: forward decode with keyframe seeks over
skipped GOPs; decord/torchcodec: one batched call), resized *while decoding* (swscale / decoder
transforms), so a 4K clip is never held at full resolution for all of its frames.

Sampling (Sec. 3.3 / 4.1 of the paper: 8 visual frames, 64 SlowFast motion frames):

- ``frames``: ``num_frames`` frames uniform in *time*, each the frame shown at the centre of one
  of ``num_frames`` equal segments of the clip (identical to index-uniform sampling for constant
  frame rate; for variable frame rate it follows the real timestamps).
- ``motion``: ``motion_frames`` rounded down to a multiple of ``alpha`` consecutive frames,
  centred in the video; a clip shorter than that is repeat-padded with its last frame and
  ``Clip.padded`` is set.

Resizing: the short side becomes ``size`` (aspect kept), but a source smaller than ``size`` is
never upscaled, except up to a 32 px short side for tiny sources (``min(size, max(native, 32))``).
``motion`` is resized the same way with ``motion_size`` and then centre-cropped to a square.
``None`` keeps the native resolution (motion is still centre-cropped square). With
``motion_crop="native"`` the motion clip is not resized: a ``motion_size`` square is cut from the
native picture (upscaled only when the source is smaller), so that blur, noise and coding
artefacts keep their pixel scale whatever the source resolution (FAST-VQA's fragments keep native
patches for the same reason). Sizes refer to the
displayed picture: rotation metadata is honoured by every backend. Pixels are assumed square.

Backends (``backend=``): ``"pyav"``, ``"decord"``, ``"torchcodec"`` or ``"auto"``, which tries
them in :data:`AUTO_ORDER` and falls back to the next one when a backend fails on a file (or is
unavailable: torchcodec needs FFmpeg 4–9 shared libraries on the system). A named backend is used
alone. Every file is first checked by a PyAV probe (see :mod:`datamodules.video_backends`), so bad
input gets a :class:`VideoDecodeError` with the reason and decord never sees a broken file.

Default order, by measurement (``python benchmarks/decode_bench.py --repeats 2``, 2 CPU cores
shared with other jobs so figures are noisy; ``benchmarks/results/decode_bench.json``): decord is
the fastest everywhere -- real 960x540 clips 1.90 clips/s vs PyAV 1.16 and torchcodec 1.29;
1080p 3.60 vs 1.85 / 1.24; 4K 1.55 vs 0.91 / 0.50 -- with the lowest peak RSS after PyAV
(4K: decord 747 MB, PyAV 686 MB, torchcodec 928 MB, ~525 MB of it the torch import). All three
pass every bad-input test because the PyAV probe screens files first. decord 0.6 fails on rotated
streams and on some output sizes (a buffer-size check, e.g. 72x48): those fall back to PyAV, the
next fastest on large frames; torchcodec comes last (slowest on 1080p/4K, and it needs a system
FFmpeg 4-9 that a fresh machine may lack).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from datamodules.video_backends import BACKENDS, BackendUnavailable, ProbeError, VideoInfo, probe

AUTO_ORDER: tuple[str, ...] = ("decord", "pyav", "torchcodec")  # fastest first, see module doc

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".3gp", ".avi", ".flv", ".m2ts", ".m4v", ".mkv", ".mov", ".mp4", ".mpeg", ".mpg", ".mts",
    ".ogv", ".ts", ".webm", ".wmv",
)  # fmt: skip
MIN_SHORT_SIDE = 32
_KEY_VERSION = "v1"  # bump when the sampling scheme changes, so encoder caches invalidate


class VideoDecodeError(RuntimeError):
    """A video could not be decoded; ``str()`` names the file and the reason.

    Attributes:
        path: the file that failed.
        reason: why (missing, empty, truncated, not a video, no decodable frame, backend errors).
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path}: {reason}")


@dataclass
class Clip:
    """One decoded video, ready for the VLM (``frames``) and the SlowFast encoder (``motion``)."""

    path: str
    key: str  # content hash of the file + sampling settings (encoder-cache key)
    frames: torch.Tensor  # (T, 3, H, W) uint8, T = num_frames uniformly sampled, RGB
    motion: torch.Tensor  # (T', 3, H', W') uint8, dense centred window, T' % alpha == 0
    fps: float
    frame_count: int
    duration: float
    width: int  # displayed (after rotation), native resolution
    height: int
    rotation: int  # display rotation from the metadata, degrees counter-clockwise
    padded: bool  # motion window was repeat-padded (clip shorter than window)
    backend: str


def list_videos(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Video files in ``folder`` (extension in :data:`VIDEO_EXTENSIONS`, any case), sorted.

    Args:
        folder: directory to scan.
        recursive: also scan sub-directories.

    Raises:
        NotADirectoryError: ``folder`` is not an existing directory.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"video folder not found or not a directory: {root}")
    found = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def uniform_indices(timestamps: np.ndarray, num: int, frame_duration: float) -> np.ndarray:
    """Indices of the frames shown at the centres of ``num`` equal time segments.

    Args:
        timestamps: (N,) sorted presentation times in seconds.
        num: number of frames to sample (may exceed N: frames then repeat).
        frame_duration: how long the last frame is shown (1 / fps).

    Returns:
        (num,) int64 frame indices, non-decreasing.

    >>> uniform_indices(np.arange(10) / 10, 5, 0.1).tolist()
    [1, 3, 5, 7, 9]
    >>> uniform_indices(np.array([0.0, 0.1, 0.2, 0.9]), 4, 0.1).tolist()  # VFR: frame 2 shown 0.7 s
    [1, 2, 2, 2]
    """
    start, end = float(timestamps[0]), float(timestamps[-1]) + frame_duration
    centres = start + (np.arange(num) + 0.5) * (end - start) / num + 1e-9 * (end - start)
    idx = np.searchsorted(timestamps, centres, side="right") - 1
    return np.clip(idx, 0, len(timestamps) - 1).astype(np.int64)


def motion_indices(frame_count: int, length: int) -> tuple[np.ndarray, bool]:
    """A window of ``length`` consecutive frame indices centred in the video.

    Returns:
        ((length,) int64 indices, padded) where a video shorter than the window repeats its
        last frame and ``padded`` is True.

    >>> motion_indices(10, 4)[0].tolist(), motion_indices(3, 5)
    ([3, 4, 5, 6], (array([0, 1, 2, 2, 2]), True))
    """
    if frame_count >= length:
        start = (frame_count - length) // 2
        return np.arange(start, start + length, dtype=np.int64), False
    idx = np.minimum(np.arange(length, dtype=np.int64), frame_count - 1)
    return idx, True


def target_short_side(native_short: int, requested: int | None) -> int:
    """Short side after resizing: ``requested``, but no upscaling past the source beyond 32 px.

    >>> [target_short_side(n, 224) for n in (540, 100, 20)], target_short_side(540, None)
    ([224, 100, 32], 540)
    """
    if requested is None:
        return native_short
    return min(requested, max(native_short, MIN_SHORT_SIDE))


def resized_hw(height: int, width: int, short: int) -> tuple[int, int]:
    """(h, w) with the short side ``short`` and the aspect ratio kept.

    >>> resized_hw(540, 960, 224), resized_hw(720, 406, 224)
    ((224, 398), (397, 224))
    """
    scale = short / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _resize(video: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of (N, 3, h, w) uint8 to (N, 3, *hw) uint8 (no-op if equal)."""
    if tuple(video.shape[-2:]) == tuple(hw):
        return video
    out = F.interpolate(video.float(), size=hw, mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def motion_sides(native_short: int, motion_size: int | None, motion_crop: str) -> tuple[int, int]:
    """``(short side the motion frames are resized to, side of their centre square)``.

    >>> motion_sides(96, 64, "resize"), motion_sides(96, 64, "native"), motion_sides(48, 64, "native")
    ((64, 64), (96, 64), (48, 48))
    """
    side = target_short_side(native_short, motion_size)
    if motion_crop == "native":
        return max(native_short, side), side  # no downscaling: the crop keeps the pixel scale
    if motion_crop != "resize":
        raise ValueError(f"unknown motion_crop {motion_crop!r}; allowed: 'resize', 'native'")
    return side, side


def _centre_crop(video: torch.Tensor, side: int) -> torch.Tensor:
    """Centre square crop of (N, 3, h, w) to (N, 3, side, side)."""
    h, w = video.shape[-2:]
    top, left = (h - side) // 2, (w - side) // 2
    return video[..., top : top + side, left : left + side].contiguous()


_HASHES: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | os.PathLike) -> str:
    """blake2b-128 of the file's bytes (memoised on path, size and mtime)."""
    stat = os.stat(path)
    memo = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    if memo not in _HASHES:
        digest = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
        _HASHES[memo] = digest.hexdigest()
    return _HASHES[memo]


def clip_key(path: str | os.PathLike, **settings: object) -> str:
    """Cache key: the file's content hash combined with the sampling settings.

    The backend is not part of the key: backends agree to within resampling noise and a frozen
    encoder's cache should survive a fallback.
    """
    text = "|".join([_KEY_VERSION, file_digest(path)] + [f"{k}={settings[k]}" for k in sorted(settings)])
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _check_file(path: Path) -> None:
    """Raise VideoDecodeError for a missing, non-regular or empty file."""
    if not path.exists():
        raise VideoDecodeError(path, "file not found")
    if not path.is_file():
        raise VideoDecodeError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "file is empty (0 bytes)")


def _check_options(num_frames: int, motion_frames: int, alpha: int, backend: str) -> int:
    """Validate the sampling options; return the motion length (multiple of ``alpha``)."""
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: 'auto', {', '.join(map(repr, BACKENDS))}")
    if num_frames < 1 or alpha < 1:
        raise ValueError(f"num_frames and alpha must be >= 1, got {num_frames} and {alpha}")
    if motion_frames < alpha:
        raise ValueError(f"motion_frames ({motion_frames}) must be >= alpha ({alpha})")
    return motion_frames - motion_frames % alpha


def _decode(
    path: Path,
    info: VideoInfo,
    indices: np.ndarray,
    hw: tuple[int, int],
    order: tuple[str, ...],
    timeout_s: float,
) -> tuple[torch.Tensor, str]:
    """Run the backends in ``order`` until one decodes ``indices``; return (frames, backend name)."""
    failures = []
    for name in order:
        deadline = time.monotonic() + timeout_s
        try:
            video = BACKENDS[name](str(path), info, indices, hw, deadline)  # (N, 3, h, w)
        except BackendUnavailable as err:
            failures.append(f"{name} unavailable: {err}")
            continue
        except Exception as err:  # noqa: BLE001 - native backends raise assorted error types
            failures.append(f"{name}: {type(err).__name__}: {str(err).strip()[:300]}")
            continue
        if video.shape[0] == len(indices) and tuple(video.shape[-2:]) == tuple(hw):
            return video, name
        failures.append(f"{name}: returned shape {tuple(video.shape)}, expected ({len(indices)}, 3, {hw[0]}, {hw[1]})")
    raise VideoDecodeError(path, "every backend failed: " + "; ".join(failures))


def load_clip(
    path: str | os.PathLike,
    num_frames: int = 8,
    motion_frames: int = 64,
    size: int | None = 224,
    motion_size: int | None = 224,
    alpha: int = 4,
    backend: str = "auto",
    timeout_s: float = 120.0,
    motion_crop: str = "resize",
) -> Clip:
    """Decode a video once into uniformly sampled VLM frames and a dense centred motion clip.

    Args:
        path: video file.
        num_frames: frames for the VLM, uniform in time.
        motion_frames: length of the dense motion window, rounded down to a multiple of ``alpha``.
        size: short side of ``frames`` (None: native); never upscaled beyond the source except
            to reach 32 px.
        motion_size: short side and square crop of ``motion`` (None: native short side).
        alpha: SlowFast speed ratio; the motion length is a multiple of it.
        backend: ``"auto"`` (fallback over :data:`AUTO_ORDER`), ``"pyav"``, ``"decord"`` or
            ``"torchcodec"`` (that backend only).
        timeout_s: per-backend decode time limit (checked per frame by PyAV, after each call by
            the native backends).
        motion_crop: ``"resize"`` (short side to ``motion_size``, then the centre square) or
            ``"native"`` (the centre ``motion_size`` square of the native picture).

    Returns:
        The :class:`Clip`.

    Raises:
        VideoDecodeError: missing/empty/truncated file, not a video, no decodable frame, or every
            backend failed; the message names the path and the reason.
        ValueError: bad option values (lists the allowed backends).
    """
    path = Path(path)
    motion_len = _check_options(num_frames, motion_frames, alpha, backend)
    _check_file(path)
    try:
        info = probe(path)
    except ProbeError as err:
        raise VideoDecodeError(path, str(err)) from err
    frame_idx = uniform_indices(info.timestamps, num_frames, 1.0 / info.fps)  # (T,)
    motion_idx, padded = motion_indices(info.frame_count, motion_len)  # (T',)
    union = np.unique(np.concatenate([frame_idx, motion_idx]))  # decoded once, sorted

    native_short = min(info.height, info.width)
    frames_short = target_short_side(native_short, size)
    motion_short, motion_side = motion_sides(native_short, motion_size, motion_crop)
    decode_hw = resized_hw(info.height, info.width, max(frames_short, motion_short))
    order = AUTO_ORDER if backend == "auto" else (backend,)
    video, used = _decode(path, info, union, decode_hw, order, timeout_s)  # (U, 3, h, w)

    frames = _resize(video[np.searchsorted(union, frame_idx)], resized_hw(info.height, info.width, frames_short))
    motion = _resize(video[np.searchsorted(union, motion_idx)], resized_hw(info.height, info.width, motion_short))
    key = clip_key(
        path,
        num_frames=num_frames,
        motion_frames=motion_len,
        size=size,
        motion_size=motion_size,
        alpha=alpha,
        **({"motion_crop": motion_crop} if motion_crop != "resize" else {}),  # resize keys stay as they were
    )
    return Clip(
        path=str(path), key=key, frames=frames.contiguous(), motion=_centre_crop(motion, motion_side),
        fps=info.fps, frame_count=info.frame_count, duration=info.duration, width=info.width,
        height=info.height, rotation=info.rotation, padded=padded, backend=used,
    )  # fmt: skip
