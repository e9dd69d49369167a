"""``RolloutCallback``: owns the MC-GRPO rollout engine (HF ``generate`` or colocated vLLM).

The module's MC-GRPO step asks ``pl_module.rollout.generate(pl_module, batch)`` for ``G``
sampled responses per pairwise prompt. Each response stops right after ``<answer>`` (the
``<reg>`` placeholder is appended by the module afterwards, Eq. 6/11) and comes back as a
:class:`Rollouts`: padded response ids, mask, old-policy token log-probs, decoded texts.

Engines
-------
``hf``  (CPU / tests / small GPU runs): batched ``generate`` on the training model itself,
        ``do_sample=True``, ``stop_strings=[stop]``. The old-policy log-probs are *recomputed*
        with one forward pass under ``no_grad`` (:meth:`RolloutPolicy.response_logprobs`):
        exactly the training model's numbers, unaffected by the sampler's temperature/top-p
        processing, so the first update's ratio is exactly 1.
``vllm`` (GPU): :class:`callbacks.vllm_engine.VLLMRollout`, an optional extra.

Module protocol
---------------
The callback only calls these methods of the LightningModule (the model helper owns how prompts,
frames and motion tokens are assembled):

* ``build_prompt_inputs(batch: PairBatch) -> dict[str, Tensor]`` -- the B prompts' model inputs;
* ``generate_responses(inputs, num_return_sequences, **sampling) -> LongTensor (B*G, T)`` --
  sampled response ids only (prompt stripped), prompt-major, right-padded;
* ``response_logprobs(inputs, response_ids, response_mask) -> Tensor (B*G, T)``;
* ``tokenizer`` with ``decode`` and ``eos_token_id``/``pad_token_id``;
* vLLM only: ``prompt_embeds(inputs) -> list[Tensor (L_b, d)]`` and ``policy_model() -> nn.Module``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

ENGINES = ("hf", "vllm")


@dataclass
class Rollouts:
    """``N = B * G`` sampled responses, prompt-major (rows ``b*G .. b*G+G-1`` are prompt ``b``)."""

    response_ids: torch.Tensor  # (N, T) long, right-padded with pad_id
    response_mask: torch.Tensor  # (N, T) bool, True on sampled tokens (stop text included)
    old_logprobs: torch.Tensor  # (N, T) float32, log pi_old(token), 0 on padding
    texts: list[str]  # decoded responses (special tokens kept, padding removed)
    prompt_index: torch.Tensor  # (N,) long, row of the prompt in the batch
    group_size: int
    tokens_per_s: float  # sampled tokens / generation wall-clock seconds
    engine_logprobs: torch.Tensor | None = None  # (N, T) the engine's own log-probs (vLLM)

    def __len__(self) -> int:
        return self.response_ids.shape[0]


class RolloutPolicy(Protocol):
    """What the HF engine needs from the LightningModule (see module docstring)."""

    tokenizer: Any

    def build_prompt_inputs(self, batch: Any) -> dict[str, torch.Tensor]: ...

    def generate_responses(
        self, inputs: dict[str, torch.Tensor], num_return_sequences: int, **sampling: Any
    ) -> torch.Tensor: ...

    def response_logprobs(
        self, inputs: dict[str, torch.Tensor], response_ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor: ...


def response_lengths(
    ids: torch.Tensor,
    end_token_ids: Sequence[int],
    stop_text: str | None = None,
    decode: Callable[[list[int]], str] | None = None,
    pad_id: int | None = None,
) -> torch.Tensor:
    """Number of sampled tokens per row: up to and including the first end token or stop text.

    HF ``generate`` right-pads finished rows, and Qwen's pad id is also an end-of-sequence id, so
    the length cannot be read from ``ids != pad``. A row ends at the first token in
    ``end_token_ids`` (inclusive) or at the token that completes ``stop_text`` (inclusive),
    whichever comes first; a ``pad_id`` that is not an end id ends a row exclusively (HF pads
    only finished rows); rows with none of these use the full width.

    Args:
        ids: ``(N, T)`` response ids.
        end_token_ids: ids that end a sequence, counted in it (EOS ids).
        stop_text: stop string (``"<answer>"``); needs ``decode``.
        decode: token ids -> text.
        pad_id: padding id.

    >>> response_lengths(torch.tensor([[5, 9, 0, 0], [5, 6, 7, 8]]), end_token_ids=[9], pad_id=0)
    tensor([2, 4])
    """
    n, t = ids.shape
    full = torch.full((n,), t)
    is_end = torch.isin(ids, torch.tensor(list(end_token_ids), dtype=ids.dtype))  # (N, T)
    lengths = torch.where(is_end.any(1), is_end.float().argmax(1) + 1, full)
    if pad_id is not None and pad_id not in end_token_ids:
        is_pad = ids == pad_id  # (N, T)
        lengths = torch.minimum(lengths, torch.where(is_pad.any(1), is_pad.float().argmax(1), full))
    if stop_text and decode is not None:
        for row in range(n):
            tokens = ids[row, : int(lengths[row])].tolist()
            if stop_text in decode(tokens):
                lengths[row] = _shortest_prefix_with(tokens, stop_text, decode)
    return lengths


def _shortest_prefix_with(tokens: list[int], text: str, decode: Callable[[list[int]], str]) -> int:
    """Smallest ``k`` with ``text in decode(tokens[:k])`` (binary search, monotone)."""
    lo, hi = 1, len(tokens)
    while lo < hi:
        mid = (lo + hi) // 2
        if text in decode(tokens[:mid]):
            hi = mid
        else:
            lo = mid + 1
    return lo


def lengths_to_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``(N,)`` lengths -> ``(N, width)`` bool mask of the first ``length`` positions.

    >>> lengths_to_mask(torch.tensor([1, 3]), 3).int().tolist()
    [[1, 0, 0], [1, 1, 1]]
    """
    return torch.arange(width, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def decode_responses(
    ids: torch.Tensor, mask: torch.Tensor, decode: Callable[[list[int]], str]
) -> list[str]:
    """Decode each row's masked tokens (special tokens kept so the format check sees them)."""
    return [decode(row[m].tolist()) for row, m in zip(ids, mask)]


def _decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    return lambda tokens: tokenizer.decode(tokens, skip_special_tokens=False)


def _end_token_ids(tokenizer: Any) -> list[int]:
    value = getattr(tokenizer, "eos_token_id", None)
    ids = [value] if isinstance(value, int) else list(value or [])
    return sorted({int(v) for v in ids})


class HFRollout:
    """Rollouts with ``generate`` on the training model (the CPU and test path)."""

    def __init__(self, stop: str = "<answer>", **sampling: Any) -> None:
        self.stop = stop
        self.sampling = sampling

    @torch.no_grad()
    def generate(self, pl_module: RolloutPolicy, batch: Any, num_generations: int) -> Rollouts:
        """Sample ``num_generations`` responses per prompt and recompute their log-probs."""
        inputs = pl_module.build_prompt_inputs(batch)
        start = time.perf_counter()
        ids = pl_module.generate_responses(
            inputs,
            num_return_sequences=num_generations,
            do_sample=True,
            stop_strings=[self.stop],
            **self.sampling,
        )  # (N, T)
        elapsed = time.perf_counter() - start
        decode = _decoder(pl_module.tokenizer)
        tok = pl_module.tokenizer
        lengths = response_lengths(
            ids.cpu(), _end_token_ids(tok), self.stop, decode, getattr(tok, "pad_token_id", None)
        )
        mask = lengths_to_mask(lengths, ids.shape[1]).to(ids.device)  # (N, T)
        logp = pl_module.response_logprobs(inputs, ids, mask).float() * mask  # (N, T)
        n_prompts = ids.shape[0] // num_generations
        return Rollouts(
            response_ids=ids,
            response_mask=mask,
            old_logprobs=logp.detach(),
            texts=decode_responses(ids.cpu(), mask.cpu(), decode),
            prompt_index=torch.arange(n_prompts, device=ids.device).repeat_interleave(
                num_generations
            ),
            group_size=num_generations,
            tokens_per_s=float(lengths.sum()) / max(elapsed, 1e-9),
        )


class RolloutCallback(Callback):
    """Owns the rollout engine and exposes it to the module as ``pl_module.rollout``.

    Args:
        engine: ``"hf"`` (training model's ``generate``) or ``"vllm"`` (colocated vLLM).
        num_generations: ``G`` rollouts per prompt (paper: 4).
        temperature, top_p, max_new_tokens: sampling settings.
        stop: generation stops after this text (the template's ``<answer>``).
        vllm: keyword arguments of :class:`callbacks.vllm_engine.VLLMRollout`
            (``model``, ``gpu_memory_utilization``, ``enable_sleep_mode``, ...).
    """

    def __init__(
        self,
        engine: str = "hf",
        num_generations: int = 4,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
        stop: str = "<answer>",
        vllm: dict[str, Any] | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"RolloutCallback: engine={engine!r} is not one of {list(ENGINES)}")
        if num_generations < 2:
            raise ValueError(
                f"RolloutCallback: num_generations must be >= 2 (got {num_generations})"
            )
        self.engine_name = engine
        self.num_generations = num_generations
        self.sampling = {
            "temperature": temperature,
            "top_p": top_p,
            "max_new_tokens": max_new_tokens,
        }
        self.stop = stop
        self.vllm_kwargs = dict(vllm or {})
        self.engine: Any = None
        if engine == "vllm":
            from callbacks.vllm_engine import require_vllm

            require_vllm()  # fail at config time, not after the first epoch started

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Attach to the module (``pl_module.rollout = self``) and build the HF engine."""
        pl_module.rollout = self
        if self.engine is None and self.engine_name == "hf":
            self.engine = HFRollout(stop=self.stop, **self.sampling)

    def _build_vllm(self) -> Any:
        from callbacks.vllm_engine import VLLMRollout

        return VLLMRollout(stop=self.stop, **self.sampling, **self.vllm_kwargs)

    def generate(self, pl_module: Any, batch: Any, num_generations: int | None = None) -> Rollouts:
        """Sample ``G`` responses per prompt of ``batch`` with the current policy.

        For vLLM, the engine is built on first use (the module is on its device by then) and
        the weights are pushed only when ``trainer.global_step`` changed since the last push.
        """
        g = num_generations or self.num_generations
        if self.engine is None:
            self.engine = (
                HFRollout(stop=self.stop, **self.sampling)
                if self.engine_name == "hf"
                else self._build_vllm()
            )
        if self.engine_name == "vllm":
            trainer = getattr(pl_module, "_trainer", None)
            step = trainer.global_step if trainer is not None else 0
            self.engine.maybe_sync(pl_module.policy_model(), step)
        return self.engine.generate(pl_module, batch, g)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Release the engine (vLLM holds GPU memory)."""
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()
        self.engine = None
