"""The GPU smoke's models and inputs (``scripts/gpu_smoke.py``): a shrunk real-architecture
Qwen3-VL built from a config file, the vLLM engine settings of ``conf/gpu/vllm.yaml``, and
deterministic random clips/pairs (the smoke checks the machinery, not quality).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from datamodules.pair_datasets import PairBatch
from datamodules.video import Clip
from lightning_modules import backbone as bb

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "qwen3-vl-4b-instruct.config.json"
RATIONALE = "A is sharper; B shows blocking."
LM_LAYERS = ".language_model.layers."
VLLM_YAML = Path(__file__).resolve().parents[1] / "conf" / "gpu" / "vllm.yaml"


def vllm_settings(memory: float, max_model_len: int) -> dict[str, Any]:
    """The engine settings of conf/gpu/vllm.yaml (what a researcher runs), with the smoke's memory
    share and context length."""
    import yaml

    callbacks = yaml.safe_load(VLLM_YAML.read_text())["trainer"]["callbacks+"]
    settings = next(c["init_args"]["vllm"] for c in callbacks if c["init_args"].get("engine") == "vllm")
    return {**settings, "gpu_memory_utilization": memory, "max_model_len": max_model_len}


def shrunk_real_backbone(
    config_json: Path,
    layers: int,
    name: str = "tiny",
    lora: dict[str, Any] | None = None,
    attn_implementation: str | None = None,
    dtype: str = "bfloat16",
    freeze_vision: bool = True,
    seed: int = 0,
) -> bb.Backbone:
    """``load_backbone`` stand-in (same arguments after the first two; ``name`` is ignored): the
    architecture of ``config_json`` with ``layers`` text layers / vision blocks, random weights.

    Real widths, heads, M-RoPE sections and vocabulary size; the special-token ids of the config
    are the embedded tokenizer's (the model finds video placeholders by ``config.video_token_id``:
    the hub ids 151652-151656 would match no token of that tokenizer and every forward would fail).
    """
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    processor = bb.build_tiny_processor()
    ids = {t: processor.tokenizer.convert_tokens_to_ids(t) for t in bb.QWEN_TOKENS}
    raw = json.loads(config_json.read_text())
    raw.update(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    raw["text_config"].update(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]
    )
    raw["text_config"]["num_hidden_layers"] = layers
    raw["vision_config"].update(depth=layers, deepstack_visual_indexes=list(range(max(layers - 3, 0), layers)))
    config = Qwen3VLConfig(**raw)
    config._attn_implementation = attn_implementation or "sdpa"
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).to(bb.DTYPES[dtype])
    token_ids = bb._add_versusq_tokens(model, processor)
    model.requires_grad_(True)
    if freeze_vision:
        model.model.visual.requires_grad_(False)
    if lora:
        model = bb.apply_lora(model, lora, [token_ids[t] for t in bb.TRAINED_TOKEN_ROWS])
    return bb.Backbone(
        model=model, processor=processor, source=f"shrunk:{config_json.name}:{layers}", token_ids=token_ids
    )


def clip(i: int, motion_frames: int) -> Clip:
    g = torch.Generator().manual_seed(i)
    frames = (torch.rand(8, 3, 64, 64, generator=g) * 255).to(torch.uint8)
    motion = (torch.rand(motion_frames, 3, 32, 32, generator=g) * 255).to(torch.uint8)
    return Clip(f"v{i}.mp4", f"k{i}", frames, motion, 24.0, 48, 2.0, 64, 64, 0, False, "smoke")


def pairs(n: int, motion_frames: int) -> PairBatch:
    return PairBatch(
        [clip(2 * i, motion_frames) for i in range(n)],
        [clip(2 * i + 1, motion_frames) for i in range(n)],
        torch.linspace(-1.0, 1.0, n),
        [RATIONALE] * n,
        ["smoke"] * n,
        torch.arange(n),
        torch.arange(n) + n,
    )
