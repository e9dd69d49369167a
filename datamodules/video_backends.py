"""Video probing and the three decoding backends behind :func:`datamodules.video.load_clip`.

Every file is first *probed* with PyAV (:func:`probe`): the container is opened, every video
packet is demuxed (no decoding) to get the exact frame count, the presentation timestamps and the
keyframe positions, and packets are fed to the decoder only until the first frame comes out (that
frame gives the display rotation and proves the stream decodes). Bad files are rejected here with a
precise reason, so the native backends only ever see files FFmpeg could already read: decord 0.6
is known to crash or hang on some broken inputs, and running it only behind this check is the
decision that keeps ``load_clip`` from segfaulting. The probe costs one demux pass (milliseconds
for the few-MB clips of the VQA benchmarks) plus one keyframe decode.

A backend is a function ``decode(path, info, indices, size_hw, deadline) -> (N, 3, h, w) uint8``
that decodes the sorted unique frame ``indices`` (presentation order) once, resized *while
decoding* to ``size_hw`` in display orientation, with the rotation already applied. All three
agree on frame numbering because they all count frames in presentation order.

Rotation: PyAV returns frames in coded orientation (we rotate with ``torch.rot90``); torchcodec
applies the display matrix itself (its ``Resize`` size is in display orientation); decord 0.6
tries to and returns a corrupt buffer (wrong channel count, ``get_batch`` fails), so the decord
backend refuses rotated streams and ``load_clip`` falls back to the next backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

# Demuxers that read single still images: a PNG/JPEG opens in FFmpeg as a one-frame "video".
_IMAGE_FORMATS = ("image2", "gif_pipe", "webp_pipe", "tiff_pipe")


class BackendError(RuntimeError):
    """A backend could not decode a file that passed the probe (the next backend is tried)."""


class BackendUnavailable(BackendError):
    """A backend cannot run in this environment at all (e.g. torchcodec without FFmpeg libs)."""


class ProbeError(ValueError):
    """The file is not a decodable video; the message is the human-readable reason."""


@dataclass(frozen=True)
class VideoInfo:
    """What the PyAV probe learnt about a file's first video stream.

    Attributes:
        fps: average frame rate (frames per second).
        frame_count: number of video frames (demuxed packets), presentation order.
        duration: seconds from the first frame's timestamp to the end of the last frame.
        width: displayed width (after rotation).
        height: displayed height (after rotation).
        rotation: counter-clockwise display rotation in degrees, one of 0, 90, 180, 270.
        pts: (N,) int64 presentation timestamps in ``time_base`` units, sorted.
        time_base: seconds per ``pts`` unit.
        keyframes: (K,) int64 frame indices of keyframes, sorted.
    """

    fps: float
    frame_count: int
    duration: float
    width: int
    height: int
    rotation: int
    pts: np.ndarray
    time_base: float
    keyframes: np.ndarray

    @property
    def timestamps(self) -> np.ndarray:
        """(N,) float64 presentation times in seconds, relative to the first frame."""
        return (self.pts - self.pts[0]).astype(np.float64) * self.time_base


def _normalise_rotation(degrees: float) -> int:
    """Snap a display-matrix angle to a multiple of 90 in [0, 360).

    >>> [_normalise_rotation(d) for d in (0, 90, -90, 180.0, 269.6, 450)]
    [0, 90, 270, 180, 270, 90]
    """
    return int(round(degrees / 90.0)) * 90 % 360


def _open_failure_reason(path: Path, err: Exception) -> str:
    """Explain why FFmpeg could not open ``path``, telling truncated MP4s from non-videos."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    if head[4:8] == b"ftyp":
        return f"truncated or corrupt MP4/MOV file (container index unreadable: {err})"
    return f"not a recognised video container ({err})"


def _first_frame(codec: av.codec.context.CodecContext, packet: av.Packet) -> av.VideoFrame | None:
    """Feed one packet to the decoder; return the first frame it yields, tolerating bad data."""
    try:
        frames = codec.decode(packet)
    except av.FFmpegError:
        return None
    return frames[0] if frames else None


def _flush_first_frame(codec: av.codec.context.CodecContext) -> av.VideoFrame | None:
    """Drain the decoder at end of stream; return the first frame it yields, if any."""
    try:
        frames = codec.decode(None)
    except av.FFmpegError:
        return None
    return frames[0] if frames else None


def _demux_index(
    container: av.container.InputContainer, stream: av.VideoStream
) -> tuple[list[int], list[int], av.VideoFrame | None, str | None]:
    """One pass over the packets: timestamps, keyframe timestamps, first decoded frame.

    Returns:
        (pts list, keyframe pts list, first frame or None, demux error message or None).
    """
    pts: list[int] = []
    key_pts: list[int] = []
    first: av.VideoFrame | None = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            pts.append(len(pts) if stamp is None else int(stamp))
            if packet.is_keyframe:
                key_pts.append(pts[-1])
            if first is None:
                first = _first_frame(stream.codec_context, packet)
    except av.FFmpegError as err:
        return pts, key_pts, first, str(err)
    if first is None and pts:
        first = _flush_first_frame(stream.codec_context)
    return pts, key_pts, first, None


