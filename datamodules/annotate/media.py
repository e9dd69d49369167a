"""How a video is shown to the annotator: JPEG frames or the whole file as a ``video_url``.

* ``frames`` -- the project's own sampling (:func:`datamodules.video.load_clip`: ``num_frames``
  frames uniform in time, short side ``frame_size``), each sent as a base64 JPEG ``image_url``
  part. The annotator then sees what the trained model will see, so its rationale cites only
  evidence present in those frames; any OpenAI-compatible vision endpoint accepts it.
* ``video_url`` -- the file itself as a base64 ``data:`` URL in a ``video_url`` part (vLLM's
  OpenAI server accepts it for video models such as Qwen2.5-VL / Qwen3-VL); the server samples
  frames with its own settings, so temporal artefacts between the 8 frames can be seen too.
"""

from __future__ import annotations

import base64
import io
import mimetypes
from pathlib import Path
from typing import Any

# PIL: a requirement of torchvision and matplotlib (torchvision.io's JPEG codec is deprecated)
from PIL import Image

from datamodules.annotate.prompt import INPUTS, InputMode
from datamodules.video import VideoDecodeError, load_clip

__all__ = ["video_parts"]


def _jpeg_base64(frame: Any, quality: int) -> str:
    """One ``(3, H, W)`` uint8 RGB frame as a base64 JPEG string."""
    buf = io.BytesIO()
    image = Image.fromarray(frame.permute(1, 2, 0).contiguous().numpy())  # (H, W, 3)
    image.save(buf, format="JPEG", quality=quality)
    return base64.b64encode(buf.getvalue()).decode()


def _frame_parts(path: Path, num_frames: int, frame_size: int | None, quality: int) -> list[dict]:
    # motion_frames=alpha=1: the motion clip is not needed here, one frame is the least to decode
    clip = load_clip(path, num_frames=num_frames, motion_frames=1, alpha=1, size=frame_size, motion_size=32)
    return [
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + _jpeg_base64(frame, quality)}}
        for frame in clip.frames
    ]  # (T, 3, H, W)


def _video_url_part(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise VideoDecodeError(path, "file not found")
    mime = mimetypes.guess_type(path.name)[0] or "video/mp4"
    data = base64.b64encode(path.read_bytes()).decode()
    return {"type": "video_url", "video_url": {"url": f"data:{mime};base64,{data}"}}


def video_parts(
    path: str | Path, mode: InputMode = "frames", num_frames: int = 8, frame_size: int | None = 448, quality: int = 95
) -> list[dict[str, Any]]:
    """Chat content parts that show one video.

    Args:
        path: the video file.
        mode: ``frames`` or ``video_url`` (module docstring).
        num_frames: frames per video for ``frames`` (the paper's model sees 8).
        frame_size: short side of the frames (never upscaled); ``None`` keeps the native size.
        quality: JPEG quality of the frames (high: re-compression must not add artefacts).

    Raises:
        ValueError: unknown ``mode`` (the allowed values are listed).
        VideoDecodeError: missing or undecodable file (path and reason named).
    """
    if mode not in INPUTS:
        raise ValueError(f"unknown input mode {mode!r}; allowed: {list(INPUTS)}")
    path = Path(path)
    if mode == "video_url":
        return [_video_url_part(path)]
    return _frame_parts(path, num_frames, frame_size, quality)
