"""MC-GRPO machinery of ``VersusQModule`` (paper Sec. 3.4): reference policy, updates, logging.

``VersusQModule._mcgrpo_step`` (in ``versusq.py``) reads as the five stages of the method;
the helpers it calls live here as a mixin so ``versusq.py`` keeps the SFT/inference code.
The mixin expects the host module to provide ``model``, ``motion_projector``, ``head``,
``forward_responses(inputs, ids, mask)`` and the MC-GRPO ``hparams``; the math is in
``lightning_modules/objectives.py``.

Reference policy pi_ref (KL term of Eq. 13) = the SFT initialisation. We keep only the SFT
values of the policy's *trainable* tensors (LLM or LoRA adapters, motion projector; the head
does not shape pi) and, for the reference forward, swap them into the live parameters'
``.data`` and back -- an O(1) pointer exchange, so no second model (no second motion-injection
hook, no second vision tower) is ever held. With LoRA only the adapter tensors are kept.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch

from lightning_modules import objectives


class MCGRPOMixin:
    """Helpers of the MC-GRPO phase, mixed into ``VersusQModule``."""

    _reference: dict[str, torch.Tensor] | None = None

    def _rollout_engine(self) -> Any:
        """The ``RolloutCallback`` attached in its ``setup`` (``pl_module.rollout``)."""
        engine = getattr(self, "rollout", None)
        if engine is None:
            raise RuntimeError(
                "phase='mcgrpo' needs callbacks.rollout.RolloutCallback in trainer.callbacks "
                "(conf/mcgrpo.yaml adds it)"
            )
        return engine

    def _fresh_casts(self) -> Any:
        """Autocast without its weight-cast cache.

        The cache is keyed on the parameter object and lives for the whole ``training_step``;
        parameters change inside one step (K updates, reference swap), so cached bf16 copies
        would be stale.
        """
        dev = self.device.type
        if not torch.is_autocast_enabled(dev):
            return contextlib.nullcontext()
        return torch.autocast(dev, dtype=torch.get_autocast_dtype(dev), cache_enabled=False)

    def _policy_forward(self, inputs: Any, rollouts: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, T)`` response log-probs and ``(N,)`` margins at the appended ``<reg>`` (grad)."""
        with self._fresh_casts():
            logp, h_reg = self.forward_responses(
                inputs, rollouts.response_ids, rollouts.response_mask
            )
            return logp, self.head(h_reg).float()

    def _policy_parameters(self) -> dict[str, torch.nn.Parameter]:
        """Trainable tensors that shape pi_theta, named as in the module's ``state_dict``."""
        named = [(f"model.{n}", p) for n, p in self.model.named_parameters()]
        named += [(f"motion_projector.{n}", p) for n, p in self.motion_projector.named_parameters()]
        return {n: p for n, p in named if p.requires_grad}

    def _reference_snapshot(self) -> dict[str, torch.Tensor]:
        """SFT values of the policy's trainable tensors.

        Read from ``init_from`` (so a run resumed with ``--ckpt_path`` still compares with the
        SFT weights), else the current weights (first MC-GRPO step).
        """
        params = self._policy_parameters()
        source = self.hparams.init_from
        if not source:
            return {n: p.detach().clone() for n, p in params.items()}
        path = Path(source).expanduser()
        state = torch.load(path, map_location="cpu", weights_only=False)
        state = state.get("state_dict", state)
        missing = [n for n in params if n not in state]
        if missing:
            raise KeyError(f"{path}: reference (SFT) weights lack {missing[:3]}")
        return {n: state[n].to(p.device, p.dtype) for n, p in params.items()}

    def _swap_reference(self) -> None:
        """Exchange the live trainable tensors with the reference ones (calling twice restores)."""
        for name, p in self._policy_parameters().items():
            p.data, self._reference[name] = self._reference[name], p.data

    @torch.no_grad()
    def _reference_logprobs(self, inputs: Any, rollouts: Any) -> torch.Tensor:
        """``(N, T)`` log pi_ref of the sampled response tokens."""
        if self._reference is None:
            self._reference = self._reference_snapshot()
        self._swap_reference()
        try:
            with self._fresh_casts():
                logp, _ = self.forward_responses(
                    inputs, rollouts.response_ids, rollouts.response_mask
                )
        finally:
            self._swap_reference()
        return logp

    def _manual_update(self, loss: torch.Tensor) -> None:
        """One optimiser step per policy update when ``ppo_epochs > 1`` (manual optimisation)."""
        if self.automatic_optimization:
            return
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()

    def _log_mcgrpo(
        self, rewards: torch.Tensor, rollouts: Any, terms: objectives.MCGRPOLoss, n_prompts: int
    ) -> None:
        """Log the ``train/`` curves of the phase."""
        metrics = {
            "train/loss": terms.loss.detach(),
            "train/policy_loss": terms.policy,
            "train/reward_mean": rewards.mean(),
            "train/reward_std": rewards.std(unbiased=False),
            "train/format_rate": objectives.format_ok(rollouts.texts).float().mean(),
            "train/margin_mse": terms.aux,
            "train/kl": terms.kl,
            "train/clip_frac": terms.clip_frac,
            "train/rollout_tokens_per_s": float(rollouts.tokens_per_s),
        }
        if rollouts.engine_logprobs is not None:  # vLLM: engine vs trainer log-prob gap
            gap = (rollouts.engine_logprobs - rollouts.old_logprobs).abs()
            metrics["train/engine_logprob_gap"] = objectives.masked_mean(
                gap, rollouts.response_mask
            )
        self.log_dict(metrics, batch_size=n_prompts)