def _check_container(container: av.container.InputContainer) -> av.VideoStream:
    """Reject still images and files without a video stream; return the video stream."""
    fmt = container.format.name
    if fmt in _IMAGE_FORMATS or fmt.endswith("_pipe"):
        raise ProbeError(f"not a video: still-image file (format {fmt!r})")
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise ProbeError(f"not a video: no video stream (streams: {', '.join(kinds)})")
    return container.streams.video[0]


def _build_info(stream: av.VideoStream, pts: list[int], key_pts: list[int], first: av.VideoFrame) -> VideoInfo:
    """Assemble :class:`VideoInfo` from the demux pass and the first decoded frame."""
    order = np.sort(np.asarray(pts, dtype=np.int64))  # (N,) presentation order
    time_base = float(stream.time_base) if stream.time_base else 1.0
    rate = stream.average_rate or stream.guessed_rate
    span = float(order[-1] - order[0]) * time_base
    fps = float(rate) if rate else ((len(order) - 1) / span if span > 0 else 25.0)
    rotation = _normalise_rotation(first.rotation or 0)
    width, height = first.width, first.height
    if rotation in (90, 270):
        width, height = height, width
    keyframes = np.searchsorted(order, np.asarray(sorted(set(key_pts)), dtype=np.int64))
    return VideoInfo(
        fps=fps,
        frame_count=len(order),
        duration=span + 1.0 / fps,
        width=width,
        height=height,
        rotation=rotation,
        pts=order,
        time_base=time_base,
        keyframes=keyframes.astype(np.int64) if len(keyframes) else np.zeros(1, dtype=np.int64),
    )


