"""Reading VersusQ checkpoints: ``init_from`` (SFT -> MC-GRPO), the reference policy, the CLI.

One place decides what a checkpoint path may be and how its weights and saved settings are
read, so the weight hand-off, the KL reference and ``run.py ... --ckpt_path`` agree. A path is

* a Lightning ``.ckpt`` **file**, or
* a **DeepSpeed checkpoint folder** as Lightning's DeepSpeed strategy writes it
  (``<name>.ckpt/latest`` + ``<name>.ckpt/<tag>/mp_rank_00_model_states.pt`` + ZeRO optimizer
  shards). Its saved settings are read from the rank-0 model-states file (no DeepSpeed needed);
  its weights are consolidated to float32 from the ZeRO shards by DeepSpeed's own utility
  (through Lightning's ``convert_zero_checkpoint_to_fp32_state_dict``) into
  ``<folder>/consolidated_fp32.ckpt`` (reused while newer than the shards); without DeepSpeed
  that is an ``ImportError`` with the install command.

Anything else is an error naming the path. Checkpoints written before the model/LightningModule
split (``lightning_modules/model.py``) name the VLM ``model.*`` and the motion/head parts at the
top level; :func:`upgrade_state_dict` maps them onto today's names.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from lightning_utilities.core.imports import RequirementCache

DEEPSPEED_INSTALL = "pip install 'versusq[deepspeed]'"
_DEEPSPEED = RequirementCache("deepspeed>=0.16")
CONSOLIDATED = "consolidated_fp32.ckpt"

#: Top-level prefixes of a pre-split checkpoint -> today's (all parts now live under ``model.``).
_LEGACY_PREFIXES = {
    "model.": "model.vlm.",
    "motion_encoder.": "model.motion_encoder.",
    "motion_projector.": "model.motion_projector.",
    "head.": "model.head.",
}


def upgrade_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Rename a pre-split checkpoint's keys to today's layout (other state dicts pass unchanged).

    >>> upgrade_state_dict({"model.lm_head.weight": 1, "head.net.0.bias": 2})
    {'model.vlm.lm_head.weight': 1, 'model.head.net.0.bias': 2}
    >>> upgrade_state_dict({"model.vlm.lm_head.weight": 1})
    {'model.vlm.lm_head.weight': 1}
    """
    if not any(k.startswith(("head.", "motion_projector.")) for k in state):
        return state
    out = {}
    for key, value in state.items():
        prefix = next((p for p in _LEGACY_PREFIXES if key.startswith(p)), "")
        out[_LEGACY_PREFIXES[prefix] + key[len(prefix) :] if prefix else key] = value
    return out


def is_deepspeed_checkpoint(path: str | Path) -> bool:
    """Lightning's rule: a folder holding a DeepSpeed tag folder (``latest`` names it)."""
    path = Path(path)
    return path.is_dir() and _tag_dir(path) is not None


def _tag_dir(path: Path) -> Path | None:
    latest = path / "latest"
    tag = latest.read_text().strip() if latest.is_file() else "checkpoint"
    return path / tag if (path / tag).is_dir() else None


def checkpoint_path(path: str | Path) -> Path:
    """``path`` checked to be a checkpoint file or a DeepSpeed checkpoint folder.

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: a folder that is not a DeepSpeed checkpoint (naming the parent when ``path`` is
            the tag folder inside one).
    """
    file = Path(path).expanduser()
    if not file.exists():
        raise FileNotFoundError(f"checkpoint not found: {file}")
    if file.is_file() or is_deepspeed_checkpoint(file):
        return file
    if is_deepspeed_checkpoint(file.parent):
        raise ValueError(f"{file} is the inside of a DeepSpeed checkpoint: pass its folder {file.parent}")
    raise ValueError(
        f"{file} is a folder but not a DeepSpeed checkpoint (no tag folder such as "
        "checkpoint/ with mp_rank_00_model_states.pt); give a .ckpt file or such a folder"
    )


def consolidate(path: str | Path) -> Path:
    """The float32 single-file form of a DeepSpeed checkpoint folder (written once, then reused).

    Raises:
        ImportError: DeepSpeed is not installed (with the install command).
    """
    folder = checkpoint_path(path)
    out = folder / CONSOLIDATED
    tag = _tag_dir(folder)
    assert tag is not None
    newest = max(f.stat().st_mtime for f in tag.iterdir())
    if out.is_file() and out.stat().st_mtime >= newest:
        return out
    if not _DEEPSPEED:
        raise ImportError(
            f"{folder} is a DeepSpeed (ZeRO) checkpoint folder; consolidating its weights needs "
            f"DeepSpeed: {DEEPSPEED_INSTALL} (or give the consolidated .ckpt file)"
        )
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    convert_zero_checkpoint_to_fp32_state_dict(folder, out)
    return out


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dictionary at ``path`` (a DeepSpeed folder is consolidated first)."""
    file = checkpoint_path(path)
    if file.is_dir():
        file = consolidate(file)
    return torch.load(file, map_location="cpu", weights_only=False)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The (upgraded) model state dict of the checkpoint at ``path``."""
    checkpoint = load_checkpoint(path)
    return upgrade_state_dict(checkpoint.get("state_dict", checkpoint))


def load_hparams(path: str | Path) -> dict[str, Any]:
    """The model settings a LightningCLI run saved in the checkpoint (``{}`` when none).

    Read without loading the weights (memory-mapped file; a DeepSpeed folder's rank-0 client state).
    """
    file = checkpoint_path(path)
    if file.is_dir():
        tag = _tag_dir(file)
        assert tag is not None
        file = tag / "mp_rank_00_model_states.pt"
    return dict(torch.load(file, map_location="cpu", weights_only=False, mmap=True).get("hyper_parameters", {}))


def _tensor_digest(tensor: torch.Tensor) -> bytes:
    data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy()
    return hashlib.blake2b(memoryview(data), digest_size=16).digest()


def weights_digest(named: list[tuple[str, torch.Tensor]]) -> str:
    """Content hash of named tensors: blake2b of each tensor's raw bytes, then of (name, dtype,
    shape, digest) in name order.

    Tensors are hashed in parallel threads (hashlib releases the GIL), ~1 GB/s per core, so a
    4B-parameter bf16 model (8 GB) hashes in seconds.

    >>> a = weights_digest([("w", torch.zeros(2))])
    >>> a == weights_digest([("w", torch.zeros(2))]), a == weights_digest([("w", torch.ones(2))])
    (True, False)
    """
    ordered = sorted(named, key=lambda item: item[0])
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        digests = list(pool.map(_tensor_digest, [t for _, t in ordered]))
    h = hashlib.blake2b(digest_size=16)
    for (name, tensor), digest in zip(ordered, digests):
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode() + digest)
    return h.hexdigest()
