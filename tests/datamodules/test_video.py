"""Tests for datamodules/video.py: sampling, sizes, rotation, padding, bad input, backends."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from datamodules import video as video_mod
from datamodules import video_backends
from datamodules.video import VIDEO_EXTENSIONS, Clip, VideoDecodeError, list_videos, load_clip


def write_video(
    path: Path,
    n: int = 40,
    w: int = 96,
    h: int = 64,
    fps: int = 25,
    rotation: int | None = None,
    pix_fmt: str = "yuv420p",
    faststart: bool = False,
) -> Path:
    """Encode a small libx264 clip whose frame i has green level 6*i and a red top-left quadrant."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
        stream.options = {"g": "12", "crf": "10"}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n):
            img = np.zeros((h, w, 3), dtype=np.uint8)
            img[..., 1] = 6 * i
            img[: h // 2, : w // 2, 0] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic clips shared by the tests of this module."""
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "plain.mp4")
    write_video(root / "short.mp4", n=10)
    write_video(root / "rot90.mp4", rotation=90)
    write_video(root / "odd.mp4", w=67, h=45, pix_fmt="yuv444p", n=20)
    write_video(root / "tiny.mp4", w=24, h=16, n=12)
    return root


def green(frames: torch.Tensor) -> torch.Tensor:
    """Per-frame mean green level of a (T, 3, H, W) uint8 clip, outside the red quadrant."""
    h, w = frames.shape[-2:]
    return frames[:, 1, h // 2 :, w // 2 :].float().mean(dim=(1, 2))


def test_shapes_sampling_and_metadata(clip_dir: Path) -> None:
    clip = load_clip(clip_dir / "plain.mp4", num_frames=8, motion_frames=16, size=32, motion_size=24, alpha=4)
    assert isinstance(clip, Clip)
    assert clip.frames.dtype == torch.uint8 and clip.motion.dtype == torch.uint8
    assert tuple(clip.frames.shape) == (8, 3, 32, 48)  # short side 32, aspect 3:2 kept
    assert tuple(clip.motion.shape) == (16, 3, 24, 24)  # square centre crop
    assert (clip.frame_count, clip.width, clip.height, clip.rotation) == (40, 96, 64, 0)
    assert clip.fps == pytest.approx(25.0) and clip.duration == pytest.approx(1.6)
    assert not clip.padded
    # uniform sampling: segment centres of 40 frames in 8 segments -> frames 2, 7, ..., 37
    expected = 6 * (np.arange(8) * 5 + 2)
    assert np.allclose(green(clip.frames).numpy(), expected, atol=4)
    # dense window centred: frames 12..27, consecutive
    assert np.allclose(green(clip.motion).numpy(), 6 * np.arange(12, 28), atol=4)


def test_motion_length_multiple_of_alpha_and_padding(clip_dir: Path) -> None:
    clip = load_clip(clip_dir / "plain.mp4", motion_frames=18, alpha=4, size=32, motion_size=32)
    assert clip.motion.shape[0] == 16 and clip.motion.shape[0] % 4 == 0
    short = load_clip(clip_dir / "short.mp4", motion_frames=16, alpha=8, size=32, motion_size=32)
    assert short.padded and short.motion.shape[0] == 16
    levels = green(short.motion).numpy()
    assert np.allclose(levels[:10], 6 * np.arange(10), atol=4)
    assert np.allclose(levels[10:], levels[9], atol=1)  # repeat-padded with the last frame
    assert short.frames.shape[0] == 8  # more frames than the clip has: frames repeat


def test_sizes_native_odd_and_tiny(clip_dir: Path) -> None:
    native = load_clip(clip_dir / "plain.mp4", size=None, motion_size=None, motion_frames=8)
    assert tuple(native.frames.shape[-2:]) == (64, 96) and tuple(native.motion.shape[-2:]) == (
        64,
        64,
    )
    odd = load_clip(clip_dir / "odd.mp4", size=224, motion_size=224, motion_frames=8)
    assert tuple(odd.frames.shape[-2:]) == (45, 67)  # never upscaled beyond the source
    tiny = load_clip(clip_dir / "tiny.mp4", size=224, motion_size=224, motion_frames=8)
    assert tuple(tiny.frames.shape[-2:]) == (32, 48) and tuple(tiny.motion.shape[-2:]) == (32, 32)


def test_native_motion_crop_keeps_the_pixel_scale(clip_dir: Path) -> None:
    """``motion_crop="native"``: the centre square of the undecimated picture, not a resized one."""
    full = load_clip(clip_dir / "plain.mp4", size=32, motion_size=None, motion_frames=8, backend="pyav")
    crop = load_clip(
        clip_dir / "plain.mp4", size=32, motion_size=32, motion_frames=8, backend="pyav", motion_crop="native"
    )
    resized = load_clip(clip_dir / "plain.mp4", size=32, motion_size=32, motion_frames=8, backend="pyav")
    assert tuple(crop.motion.shape) == (8, 3, 32, 32) == tuple(resized.motion.shape)
    assert torch.equal(crop.motion, full.motion[..., 16:48, 16:48])  # 64x64 native centre -> its centre 32
    # the red quadrant's edge (row 32, col 48 natively) sits at the crop's centre; resizing moves it
    assert crop.motion[0, 0, :16, :16].float().mean() > 200 and crop.motion[0, 0, 16:, 16:].float().mean() < 50
    assert crop.key != resized.key
    with pytest.raises(ValueError, match="motion_crop"):
        load_clip(clip_dir / "plain.mp4", size=32, motion_size=32, motion_frames=8, motion_crop="fragments")


@pytest.mark.parametrize("backend", ["pyav", "torchcodec"])
def test_rotation_metadata_applied(clip_dir: Path, backend: str) -> None:
    try:
        clip = load_clip(clip_dir / "rot90.mp4", size=None, motion_frames=8, backend=backend)
    except VideoDecodeError as err:
        if "unavailable" in err.reason:
            pytest.skip(err.reason)
        raise
    assert clip.rotation == 90 and (clip.width, clip.height) == (64, 96)
    assert tuple(clip.frames.shape[-2:]) == (96, 64)  # displayed portrait
    # the red quadrant (coded top-left) is displayed bottom-left after a 90 deg CCW rotation
    red = clip.frames[0, 0].float()
    assert red[-10:, :10].mean() > 200 and red[:10, :10].mean() < 50


def test_rotation_auto_skips_decord(clip_dir: Path) -> None:
    clip = load_clip(clip_dir / "rot90.mp4", size=None, motion_frames=8)
    assert clip.backend != "decord" and tuple(clip.frames.shape[-2:]) == (96, 64)


def test_real_portrait_clip(real_videos_dir: Path) -> None:
    clip = load_clip(real_videos_dir / "yfcc-batch3_1724.mp4")
    assert (clip.width, clip.height) == (406, 720)
    assert tuple(clip.frames.shape) == (8, 3, 397, 224) and tuple(clip.motion.shape) == (
        64,
        3,
        224,
        224,
    )
    assert clip.frame_count == 243


def test_backends_agree(clip_dir: Path) -> None:
    clips = {}
    for name in ("pyav", "decord", "torchcodec"):
        try:
            # 40 px: decord 0.6 fails its buffer-size check on some output sizes (e.g. 72x48)
            clips[name] = load_clip(clip_dir / "plain.mp4", size=40, motion_size=40, motion_frames=16, backend=name)
        except VideoDecodeError as err:
            assert "unavailable" in err.reason, err.reason
    assert {"pyav", "decord"} <= set(clips)
    ref = clips["pyav"]
    for name, clip in clips.items():
        assert clip.backend == name and clip.frames.shape == ref.frames.shape and clip.key == ref.key
        assert (clip.frames.float() - ref.frames.float()).abs().mean() < 4.0, name
        assert (clip.motion.float() - ref.motion.float()).abs().mean() < 4.0, name


def test_fallback_to_next_backend(clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> torch.Tensor:
        raise RuntimeError("simulated backend crash")

    first = video_mod.AUTO_ORDER[0]
    second = "pyav" if first != "pyav" else "decord"
    monkeypatch.setitem(video_backends.BACKENDS, first, broken)
    monkeypatch.setattr(video_mod, "AUTO_ORDER", (first, second))
    clip = load_clip(clip_dir / "plain.mp4", size=32, motion_frames=8)
    assert clip.backend == second
    with pytest.raises(VideoDecodeError, match="simulated backend crash"):
        load_clip(clip_dir / "plain.mp4", size=32, motion_frames=8, backend=first)


def test_key_stable_and_sensitive(clip_dir: Path, tmp_path: Path) -> None:
    path = clip_dir / "plain.mp4"
    a = load_clip(path, size=32, motion_frames=8)
    b = load_clip(path, size=32, motion_frames=8)
    assert a.key == b.key and len(a.key) == 32
    assert load_clip(path, size=40, motion_frames=8).key != a.key
    assert load_clip(path, size=32, motion_frames=8, num_frames=4).key != a.key
    other = write_video(tmp_path / "other.mp4", n=41)
    assert load_clip(other, size=32, motion_frames=8).key != a.key


def _bad_files(root: Path, good: Path) -> dict[str, Path]:
    """Write one file per bad-input case; returns case name -> path."""
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n" * 50)
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(root / "image.png")
    data = good.read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])  # index (moov) at the end: lost
    fast = write_video(root / "fast.mp4", n=40, faststart=True)
    fast_bytes = fast.read_bytes()
    (root / "truncated_fast.mp4").write_bytes(fast_bytes[: len(fast_bytes) // 2])  # data cut
    mdat = fast_bytes.find(b"mdat") + 4
    (root / "garbage.mp4").write_bytes(fast_bytes[:mdat] + bytes(len(fast_bytes) - mdat))
    with av.open(str(root / "audio.m4a"), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    cases = [
        "empty.mp4",
        "text.mp4",
        "image.png",
        "truncated.mp4",
        "truncated_fast.mp4",
        "garbage.mp4",
        "audio.m4a",
    ]
    return {name: root / name for name in cases} | {"missing": root / "missing.mp4"}


BAD_REASONS = {
    "missing": "not found",
    "empty.mp4": "empty",
    "text.mp4": "not a recognised video",
    "image.png": "still-image",
    "truncated.mp4": "truncated",
    "truncated_fast.mp4": "truncated",
    "garbage.mp4": "no decodable frame",
    "audio.m4a": "no video stream",
}


@pytest.mark.parametrize("backend", ["auto", "pyav", "decord", "torchcodec"])
def test_bad_input_raises_named_error(clip_dir: Path, tmp_path: Path, backend: str) -> None:
    for case, path in _bad_files(tmp_path, clip_dir / "plain.mp4").items():
        with pytest.raises(VideoDecodeError) as info:
            load_clip(path, size=32, motion_frames=8, backend=backend)
        assert str(path) in str(info.value) and info.value.path == str(path), case
        assert BAD_REASONS[case] in info.value.reason, (case, info.value.reason)


def test_bad_options(clip_dir: Path) -> None:
    with pytest.raises(ValueError, match="allowed: 'auto'"):
        load_clip(clip_dir / "plain.mp4", backend="ffmpeg")
    with pytest.raises(ValueError, match="alpha"):
        load_clip(clip_dir / "plain.mp4", motion_frames=2, alpha=4)


def test_list_videos(tmp_path: Path) -> None:
    for name in ("b.mp4", "a.MOV", "c.webm", "notes.txt", "d.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.mkv").write_bytes(b"x")
    assert [p.name for p in list_videos(tmp_path)] == ["a.MOV", "b.mp4", "c.webm"]
    assert [p.name for p in list_videos(tmp_path, recursive=True)][-1] == "e.mkv"
    assert ".mp4" in VIDEO_EXTENSIONS
    with pytest.raises(NotADirectoryError, match="nope"):
        list_videos(tmp_path / "nope")


def test_variable_frame_rate_sampled_uniformly_in_time(tmp_path: Path) -> None:
    times_ms = [0, 40, 80, 120, 160, 1000, 1040, 1080, 1120, 1160]  # an 840 ms gap after frame 4
    path = tmp_path / "vfr.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i, t in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), 20 * i, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    clip = load_clip(path, num_frames=4, motion_frames=4, size=None, backend="pyav")
    levels = clip.frames[:, 0, 16, 16].float().numpy() / 20  # frame index encoded in the level
    assert np.allclose(levels, [4, 4, 4, 8], atol=0.2)  # frame 4 is shown for most of the clip
    assert clip.frame_count == 10


def test_unavailable_backend_is_skipped(clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = video_backends.BackendUnavailable("torchcodec cannot load its FFmpeg libraries: test")
    monkeypatch.setattr(video_backends, "_TORCHCODEC", [missing])
    monkeypatch.setattr(video_mod, "AUTO_ORDER", ("torchcodec", "pyav"))
    assert load_clip(clip_dir / "plain.mp4", size=32, motion_frames=8).backend == "pyav"
    with pytest.raises(VideoDecodeError, match="torchcodec unavailable"):
        load_clip(clip_dir / "plain.mp4", size=32, motion_frames=8, backend="torchcodec")
