"""Colocated vLLM rollout engine for MC-GRPO (optional extra: ``pip install 'versusq[vllm]'``).

How the motion tokens reach vLLM
--------------------------------
VersusQ's prompt holds the 2x8 video frames (Qwen3-VL vision tokens) *and* 2x64 SlowFast motion
tokens injected through the trainable motion projector; the motion tokens are not a stock vLLM
modality. We send each prompt as **prompt embeddings**: the training module assembles the full
input-embedding sequence exactly as for its own forward pass (text embeddings with vision and
motion features already scattered in, ``pl_module.model.prompt_embeds(inputs)``), and vLLM receives
``{"prompt_embeds": tensor (L, d)}`` with ``LLM(enable_prompt_embeds=True)``. This needs no
custom vLLM model class and the motion projector / vision tower never have to be copied into
the engine; vLLM only hosts the language model whose weights we push.

Limits of this route (why the old-policy log-probs are recomputed with the training model after
sampling; vLLM's own are kept in ``Rollouts.engine_logprobs`` to monitor the gap):
* vLLM numbers prompt-embedding positions 1-D, whereas Qwen3-VL gives vision tokens 3-D M-RoPE
  positions and adds DeepStack visual features inside early decoder layers. The engine therefore
  samples from a close approximation of the training policy, not the policy itself -- an
  off-policy gap of the kind every vLLM/trainer pair has; the importance ratios and KL use
  log-probs recomputed by the training model, so the loss stays exact for the sampled tokens.
* vLLM must support prompt embeddings for the hosted architecture (V1 engine, vLLM >= 0.11).
  ``llm_kwargs`` is passed through (e.g. ``hf_overrides`` / ``model_impl``) to pick the text
  architecture, and ``weight_name_map`` rewrites training parameter-name prefixes at push time.
* The alternative that keeps M-RoPE/DeepStack exact -- registering a vLLM model class with a
  ``motion`` modality -- is more faithful but ties the project to vLLM internals; not done.

Weight sync
-----------
Pushed only when the optimisation step changed (:meth:`VLLMRollout.maybe_sync`). The first push
sends every parameter, later pushes only trainable ones (frozen towers never change). With LoRA
the push sends ``W + delta_W`` computed out of place from peft's ``get_delta_weight`` (no model
copy, no merge/unmerge round-off on the training weights); LoRA tensors themselves are skipped.
The push calls the hosted model's ``load_weights`` through ``LLM.apply_model`` (run in-process:
``VLLM_ENABLE_V1_MULTIPROCESSING=0``), as TRL's colocate mode does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from lightning_utilities.core.imports import RequirementCache
from torch import nn

from lightning_modules import template as tpl
from lightning_modules.mcgrpo import Rollouts

_VLLM_AVAILABLE = RequirementCache("vllm>=0.11")
VLLM_INSTALL = "pip install 'versusq[vllm]'  (or: pip install vllm)"


def require_vllm() -> None:
    """Raise ``ImportError`` with the install command when vLLM is not installed."""
    if not _VLLM_AVAILABLE:
        raise ImportError(
            f"RolloutCallback(engine='vllm') needs vLLM >= 0.11, which is not installed. "
            f"Install it with: {VLLM_INSTALL}; or set the rollout engine to 'hf'."
        )


def build_vllm_requests(
    prompt_embeds: Sequence[torch.Tensor],
    num_generations: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 256,
    stop: str = "<answer>",
) -> tuple[list[dict[str, torch.Tensor]], dict[str, Any]]:
    """Prompts and ``SamplingParams`` keyword arguments for one rollout batch.

    Args:
        prompt_embeds: per prompt, the ``(L_b, d)`` input embeddings (vision + motion + text).
        num_generations: ``G`` samples per prompt (``n`` of vLLM).

    Returns:
        ``(prompts, sampling_kwargs)``; the stop text is kept in the output so the response
        ends with ``<answer>`` like the SFT template, and ``logprobs=0`` returns the sampled
        token's log-prob.

    >>> prompts, kw = build_vllm_requests([torch.zeros(3, 8)], num_generations=4)
    >>> prompts[0]["prompt_embeds"].shape, kw["n"], kw["stop"]
    (torch.Size([3, 8]), 4, ['<answer>'])
    """
    prompts = [{"prompt_embeds": e.detach().cpu()} for e in prompt_embeds]
    kwargs = {
        "n": num_generations,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_new_tokens,
        "stop": [stop],
        "include_stop_str_in_output": True,
        "logprobs": 0,
    }
    return prompts, kwargs


def _sampled_logprob(position: Any, token: int) -> float:
    """Log-prob of ``token`` in one position of vLLM's ``logprobs`` (dict id -> Logprob)."""
    entry = position[token]
    return float(getattr(entry, "logprob", entry))


