"""Per-video cache of the frozen encoders' outputs (DESIGN.md: a video is encoded once per leaderboard).

Both encoders are deterministic functions of the clip, so their outputs are keyed by
``Clip.key`` (content hash + sampling settings) plus an encoder tag (which weights):

* **vision** -- Qwen3-VL's vision tower run by ``get_video_features`` on one video: the merged
  tokens (``pooler_output``, ``(n, d)``), every DeepStack level's tokens (``(n, d)`` each) and the
  ``video_grid_thw`` the prompt's placeholders are built from. The module feeds cached features
  back into HF's forward/generate through the ``mm_encoder_outputs={"video": ...}`` argument that
  Qwen3-VL accepts in place of ``pixel_values_videos`` (one entry per video, in prompt order);
  DeepStack levels travel in the same object, so nothing of the tower is recomputed.
* **motion** -- SlowFast fast-pathway tokens ``(T', C)`` *before* the trainable projector.

``FrozenEncoders`` counts videos actually encoded (``calls["vision"]``, ``calls["motion"]``);
with a non-frozen vision tower the vision cache is bypassed (features carry gradients).
Entries live in a memory LRU on the CPU and optionally in ``disk_dir`` (one ``.pt`` per entry).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass
class VisionFeatures:
    """One video's vision-tower output."""

    grid_thw: torch.Tensor  # (3,) long: temporal groups, patch rows, patch cols
    embeds: torch.Tensor  # (n, d) merged tokens
    deepstack: list[torch.Tensor]  # per DeepStack level, (n, d)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> VisionFeatures:
        """Copy to ``device`` (and ``dtype`` for the float tensors)."""
        return VisionFeatures(
            self.grid_thw.to(device),
            self.embeds.to(device, dtype),
            [d.to(device, dtype) for d in self.deepstack],
        )


def nbytes(value: Any) -> int:
    """Bytes held by the tensors of a cache entry (a tensor or :class:`VisionFeatures`).

    >>> nbytes(torch.zeros(4, dtype=torch.float32)), nbytes(VisionFeatures(torch.zeros(3, dtype=torch.long),
    ...                                                                   torch.zeros(2, 4), [torch.zeros(2, 4)]))
    (16, 88)
    """
    if torch.is_tensor(value):
        return value.nbytes
    if isinstance(value, VisionFeatures):
        return value.grid_thw.nbytes + value.embeds.nbytes + sum(d.nbytes for d in value.deepstack)
    raise TypeError(f"cannot size a cache entry of type {type(value).__name__}")


