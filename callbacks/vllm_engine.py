"""Colocated vLLM rollout engine for MC-GRPO (optional extra: ``pip install 'versusq[vllm]'``).

How the motion tokens reach vLLM
--------------------------------
VersusQ's prompt holds the 2x8 video frames (Qwen3-VL vision tokens) *and* 2x64 SlowFast motion
tokens injected through the trainable motion projector; the motion tokens are not a stock vLLM
modality. We send each prompt as **prompt embeddings**: the training model assembles the full
input-embedding sequence exactly as for its own forward pass (text embeddings with vision and
motion features scattered in, ``pl_module.model.prompt_embeds(inputs)``), and vLLM receives
``{"prompt_embeds": tensor (L, d)}`` with ``LLM(enable_prompt_embeds=True)``; vLLM only hosts the
language model whose weights we push.

The engine is not the policy
----------------------------
vLLM 0.33 numbers prompt-embedding positions 1-D (all three M-RoPE axes = 0..L-1) where Qwen3-VL
gives vision tokens 3-D positions, and applies no DeepStack (the visual features added inside the
first decoder layers). So the engine samples from an approximation of the policy. The trainer
recomputes the old log-probs with the training model (ratios and KL are exact for the sampled
tokens) and corrects the sampling mismatch with truncated importance sampling on the engine's
sampled-token log-probs (``objectives.truncated_is_weight``, cap ``model.tis_cap``), logged as
``train/engine_*``. ``docs/vllm_model.md`` designs the out-of-tree model that removes the gap.

Requests
--------
Ends by token id (``stop_token_ids``: the template's end token; vLLM matches stop *strings* on text
decoded with special tokens skipped, so ``<answer>`` could never match), placeholder tokens get
``logit_bias = -inf`` (vLLM 0.33's allow-list is capped at 1024 ids), ``top_k = 0`` (the full
distribution, as the HF engine and the old log-probs), ``detokenize=False``: texts are decoded
from the token ids with the training tokenizer. The engine is built from a folder holding the
policy's config and the *training* processor/tokenizer (``load_format="dummy"``: the first
weight push overwrites everything), so it never needs the hub.

Weight sync and several GPUs
----------------------------
Pushed only when the optimisation step changed (:meth:`VLLMRollout.maybe_sync`): the first push
sends every parameter, later pushes only trainable ones and every tensor carrying a peft adapter
(LoRA ``W + delta_W`` and trained token rows, merged out of place). The push calls the hosted
model's ``load_weights`` through ``LLM.apply_model`` in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``),
as TRL's colocate mode does. With several ranks each builds its engine on its own GPU through
vLLM's ``external_launcher`` executor (``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` from the trainer,
sampling seed + rank).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning_utilities.core.imports import RequirementCache

from callbacks.vllm_weights import policy_weights
from lightning_modules import template as tpl
from lightning_modules.mcgrpo import Rollouts, drop_placeholders

#: The vLLM release whose internals this module relies on (the ``[vllm]`` extra of setup.cfg).
VLLM_REQUIREMENT = "vllm>=0.33,<0.34"
_VLLM_AVAILABLE = RequirementCache(VLLM_REQUIREMENT)
VLLM_INSTALL = "pip install 'versusq[vllm]'  (or: pip install 'vllm==0.33.*')"


def require_vllm() -> None:
    """Raise ``ImportError`` with the install command when vLLM is not installed."""
    if not _VLLM_AVAILABLE:
        raise ImportError(
            f"RolloutCallback(engine='vllm') needs {VLLM_REQUIREMENT}, which is not installed. "
            f"Install it with: {VLLM_INSTALL}; or set the rollout engine to 'hf'."
        )


def sampling_kwargs(
    num_generations: int,
    max_new_tokens: int,
    end_ids: Sequence[int],
    never_ids: Sequence[int],
    temperature: float = 1.0,
    top_p: float = 1.0,
) -> dict[str, Any]:
    """``SamplingParams`` keyword arguments of one rollout batch (see the module docstring).

    >>> kw = sampling_kwargs(4, 64, end_ids=[9, 2], never_ids=[11])
    >>> kw["stop_token_ids"], kw["logit_bias"], kw["top_k"], kw["detokenize"]
    ([9, 2], {11: -inf}, 0, False)
    """
    return {
        "n": num_generations,
        "temperature": temperature,
        "top_p": top_p,
        "top_k": 0,
        "max_tokens": max_new_tokens,
        "stop_token_ids": list(end_ids),
        "logit_bias": {int(i): float("-inf") for i in never_ids},
        "logprobs": 0,
        "detokenize": False,
    }


def make_sampling_params(kwargs: dict[str, Any]) -> Any:
    """``vllm.SamplingParams(**kwargs)`` (imported here: vLLM is optional)."""
    from vllm import SamplingParams

    return SamplingParams(**kwargs)


def build_vllm_requests(prompt_embeds: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """One ``{"prompt_embeds": (L_b, d)}`` request per prompt (detached, on the CPU).

    >>> build_vllm_requests([torch.zeros(3, 8)])[0]["prompt_embeds"].shape
    torch.Size([3, 8])
    """
    return [{"prompt_embeds": e.detach().cpu()} for e in prompt_embeds]


def _sampled_logprob(position: Any, token: int) -> float:
    """Log-prob of ``token`` in one position of vLLM's ``logprobs`` (dict id -> Logprob); NaN if absent."""
    entry = position.get(token) if position else None
    return float("nan") if entry is None else float(getattr(entry, "logprob", entry))


