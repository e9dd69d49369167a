"""The weights a vLLM engine hosts: the policy's language-model tensors, peft adapters merged.

Kept apart from ``callbacks/vllm_engine.py`` because it is pure tensor bookkeeping (no vLLM),
tested on CPU with peft models.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


def _clean_name(name: str, name_map: dict[str, str]) -> str:
    """The hosted model's name of a training parameter: peft wrappers' infixes removed, then mapped.

    >>> _clean_name("base_model.model.lm_head.token_adapter.base_layer.weight", {})
    'lm_head.weight'
    """
    name = name.removeprefix("base_model.model.").replace(".token_adapter", "").replace(".base_layer", "")
    for old, new in name_map.items():
        if name.startswith(old):
            name = new + name[len(old) :]
    return name


def policy_weights(
    model: nn.Module, trainable_only: bool = False, name_map: dict[str, str] | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """Named tensors to push to vLLM, peft adapters merged out of place.

    LoRA layers give ``W + delta_W`` (``get_delta_weight``), trained token rows (peft's
    ``trainable_token_indices``) the embedding / output matrix with those rows replaced
    (``get_merged_weights``); adapter tensors themselves are never pushed. Tensors that carry an
    adapter are pushed every time (their base weight is frozen but the merged value moves).

    Args:
        model: the policy (a plain ``nn.Module`` or a peft-wrapped one).
        trainable_only: skip frozen parameters (except adapter-carrying base weights).
        name_map: prefix rewrites applied after peft's prefixes are stripped.
    """
    name_map = name_map or {}
    merged: dict[str, torch.Tensor] = {}
    for mod_name, module in model.named_modules():
        if hasattr(module, "get_merged_weights") and hasattr(module, "trainable_tokens_delta"):
            merged[f"{mod_name}.base_layer.weight"] = module.get_merged_weights(module.active_adapters).detach()
            continue
        base = getattr(module, "base_layer", None)
        if base is None or not hasattr(module, "get_delta_weight") or getattr(module, "merged", False):
            continue
        weight = base.weight.detach()
        for adapter in getattr(module, "active_adapters", []):
            if adapter in getattr(module, "lora_A", {}):
                weight = weight + module.get_delta_weight(adapter).to(weight.dtype)
        merged[f"{mod_name}.base_layer.weight"] = weight
    for name, param in model.named_parameters():
        if ".lora_" in name or "trainable_tokens_delta" in name:
            continue
        if name in merged:
            yield _clean_name(name, name_map), merged[name]
        elif param.requires_grad or not trainable_only:
            yield _clean_name(name, name_map), param.detach()