def probe(path: str | Path) -> VideoInfo:
    """Check that ``path`` is a decodable video and read its stream layout with PyAV.

    Args:
        path: an existing, non-empty file.

    Returns:
        The stream's :class:`VideoInfo`.

    Raises:
        ProbeError: the file cannot be opened, is an image or audio-only, is truncated (fewer
            packets than the header lists) or no frame decodes. The message is the reason.
    """
    path = Path(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError) as err:
        raise ProbeError(_open_failure_reason(path, err)) from err
    with container:
        stream = _check_container(container)
        header_frames = stream.frames
        pts, key_pts, first, demux_error = _demux_index(container, stream)
        if not pts:
            raise ProbeError(f"no video packets in the stream{': ' + demux_error if demux_error else ''}")
        if demux_error is not None or (header_frames > 0 and len(pts) < header_frames - max(2, header_frames // 20)):
            raise ProbeError(
                f"truncated video: header lists {header_frames} frames, file holds {len(pts)} "
                f"({demux_error or 'ends early'})"
            )
        if first is None:
            raise ProbeError(f"no decodable frame in {len(pts)} video packets")
        return _build_info(stream, pts, key_pts, first)


def _check_deadline(deadline: float, what: str) -> None:
    """Raise :class:`BackendError` once ``time.monotonic()`` is past ``deadline``."""
    if time.monotonic() > deadline:
        raise BackendError(f"decode timed out ({what})")


def _coded_size(info: VideoInfo, size_hw: tuple[int, int]) -> tuple[int, int]:
    """Target (width, height) in the stream's coded orientation for a display-space size."""
    h, w = size_hw
    return (h, w) if info.rotation in (90, 270) else (w, h)


def _seek_target(info: VideoInfo, wanted: int, position: int) -> int | None:
    """Keyframe to seek to before decoding frame ``wanted``, or None to keep decoding forward.

    >>> info = VideoInfo(30.0, 100, 3.3, 4, 4, 0, np.arange(100), 1 / 30, np.array([0, 50]))
    >>> _seek_target(info, 60, 10), _seek_target(info, 40, 10), _seek_target(info, 70, 55)
    (50, None, None)
    """
    key = int(info.keyframes[np.searchsorted(info.keyframes, wanted, side="right") - 1])
    return key if key > position else None


def _pyav_iter(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    info: VideoInfo,
    indices: np.ndarray,
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield ``(index, frame)`` for the sorted wanted ``indices``, seeking only to skip whole GOPs.

    Frames are identified by their pts (robust after a seek); a frame without pts gets the
    running position. A wanted index the decoder skips over is not yielded (filled later).
    """
    index_of = {int(p): i for i, p in enumerate(info.pts)}
    frames = container.decode(stream)
    position = 0  # index of the next frame the decoder will deliver
    for target in (int(i) for i in indices):
        key = _seek_target(info, target, position)
        if key is not None:
            container.seek(int(info.pts[key]), stream=stream, backward=True)
            frames, position = container.decode(stream), key
        for frame in frames:
            idx = index_of.get(frame.pts, position) if frame.pts is not None else position
            position = idx + 1
            if idx == target:
                yield idx, frame
            if idx >= target:
                break
        else:
            return  # end of stream before the remaining indices


def decode_pyav(
    path: str, info: VideoInfo, indices: np.ndarray, size_hw: tuple[int, int], deadline: float
) -> torch.Tensor:
    """Decode with PyAV: one forward pass with a keyframe seek plan, swscale resize per frame."""
    cw, ch = _coded_size(info, size_hw)
    out = torch.empty((len(indices), 3, *size_hw), dtype=torch.uint8)  # (N, 3, h, w)
    slot = {int(i): k for k, i in enumerate(indices)}
    done = np.zeros(len(indices), dtype=bool)
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for idx, frame in _pyav_iter(container, stream, info, indices):
            _check_deadline(deadline, f"frame {idx}")
            rgb = frame.reformat(width=cw, height=ch, format="rgb24", interpolation="BILINEAR")
            img = torch.from_numpy(rgb.to_ndarray()).permute(2, 0, 1)  # (3, ch, cw)
            out[slot[idx]] = torch.rot90(img, info.rotation // 90, dims=(1, 2))
            done[slot[idx]] = True
    return _fill_missing(out, done, "pyav")


def _fill_missing(out: torch.Tensor, done: np.ndarray, backend: str) -> torch.Tensor:
    """Replace frames past the real end of stream by the last decoded one (header over-count)."""
    if not done.any():
        raise BackendError(f"{backend} decoded none of the requested frames")
    for k in np.flatnonzero(~done):
        earlier = np.flatnonzero(done[:k])
        out[k] = out[earlier[-1] if len(earlier) else int(np.flatnonzero(done)[0])]
    return out


def decode_decord(
    path: str, info: VideoInfo, indices: np.ndarray, size_hw: tuple[int, int], deadline: float
) -> torch.Tensor:
    """Decode with decord's ``get_batch`` (decord seeks itself), resizing inside its filter graph."""
    if info.rotation:
        raise BackendError(f"decord 0.6 returns corrupt frames for rotated streams ({info.rotation} deg)")
    try:
        import decord
    except ImportError as err:
        raise BackendUnavailable(f"decord not installed ({err})") from err
    h, w = size_hw
    reader = decord.VideoReader(path, ctx=decord.cpu(0), width=w, height=h, num_threads=0)
    _check_deadline(deadline, "decord index")
    last = len(reader) - 1
    batch = reader.get_batch([min(int(i), last) for i in indices]).asnumpy()  # (N, h, w, 3)
    _check_deadline(deadline, "decord batch")
    return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()


_TORCHCODEC: list[tuple[type, type] | BackendUnavailable] = []  # memo: classes or the load error


def _torchcodec_classes() -> tuple[type, type]:
    """Import torchcodec and load its FFmpeg core once; raise BackendUnavailable if impossible.

    torchcodec needs a system FFmpeg (4 to 9) as shared libraries; without one it is reported as
    unavailable once and skipped, instead of re-trying the library loads for every clip.
    """
    if not _TORCHCODEC:
        try:
            from torchcodec._internally_replaced_utils import load_core_libraries
            from torchcodec.decoders import VideoDecoder
            from torchcodec.transforms import Resize

            load_core_libraries()
            _TORCHCODEC.append((VideoDecoder, Resize))
        except (ImportError, RuntimeError, OSError) as err:
            text = str(err).strip()
            first_line = text.splitlines()[0] if text else type(err).__name__
            _TORCHCODEC.append(BackendUnavailable(f"torchcodec cannot load its FFmpeg libraries: {first_line}"))
    item = _TORCHCODEC[0]
    if isinstance(item, BackendUnavailable):
        raise item
    return item


def decode_torchcodec(
    path: str, info: VideoInfo, indices: np.ndarray, size_hw: tuple[int, int], deadline: float
) -> torch.Tensor:
    """Decode with torchcodec (exact seek mode, decoder-side bilinear antialiased resize)."""
    decoder_cls, resize_cls = _torchcodec_classes()
    native = (info.height, info.width)
    transforms = None if tuple(size_hw) == native else [resize_cls(size=list(size_hw))]
    decoder = decoder_cls(path, num_ffmpeg_threads=0, seek_mode="exact", transforms=transforms)
    _check_deadline(deadline, "torchcodec index")
    last = decoder.metadata.num_frames - 1
    batch = decoder.get_frames_at([min(int(i), last) for i in indices]).data  # (N, 3, h, w)
    _check_deadline(deadline, "torchcodec batch")
    return batch.contiguous()


Decoder = Callable[[str, VideoInfo, np.ndarray, tuple[int, int], float], torch.Tensor]

BACKENDS: dict[str, Decoder] = {
    "pyav": decode_pyav,
    "decord": decode_decord,
    "torchcodec": decode_torchcodec,
}