class EncoderCache:
    """LRU memory cache bounded by bytes, with an optional disk tier.

    A real video's entry is ~6.6 MiB (Qwen3-VL-4B vision tokens + 3 DeepStack levels), so a bound
    by entries hides tens of GiB of host RAM per rank; the bound is on the tensors' bytes.

    Args:
        max_bytes: memory-tier budget (oldest use evicted first; an entry larger than the budget
            is not kept in memory).
        disk_dir: directory for ``.pt`` files; ``None`` keeps the cache in memory only.
    """

    def __init__(self, max_bytes: int = 4 << 30, disk_dir: str | None = None):
        self.max_bytes = max_bytes
        self.disk_dir = Path(disk_dir).expanduser() if disk_dir else None
        self.memory: OrderedDict[str, Any] = OrderedDict()
        self.bytes = 0
        self.hits = 0

    def _file(self, key: str) -> Path:
        assert self.disk_dir is not None
        return self.disk_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.pt"

    def get(self, key: str) -> Any | None:
        """The entry under ``key`` (memory, then disk) or ``None``."""
        if key in self.memory:
            self.memory.move_to_end(key)
            self.hits += 1
            return self.memory[key]
        if self.disk_dir is not None and self._file(key).is_file():
            value = torch.load(self._file(key), map_location="cpu", weights_only=False)
            self._remember(key, value)
            self.hits += 1
            return value
        return None

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` (CPU tensors) in memory and, when configured, on disk."""
        self._remember(key, value)
        if self.disk_dir is not None:
            self.disk_dir.mkdir(parents=True, exist_ok=True)
            torch.save(value, self._file(key))

    def _remember(self, key: str, value: Any) -> None:
        if key in self.memory:
            self.bytes -= nbytes(self.memory.pop(key))
        self.memory[key] = value
        self.bytes += nbytes(value)
        while self.bytes > self.max_bytes and self.memory:
            self.bytes -= nbytes(self.memory.popitem(last=False)[1])

    def clear(self) -> None:
        """Drop the memory tier (the disk tier stays)."""
        self.memory.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.memory)


class FrozenEncoders:
    """Vision tower + SlowFast behind the cache, batched over the uncached clips of a call.

    Args:
        model: ``Qwen3VLForConditionalGeneration`` (unwrapped).
        video_processor: the processor's ``Qwen3VLVideoProcessor``.
        motion_encoder: the frozen :class:`~lightning_modules.motion.SlowFastMotionEncoder`.
        cache: where entries live; ``None`` disables caching entirely.
        tag: identifies the encoder weights (part of every key).
        cache_vision: ``False`` when the vision tower trains (features must carry gradients).
    """

    def __init__(
        self,
        model: Any,
        video_processor: Any,
        motion_encoder: torch.nn.Module,
        cache: EncoderCache | None,
        tag: str,
        cache_vision: bool = True,
    ):
        self.model = model
        self.video_processor = video_processor
        self.motion_encoder = motion_encoder
        self.cache = cache
        self.tag = tag
        self.cache_vision = cache_vision
        self.calls = {"vision": 0, "motion": 0}

    def _cached(
        self, kind: str, clips: Sequence[Any], use_cache: bool, compute: Callable[[list[Any]], list[Any]]
    ) -> list[Any]:
        """Look every clip up, encode the misses in one batch, store them, keep the order."""
        keys = [f"{kind}:{self.tag}:{c.key}" for c in clips]
        found = [self.cache.get(k) if (use_cache and self.cache is not None) else None for k in keys]
        todo = [i for i, f in enumerate(found) if f is None]
        # one clip may appear twice in a batch: encode each distinct key once
        first: dict[str, int] = {}
        for i in todo:
            first.setdefault(keys[i], i)
        if first:
            computed = compute([clips[i] for i in first.values()])
            self.calls[kind] += len(first)
            for key, value in zip(first, computed):
                if use_cache and self.cache is not None:
                    self.cache.put(key, value)
                for i in todo:
                    if keys[i] == key:
                        found[i] = value
        return found

    def vision(self, clips: Sequence[Any], device: torch.device, dtype: torch.dtype) -> list[VisionFeatures]:
        """Vision-tower features of each clip's ``frames`` (in order), on ``device``."""
        use = self.cache_vision
        feats = self._cached("vision", clips, use, lambda cs: self._encode_vision(cs, device, use))
        return [f.to(device, dtype) for f in feats]

    def _encode_vision(self, clips: list[Any], device: torch.device, detach: bool) -> list[VisionFeatures]:
        out = self.video_processor(videos=[c.frames for c in clips], return_tensors="pt", do_sample_frames=False)
        pixels = out["pixel_values_videos"].to(device)  # (sum patches, C*t*p*p)
        grids = out["video_grid_thw"].to(device)  # (V, 3)
        with torch.set_grad_enabled(not detach and torch.is_grad_enabled()):
            enc = self.model.model.get_video_features(pixels, grids, return_dict=True)
        result = []
        for v in range(len(clips)):
            item = VisionFeatures(grids[v], enc.pooler_output[v], [lvl[v] for lvl in enc.deepstack_features])
            if detach:  # cached entries live on the CPU, without autograd history
                item = VisionFeatures(
                    item.grid_thw.cpu(), item.embeds.detach().cpu(), [d.detach().cpu() for d in item.deepstack]
                )
            result.append(item)
        return result

    def motion(self, clips: Sequence[Any], device: torch.device) -> torch.Tensor:
        """SlowFast tokens ``(N, T', C)`` of each clip's ``motion`` window."""
        feats = self._cached("motion", clips, True, lambda cs: self._encode_motion(cs, device))
        return torch.stack(feats).to(device)

    def _encode_motion(self, clips: list[Any], device: torch.device) -> list[torch.Tensor]:
        motion = torch.stack([c.motion for c in clips]).to(device)  # (N, T', 3, H, W) uint8
        return list(self.motion_encoder(motion).cpu())


# ---------------------------------------------------------------------- feeding cached features
@dataclass
class PromptInputs:
    """``B`` tokenized prompts and their videos' frozen-encoder outputs (built by the module).

    Attributes:
        prompt_ids: per prompt, ``(L_b,)`` token ids (placeholders already expanded).
        vision: per video, in prompt order (``videos_per_prompt`` per prompt).
        motion: ``(B, videos_per_prompt * T', C)`` SlowFast tokens (before the projector).
        videos_per_prompt: 2 for pairs, 1 for the pointwise prompt.
    """

    prompt_ids: list[torch.Tensor]
    vision: list[VisionFeatures]
    motion: torch.Tensor
    videos_per_prompt: int

    def __len__(self) -> int:
        return len(self.prompt_ids)


def expand_inputs(inputs: PromptInputs, k: int) -> PromptInputs:
    """Repeat every prompt ``k`` times, prompt-major (rows ``b*k .. b*k+k-1`` are prompt ``b``)."""
    if k == 1:
        return inputs
    v = inputs.videos_per_prompt
    return PromptInputs(
        [p for p in inputs.prompt_ids for _ in range(k)],
        [f for b in range(len(inputs)) for _ in range(k) for f in inputs.vision[b * v : (b + 1) * v]],
        inputs.motion.repeat_interleave(k, dim=0),
        v,
    )


def left_pad(seqs: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack 1-D id tensors, padding on the left; returns ``(ids, attention_mask)``, both ``(N, W)``.

    >>> ids, mask = left_pad([torch.tensor([1, 2]), torch.tensor([3])], pad_id=0)
    >>> ids.tolist(), mask.tolist()
    ([[1, 2], [0, 3]], [[1, 1], [0, 1]])
    """
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        if len(s):
            ids[row, width - len(s) :] = s
            mask[row, width - len(s) :] = 1
    return ids, mask


def assemble(
    seqs: Sequence[torch.Tensor],
    vision: Sequence[VisionFeatures],
    image_token_id: int,
    video_token_id: int,
    pad_id: int,
) -> dict[str, Any]:
    """Qwen3-VL forward/generate kwargs for token rows whose videos' features are ``vision``.

    ``mm_encoder_outputs["video"]`` replaces ``pixel_values_videos``: its ``pooler_output`` is a
    tuple of per-video tokens and ``deepstack_features`` one such tuple per DeepStack level,
    exactly what ``Qwen3VLModel.get_video_features`` returns.
    """
    from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

    ids, mask = left_pad(seqs, pad_id)
    types = torch.zeros_like(ids, dtype=torch.int)
    types[ids == image_token_id] = 1
    types[ids == video_token_id] = 2
    levels = len(vision[0].deepstack) if vision else 0
    video = BaseModelOutputWithDeepstackFeatures(
        pooler_output=tuple(f.embeds for f in vision),
        deepstack_features=[tuple(f.deepstack[i] for f in vision) for i in range(levels)],
    )
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "mm_token_type_ids": types,
        "video_grid_thw": torch.stack([f.grid_thw for f in vision]),
        "mm_encoder_outputs": {"video": video},
    }