def parse_vllm_outputs(outputs: Sequence[Any], num_generations: int, tokenizer: Any, elapsed_s: float) -> Rollouts:
    """vLLM ``RequestOutput`` list (one per prompt, ``n = G`` completions each) -> ``Rollouts``.

    Reads ``completion.token_ids`` (ending with the stop token) and ``completion.logprobs`` (per
    position a dict ``token_id -> Logprob``; missing: NaN, no correction); texts are decoded from
    the ids with the training tokenizer. ``old_logprobs`` holds the engine's log-probs here.
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
    ids = torch.full((len(completions), width), tokenizer.pad_token_id, dtype=torch.long)  # (N, T)
    logp = torch.zeros(len(completions), width)  # (N, T)
    lengths = torch.tensor([len(c.token_ids) for c in completions], dtype=torch.long)
    for i, c in enumerate(completions):
        tokens = list(c.token_ids)
        ids[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        positions = c.logprobs or [None] * len(tokens)
        logp[i, : len(tokens)] = torch.tensor([_sampled_logprob(pos, tok) for pos, tok in zip(positions, tokens)])
    mask = tpl.lengths_to_mask(lengths, width)  # (N, T)
    return Rollouts(
        response_ids=ids,
        response_mask=mask,
        old_logprobs=logp,
        texts=tpl.decode_rows(tokenizer, ids, mask),
        prompt_index=torch.arange(len(outputs)).repeat_interleave(num_generations),
        group_size=num_generations,
        tokens_per_s=float(lengths.sum()) / max(elapsed_s, 1e-9),
    )


def export_engine_dir(policy: Any, folder: str | Path) -> Path:
    """Write what vLLM builds the engine from: the policy's config and the TRAINING processor
    (tokenizer with ``<answer>``/``<reg>`` at the training ids). No weights (``load_format="dummy"``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = policy.parts.base_model
    config = base.config
    config.architectures = [type(base).__name__]
    config.save_pretrained(folder)
    policy.processor.save_pretrained(folder)
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": policy.end_token_ids()}))
    return folder


def distributed_env(world_size: int, global_rank: int, local_rank: int) -> dict[str, str]:
    """Environment vLLM's ``external_launcher`` reads (Lightning's launcher sets no ``RANK``).

    >>> distributed_env(8, 3, 3)
    {'RANK': '3', 'LOCAL_RANK': '3', 'WORLD_SIZE': '8', 'VLLM_ENABLE_V1_MULTIPROCESSING': '0'}
    """
    return {
        "RANK": str(global_rank),
        "LOCAL_RANK": str(local_rank),
        "WORLD_SIZE": str(world_size),
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    }


def engine_kwargs(folder: Path, world_size: int, global_rank: int, seed: int, **llm_args: Any) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments: the exported folder as model and tokenizer, prompt embeds,
    one engine per rank on its own GPU (``external_launcher``) with its own sampling seed.

    >>> kw = engine_kwargs(Path("/x"), world_size=4, global_rank=2, seed=10)
    >>> kw["tokenizer"], kw["distributed_executor_backend"], kw["seed"], kw["load_format"]
    ('/x', 'external_launcher', 12, 'dummy')
    """
    kwargs = {
        "model": str(folder),
        "tokenizer": str(folder),
        "load_format": "dummy",
        "enable_prompt_embeds": True,
        "limit_mm_per_prompt": {"image": 0, "video": 0},
        "tensor_parallel_size": 1,
        "seed": seed + global_rank,
        **llm_args,
    }
    if world_size > 1:
        kwargs["distributed_executor_backend"] = "external_launcher"
    return kwargs


class VLLMRollout:
    """Colocated vLLM engine: samples ``G`` responses per prompt from prompt embeddings.

    Args:
        temperature, top_p: sampling settings (``RolloutCallback``'s; ``top_k`` is always 0).
        gpu_memory_utilization: fraction of the GPU's TOTAL memory the engine takes (weights +
            activations + KV cache); colocated with training, so small (see conf/gpu/vllm.yaml).
        enable_sleep_mode: offload the engine's weights to host RAM between rollouts.
        max_model_len, dtype, seed: ``vllm.LLM`` settings (the seed is offset by the rank).
        export_dir: where the engine folder is written (default: a temporary folder).
        weight_name_map: parameter-name prefix rewrites for the push.
        llm_kwargs: extra ``vllm.LLM`` keyword arguments.
        llm: an already-built engine (tests inject fakes); built at the first rollout otherwise.
    """

    def __init__(
        self,
        temperature: float = 1.0,
        top_p: float = 1.0,
        gpu_memory_utilization: float = 0.2,
        enable_sleep_mode: bool = True,
        max_model_len: int | None = None,
        dtype: str = "bfloat16",
        seed: int = 0,
        export_dir: str | None = None,
        weight_name_map: dict[str, str] | None = None,
        llm_kwargs: dict[str, Any] | None = None,
        llm: Any = None,
    ) -> None:
        if llm is None:
            require_vllm()
        self.sampling = {"temperature": temperature, "top_p": top_p}
        self.llm_args = {
            "gpu_memory_utilization": gpu_memory_utilization,
            "enable_sleep_mode": enable_sleep_mode,
            "max_model_len": max_model_len,
            "dtype": dtype,
            **(llm_kwargs or {}),
        }
        self.seed, self.export_dir = seed, export_dir
        self.sleep_mode = enable_sleep_mode
        self.name_map = dict(weight_name_map or {})
        self.llm = llm
        self.ranks = (1, 0, 0)  # world size, global rank, local rank (RolloutCallback.setup)
        self.synced_step: int | None = None
        self.num_pushes = 0

    def _engine(self, policy: Any) -> Any:
        if self.llm is None:
            world_size, global_rank, local_rank = self.ranks
            os.environ.update(distributed_env(world_size, global_rank, local_rank))
            from vllm import LLM

            folder = export_engine_dir(policy, self.export_dir or tempfile.mkdtemp(prefix="versusq-vllm-"))
            self.llm = LLM(**engine_kwargs(folder, world_size, global_rank, self.seed, **self.llm_args))
            if self.sleep_mode:
                self.llm.sleep(level=1)
        return self.llm

    def maybe_sync(self, policy: Any, step: int) -> bool:
        """Push the policy's LM weights if ``step`` differs from the last pushed step."""
        if self.synced_step == step:
            return False
        llm = self._engine(policy)
        if self.sleep_mode:
            llm.wake_up()  # never write into slept memory
        weights = policy_weights(policy.vlm, trainable_only=self.synced_step is not None, name_map=self.name_map)
        llm.apply_model(lambda hosted: hosted.load_weights(weights))
        llm.reset_prefix_cache()
        self.synced_step = step
        self.num_pushes += 1
        return True

    @torch.no_grad()
    def generate(self, policy: Any, batch: Any, num_generations: int, max_new_tokens: int) -> Rollouts:
        """Sample ``num_generations`` responses per prompt of ``batch`` (``policy``: the model)."""
        llm = self._engine(policy)
        inputs = policy.build_prompt_inputs(batch)
        prompts = build_vllm_requests(policy.prompt_embeds(inputs))
        params = make_sampling_params(
            sampling_kwargs(
                num_generations, max_new_tokens, policy.end_token_ids(), policy.never_generate, **self.sampling
            )
        )
        if self.sleep_mode:
            llm.wake_up()
        start = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        if self.sleep_mode:
            llm.sleep(level=1)
        tok = policy.tokenizer
        r = drop_placeholders(
            parse_vllm_outputs(outputs, num_generations, tok, elapsed), policy.never_generate, tok.pad_token_id
        )
        device = policy.device
        r.response_ids, r.response_mask = r.response_ids.to(device), r.response_mask.to(device)
        r.prompt_index, r.dropped = r.prompt_index.to(device), r.dropped.to(device)
        # old-policy log-probs from the training model itself; the engine's feed the IS correction
        r.engine_logprobs = r.old_logprobs.to(device)
        r.old_logprobs = (
            policy.response_logprobs(inputs, r.response_ids, r.response_mask).float() * r.response_mask
        ).detach()
        return r

    def close(self) -> None:
        """Drop the engine (frees its GPU memory once garbage-collected)."""
        self.llm = None
