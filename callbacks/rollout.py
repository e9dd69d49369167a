"""``RolloutCallback``: owns the MC-GRPO rollout engine (HF ``generate`` or colocated vLLM).

The MC-GRPO step (``lightning_modules/mcgrpo.py``) asks ``pl_module.rollout.generate(pl_module,
batch)`` for ``G`` sampled responses per pairwise prompt. ``G`` (``num_generations``) and the
token budget (``max_new_tokens``) are the module's settings, read at each call, so the YAML
gives them once. Each response ends at the template's end token (``<answer>``; the ``<reg>``
placeholder is appended by the module afterwards, Eq. 6/11) and comes back as
:class:`~lightning_modules.mcgrpo.Rollouts`.

Engines
-------
``hf``  (CPU / tests / small GPU runs): batched ``generate`` on the training model itself,
        ``do_sample=True``. The old-policy log-probs are *recomputed* with one forward pass under
        ``no_grad`` (``response_logprobs``): exactly the training model's numbers, unaffected by
        the sampler's temperature/top-p processing, so the first update's ratio is exactly 1.
``vllm`` (GPU): :class:`callbacks.vllm_engine.VLLMRollout`, an optional extra.

Both engines get the same explicit sampling settings -- ``temperature``, ``top_p`` and
``top_k = 0`` (the full distribution the old log-probs assume; HF ``generate`` would otherwise
apply the checkpoint's ``generation_config`` top-k 20, or its global default 50) -- and the same
placeholder suppression (``never_generate``); a rollout that still holds a placeholder is
emptied (``mcgrpo.drop_placeholders``) before its log-probs are recomputed.

Model protocol
--------------
The engines only use these members of ``pl_module.model`` (``lightning_modules.model.VersusQModel``):
``build_prompt_inputs(batch)``, ``generate_responses(inputs, num_return_sequences, **sampling)``
(``(B*G, T)`` sampled ids, prompt stripped, prompt-major, right-padded),
``response_logprobs(inputs, ids, mask)`` (``(B*G, T)``), ``end_token_ids()``, ``never_generate``,
``tokenizer`` and ``device``; vLLM also ``prompt_embeds(inputs)``, ``vlm`` (the weights it hosts),
``parts`` and ``processor`` (the engine folder).
"""

from __future__ import annotations

import time
from typing import Any, Literal, Protocol, get_args

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from callbacks.vllm_engine import VLLMRollout, require_vllm
from lightning_modules import template as tpl
from lightning_modules.mcgrpo import Rollouts, drop_placeholders

Engine = Literal["hf", "vllm"]
ENGINES: tuple[str, ...] = get_args(Engine)


class RolloutPolicy(Protocol):
    """What the HF engine needs from the model (see the module docstring)."""

    tokenizer: Any
    device: torch.device
    never_generate: list[int]

    def build_prompt_inputs(self, batch: Any) -> Any: ...

    def generate_responses(self, inputs: Any, num_return_sequences: int, **sampling: Any) -> torch.Tensor: ...

    def response_logprobs(self, inputs: Any, response_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor: ...

    def end_token_ids(self) -> list[int]: ...


class HFRollout:
    """Rollouts with ``generate`` on the training model (the CPU and test path).

    Args:
        sampling: ``temperature`` / ``top_p`` passed to ``generate``.
    """

    def __init__(self, **sampling: Any) -> None:
        self.sampling = sampling

    @torch.no_grad()
    def generate(self, policy: RolloutPolicy, batch: Any, num_generations: int, max_new_tokens: int) -> Rollouts:
        """Sample ``num_generations`` responses per prompt and recompute their log-probs."""
        inputs = policy.build_prompt_inputs(batch)
        start = time.perf_counter()
        ids = policy.generate_responses(
            inputs,
            num_return_sequences=num_generations,
            do_sample=True,
            max_new_tokens=max_new_tokens,
            top_k=0,
            **self.sampling,
        )  # (N, T)
        elapsed = time.perf_counter() - start
        tok = policy.tokenizer
        lengths = tpl.response_lengths(ids.cpu(), policy.end_token_ids(), getattr(tok, "pad_token_id", None))
        mask = tpl.lengths_to_mask(lengths, ids.shape[1]).to(ids.device)  # (N, T)
        n_prompts = ids.shape[0] // num_generations
        r = drop_placeholders(
            Rollouts(
                response_ids=ids,
                response_mask=mask,
                old_logprobs=torch.zeros(mask.shape, device=ids.device),
                texts=tpl.decode_rows(tok, ids, mask),
                prompt_index=torch.arange(n_prompts, device=ids.device).repeat_interleave(num_generations),
                group_size=num_generations,
                tokens_per_s=float(lengths.sum()) / max(elapsed, 1e-9),
            ),
            policy.never_generate,
            tok.pad_token_id,
        )
        logp = policy.response_logprobs(inputs, r.response_ids, r.response_mask).float() * r.response_mask
        r.old_logprobs = logp.detach()  # (N, T)
        return r


class RolloutCallback(Callback):
    """Owns the rollout engine and exposes it to the module as ``pl_module.rollout``.

    Args:
        engine: ``"hf"`` (training model's ``generate``) or ``"vllm"`` (colocated vLLM).
        temperature, top_p: sampling settings of the rollouts.
        vllm: keyword arguments of :class:`callbacks.vllm_engine.VLLMRollout`
            (``model``, ``gpu_memory_utilization``, ``enable_sleep_mode``, ...).
    """

    def __init__(
        self, engine: Engine = "hf", temperature: float = 1.0, top_p: float = 1.0, vllm: dict[str, Any] | None = None
    ) -> None:
        tpl.check_choice("RolloutCallback: engine", engine, ENGINES)
        self.engine_name = engine
        self.sampling = {"temperature": temperature, "top_p": top_p}
        self.vllm_kwargs = dict(vllm or {})
        self.engine: Any = None
        if engine == "vllm":
            require_vllm()  # fail at config time, not after the first epoch started

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Attach to the module (``pl_module.rollout = self``); note this rank's place (vLLM)."""
        pl_module.rollout = self
        self.ranks = (
            getattr(trainer, "world_size", 1),
            getattr(trainer, "global_rank", 0),
            getattr(trainer, "local_rank", 0),
        )

    def _build(self) -> Any:
        if self.engine_name == "hf":
            return HFRollout(**self.sampling)
        engine = VLLMRollout(**self.sampling, **self.vllm_kwargs)
        engine.ranks = getattr(self, "ranks", (1, 0, 0))
        return engine

    def generate(self, pl_module: Any, batch: Any) -> Rollouts:
        """Sample ``G = pl_module.hparams.num_generations`` responses per prompt of ``batch``.

        The engine is built on first use (the module is on its device by then); vLLM gets the
        weights pushed only when ``trainer.global_step`` changed since the last push.
        """
        if self.engine is None:
            self.engine = self._build()
        hp = pl_module.hparams
        if self.engine_name == "vllm":
            trainer = getattr(pl_module, "_trainer", None)
            self.engine.maybe_sync(pl_module.model, trainer.global_step if trainer is not None else 0)
        return self.engine.generate(pl_module.model, batch, hp.num_generations, hp.max_new_tokens)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Release the engine (vLLM holds GPU memory)."""
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()
        self.engine = None
