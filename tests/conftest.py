"""Shared pytest fixtures.

``../shared`` (real MOS label files and six real clips) sits beside the checkout in CI and on the
developers' machines but not in a user's fresh clone: tests that need it use the ``shared_dir``
fixture and skip cleanly when it is absent.

``make_clip`` / ``make_pair_batch`` / ``make_video_batch`` build the REAL batch types of
``datamodules.pair_datasets`` (what the datamodule's collate functions return) from seeded
random pixels, so model and callback tests exercise the objects production passes around.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from datamodules.pair_datasets import PairBatch, VideoBatch
from datamodules.video import Clip

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("VERSUSQ_SHARED", REPO_ROOT.parent / "shared"))
#: Motion frames of the test clips (a multiple of SlowFast's alpha = 4; small to stay fast).
MOTION_FRAMES = 8


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path to ``../shared``; skips the test when it is not there."""
    if not (SHARED_DIR / "data").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DIR} (only present in CI/dev checkouts)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def labels_dir(shared_dir: Path) -> Path:
    """``../shared/data/labels``: verbatim MOS label files of the public benchmarks."""
    return shared_dir / "data" / "labels"


@pytest.fixture(scope="session")
def real_videos_dir(shared_dir: Path) -> Path:
    """``../shared/data/videos``: six real clips with known MOS (``scores.csv``)."""
    return shared_dir / "data" / "videos"


def clip(i: int, size: int = 32, frames: int = 4, motion_frames: int = MOTION_FRAMES, scale: float = 1.0) -> Clip:
    """A decoded-clip stand-in: seeded random uint8 frames (``i`` = seed and name)."""
    g = torch.Generator().manual_seed(i)
    pixels = (torch.rand(frames, 3, size, size, generator=g) * 255 * scale).to(torch.uint8)
    motion = (torch.rand(motion_frames, 3, 32, 32, generator=g) * 255 * scale).to(torch.uint8)
    return Clip(
        path=f"clip{i}.mp4",
        key=f"key{i}",
        frames=pixels,
        motion=motion,
        fps=16.0,
        frame_count=32,
        duration=2.0,
        width=size,
        height=size,
        rotation=0,
        padded=False,
        backend="test",
    )


def pair_batch(
    pairs: Sequence[tuple[int, int]],
    margins: Sequence[float] | None = None,
    rationales: Sequence[str] | None = None,
    **clip_kwargs: object,
) -> PairBatch:
    """A ``PairBatch`` of ``clip(i)`` vs ``clip(j)``; margins default to ``0.1 * (i - j)``."""
    margin = [0.1 * (i - j) for i, j in pairs] if margins is None else list(margins)
    return PairBatch(
        clips_a=[clip(i, **clip_kwargs) for i, _ in pairs],  # type: ignore[arg-type]
        clips_b=[clip(j, **clip_kwargs) for _, j in pairs],  # type: ignore[arg-type]
        margin=torch.tensor(margin, dtype=torch.float32),
        rationale=None if rationales is None else list(rationales),
        benchmark=["syn"] * len(pairs),
        index_a=torch.tensor([i for i, _ in pairs]),
        index_b=torch.tensor([j for _, j in pairs]),
    )


def video_batch(indices: Sequence[int | None], mos: Sequence[float] | None = None, **clip_kwargs: object) -> VideoBatch:
    """A ``VideoBatch``; ``None`` entries are undecodable videos (``clip=None`` with a reason)."""
    values = [float("nan")] * len(indices) if mos is None else list(mos)
    return VideoBatch(
        clips=[None if i is None else clip(i, **clip_kwargs) for i in indices],  # type: ignore[arg-type]
        index=torch.arange(len(indices)),
        benchmark=["syn"] * len(indices),
        name=[f"clip{i}.mp4" for i in indices],
        mos=torch.tensor(values, dtype=torch.float32),
        error=["could not be decoded" if i is None else None for i in indices],
    )


@pytest.fixture(scope="session")
def make_clip() -> Callable[..., Clip]:
    """Factory of seeded test clips (see :func:`clip`)."""
    return clip


@pytest.fixture(scope="session")
def make_pair_batch() -> Callable[..., PairBatch]:
    """Factory of real ``PairBatch`` objects (see :func:`pair_batch`)."""
    return pair_batch


@pytest.fixture(scope="session")
def make_video_batch() -> Callable[..., VideoBatch]:
    """Factory of real ``VideoBatch`` objects (see :func:`video_batch`)."""
    return video_batch


def _deepspeed_folder(root: Path, state: dict[str, torch.Tensor], client: dict[str, Any]) -> Path:
    """The layout Lightning's DeepSpeed strategy writes for ZeRO-2 bf16 (``last.ckpt`` is a folder):
    ``latest`` naming the tag folder, the rank-0 model states (bf16 weights + ``client``, the
    Lightning checkpoint dict without weights and optimizer states) and one optimizer shard."""
    folder = root / "last.ckpt"
    tag = folder / "checkpoint"
    tag.mkdir(parents=True)
    (folder / "latest").write_text("checkpoint")
    bf16 = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}
    client = {k: v for k, v in client.items() if k not in ("state_dict", "optimizer_states")}
    torch.save({"module": bf16, "dp_world_size": 1, **client}, tag / "mp_rank_00_model_states.pt")
    torch.save({"optimizer_state_dict": {"zero_stage": 2}}, tag / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt")
    return folder


@pytest.fixture(scope="session")
def deepspeed_folder() -> Callable[..., Path]:
    """Factory ``(root, state_dict, client_state) -> folder`` of a fabricated DeepSpeed checkpoint."""
    return _deepspeed_folder


@pytest.fixture
def fake_deepspeed(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, torch.Tensor]], list[Path]]:
    """Install a stand-in for ``deepspeed.utils.zero_to_fp32`` (DeepSpeed cannot be installed on the
    CPU machines): given the float32 weights the ZeRO shards hold, returns the list of folders it
    consolidated. Lightning's real ``convert_zero_checkpoint_to_fp32_state_dict`` runs on top of it."""

    def install(fp32_state: dict[str, torch.Tensor]) -> list[Path]:
        calls: list[Path] = []
        module = types.ModuleType("deepspeed.utils.zero_to_fp32")
        module.get_fp32_state_dict_from_zero_checkpoint = (  # type: ignore[attr-defined]
            lambda folder, tag=None: calls.append(Path(folder)) or dict(fp32_state)
        )
        module.get_optim_files = lambda d: sorted(Path(d).glob("*optim_states.pt"))  # type: ignore[attr-defined]
        module.get_model_state_file = lambda d, stage: Path(d) / "mp_rank_00_model_states.pt"  # type: ignore[attr-defined]
        for name in ("deepspeed", "deepspeed.utils"):
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        monkeypatch.setitem(sys.modules, "deepspeed.utils.zero_to_fp32", module)
        monkeypatch.setattr("lightning_modules.checkpoints._DEEPSPEED", True)
        monkeypatch.setattr("lightning.pytorch.utilities.deepspeed._DEEPSPEED_AVAILABLE", True)
        return calls

    return install