def parse_vllm_outputs(
    outputs: Sequence[Any], num_generations: int, pad_id: int, elapsed_s: float
) -> Rollouts:
    """vLLM ``RequestOutput`` list (one per prompt, ``n = G`` completions each) -> ``Rollouts``.

    Reads ``completion.token_ids``, ``completion.text`` and ``completion.logprobs``
    (per position a dict ``token_id -> Logprob``); a missing ``logprobs`` gives zeros.
    """
    completions = []
    for b, request in enumerate(outputs):
        if len(request.outputs) != num_generations:
            raise ValueError(
                f"parse_vllm_outputs: prompt {b} has {len(request.outputs)} completions, "
                f"expected num_generations={num_generations}"
            )
        completions.extend(request.outputs)
    width = max((len(c.token_ids) for c in completions), default=0) or 1
    ids = torch.full((len(completions), width), pad_id, dtype=torch.long)  # (N, T)
    logp = torch.zeros(len(completions), width)  # (N, T)
    lengths = torch.zeros(len(completions), dtype=torch.long)
    for i, c in enumerate(completions):
        tokens = list(c.token_ids)
        lengths[i] = len(tokens)
        ids[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        if c.logprobs:
            logp[i, : len(tokens)] = torch.tensor(
                [_sampled_logprob(pos, tok) for pos, tok in zip(c.logprobs, tokens)]
            )
    mask = tpl.lengths_to_mask(lengths, width)  # (N, T)
    return Rollouts(
        response_ids=ids,
        response_mask=mask,
        old_logprobs=logp,
        texts=[c.text for c in completions],
        prompt_index=torch.arange(len(outputs)).repeat_interleave(num_generations),
        group_size=num_generations,
        tokens_per_s=float(lengths.sum()) / max(elapsed_s, 1e-9),
    )


def _clean_name(name: str, name_map: dict[str, str]) -> str:
    name = name.removeprefix("base_model.model.").replace(".base_layer", "")
    for old, new in name_map.items():
        if name.startswith(old):
            name = new + name[len(old) :]
    return name


def policy_weights(
    model: nn.Module, trainable_only: bool = False, name_map: dict[str, str] | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """Named tensors to push to vLLM, LoRA merged out of place (``W + delta_W``).

    Args:
        model: the policy (a plain ``nn.Module`` or a peft-wrapped one).
        trainable_only: skip frozen parameters (except LoRA-carrying base weights).
        name_map: prefix rewrites applied after peft's prefixes are stripped.
    """
    name_map = name_map or {}
    merged: dict[str, torch.Tensor] = {}
    for mod_name, module in model.named_modules():
        base = getattr(module, "base_layer", None)
        if (
            base is None
            or not hasattr(module, "get_delta_weight")
            or getattr(module, "merged", False)
        ):
            continue
        weight = base.weight.detach()
        for adapter in getattr(module, "active_adapters", []):
            if adapter in getattr(module, "lora_A", {}):
                weight = weight + module.get_delta_weight(adapter).to(weight.dtype)
        merged[f"{mod_name}.base_layer.weight"] = weight
    for name, param in model.named_parameters():
        if ".lora_" in name:
            continue
        if name in merged:
            yield _clean_name(name, name_map), merged[name]
        elif param.requires_grad or not trainable_only:
            yield _clean_name(name, name_map), param.detach()


class VLLMRollout:
    """Colocated vLLM engine: samples ``G`` responses per prompt from prompt embeddings.

    Args:
        model: HF checkpoint (name or exported directory) vLLM loads; the first sync overwrites
            its weights with the training policy's.
        stop: the text that ends a rollout (the template's ``<answer>``).
        temperature, top_p: sampling settings (see ``RolloutCallback``).
        gpu_memory_utilization: fraction of GPU memory vLLM may take (colocated: keep low).
        enable_sleep_mode: offload the engine (``sleep(level=1)``) between rollouts.
        max_model_len, dtype, seed: passed to ``vllm.LLM``.
        weight_name_map: parameter-name prefix rewrites for the push.
        llm_kwargs: extra ``vllm.LLM`` keyword arguments.
        llm: an already-built engine (tests inject fakes); built lazily otherwise.
    """

    def __init__(
        self,
        model: str | None = None,
        stop: str = "<answer>",
        temperature: float = 1.0,
        top_p: float = 1.0,
        gpu_memory_utilization: float = 0.3,
        enable_sleep_mode: bool = True,
        max_model_len: int | None = None,
        dtype: str = "bfloat16",
        seed: int = 0,
        weight_name_map: dict[str, str] | None = None,
        llm_kwargs: dict[str, Any] | None = None,
        llm: Any = None,
    ) -> None:
        if llm is None:
            require_vllm()
            if not model:
                raise ValueError("VLLMRollout: `model` (HF checkpoint vLLM loads) is required")
        self.model = model
        self.sampling = {"temperature": temperature, "top_p": top_p, "stop": stop}
        self.llm_args = {
            "gpu_memory_utilization": gpu_memory_utilization,
            "enable_sleep_mode": enable_sleep_mode,
            "max_model_len": max_model_len,
            "dtype": dtype,
            "seed": seed,
            **(llm_kwargs or {}),
        }
        self.sleep_mode = enable_sleep_mode
        self.name_map = dict(weight_name_map or {})
        self.llm = llm
        self.synced_step: int | None = None
        self.num_pushes = 0

    def _engine(self) -> Any:
        if self.llm is None:
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # in-process: apply_model
            from vllm import LLM

            self.llm = LLM(model=self.model, enable_prompt_embeds=True, **self.llm_args)
            if self.sleep_mode:
                self.llm.sleep(level=1)
        return self.llm

    def maybe_sync(self, policy: nn.Module, step: int) -> bool:
        """Push the policy's weights if ``step`` differs from the last pushed step."""
        if self.synced_step == step:
            return False
        llm = self._engine()
        if self.sleep_mode:
            llm.wake_up()
        weights = list(
            policy_weights(
                policy, trainable_only=self.synced_step is not None, name_map=self.name_map
            )
        )
        llm.apply_model(lambda hosted: hosted.load_weights(weights))
        llm.reset_prefix_cache()
        self.synced_step = step
        self.num_pushes += 1
        return True

    @torch.no_grad()
    def generate(self, policy: Any, batch: Any, num_generations: int, max_new_tokens: int) -> Rollouts:
        """Sample ``num_generations`` responses per prompt of ``batch`` (``policy``: the model)."""
        llm = self._engine()
        inputs = policy.build_prompt_inputs(batch)
        prompts, kwargs = build_vllm_requests(
            policy.prompt_embeds(inputs), num_generations, max_new_tokens=max_new_tokens, **self.sampling
        )
        from vllm import SamplingParams

        if self.sleep_mode:
            llm.wake_up()
        start = time.perf_counter()
        outputs = llm.generate(prompts, SamplingParams(**kwargs), use_tqdm=False)
        elapsed = time.perf_counter() - start
        if self.sleep_mode:
            llm.sleep(level=1)
        pad = policy.tokenizer.pad_token_id
        r = parse_vllm_outputs(outputs, num_generations, pad, elapsed)
        device = policy.device
        r.response_ids, r.response_mask = r.response_ids.to(device), r.response_mask.to(device)
        r.prompt_index = r.prompt_index.to(device)
        # old-policy log-probs from the training model itself (exact, see module docstring);
        # the engine's are kept to monitor the engine/trainer gap
        r.engine_logprobs = r.old_logprobs.to(device)
        logp = policy.response_logprobs(inputs, r.response_ids, r.response_mask)
        r.old_logprobs = (logp.float() * r.response_mask).detach()
        return r

    def close(self) -> None:
        """Drop the engine (frees its GPU memory once garbage-collected)."""
        self.llm = None
