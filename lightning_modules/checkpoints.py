"""Reading VersusQ checkpoints: ``init_from`` (SFT -> MC-GRPO), the reference policy, the CLI.

One place decides what a checkpoint path may be and how its weights and saved settings are
read, so the weight hand-off, the KL reference and ``run.py ... --ckpt_path`` agree.
Checkpoints written before the model/LightningModule split (``lightning_modules/model.py``) name
the VLM ``model.*`` and the motion/head parts at the top level; :func:`upgrade_state_dict` maps
them onto today's names.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

#: Top-level prefixes of a pre-split checkpoint -> today's (all parts now live under ``model.``).
_LEGACY_PREFIXES = {"model.": "model.vlm.", "motion_encoder.": "model.motion_encoder.",
                    "motion_projector.": "model.motion_projector.", "head.": "model.head."}


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
        out[_LEGACY_PREFIXES[prefix] + key[len(prefix):] if prefix else key] = value
    return out


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dictionary at ``path`` (a Lightning ``.ckpt`` file).

    Raises:
        FileNotFoundError: nothing at ``path``, naming it.
        ValueError: ``path`` exists but is not a checkpoint file.
    """
    file = Path(path).expanduser()
    if not file.exists():
        raise FileNotFoundError(f"checkpoint not found: {file}")
    if not file.is_file():
        raise ValueError(f"{file} is not a checkpoint file")
    return torch.load(file, map_location="cpu", weights_only=False)


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The (upgraded) model state dict of the checkpoint at ``path``."""
    checkpoint = load_checkpoint(path)
    return upgrade_state_dict(checkpoint.get("state_dict", checkpoint))


def load_hparams(path: str | Path) -> dict[str, Any]:
    """The model settings a LightningCLI run saved in the checkpoint (``{}`` when none)."""
    return dict(load_checkpoint(path).get("hyper_parameters", {}))


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
