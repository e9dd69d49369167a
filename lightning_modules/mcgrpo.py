"""MC-GRPO (paper Sec. 3.4, Eq. 11-14): one training step as named stages, in one place.

:func:`mcgrpo_step` reads top to bottom as the method: generate ``G`` rollouts per prompt (the
``RolloutCallback``'s engine) -> reward (Eq. 11, margin from the head at the appended ``<reg>``
+ format reward by the template's validity rule) -> group advantages (Eq. 12) -> ``K`` policy
updates with the auxiliary margin regression (Eq. 13-14) -> log. The math is in
``objectives.py``; this module only sequences it.

Reference policy pi_ref (KL term of Eq. 13) = the SFT initialisation. :class:`ReferencePolicy`
keeps only the SFT values of the policy's *trainable* tensors (LLM or LoRA adapters, motion
projector; the head does not shape pi) and, for the reference forward, swaps them into the live
parameters' ``.data`` and back -- an O(1) pointer exchange, so no second model (no second
motion-injection hook, no second vision tower) is ever held.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from lightning_modules import objectives
from lightning_modules import template as tpl
from lightning_modules.cache import PromptInputs
from lightning_modules.checkpoints import load_state_dict

#: Parameters that shape pi_theta (named as in the LightningModule's ``state_dict``).
POLICY_PREFIXES = ("model.vlm.", "model.motion_projector.")


@dataclass
class Rollouts:
    """``N = B * G`` sampled responses, prompt-major (rows ``b*G .. b*G+G-1`` are prompt ``b``).

    What every rollout engine (``callbacks/rollout.py``) hands the MC-GRPO step.
    """

    response_ids: torch.Tensor  # (N, T) long, right-padded with pad_id
    response_mask: torch.Tensor  # (N, T) bool, True on sampled tokens (end token included)
    old_logprobs: torch.Tensor  # (N, T) float32, log pi_old(token), 0 on padding
    texts: list[str]  # decoded responses (special tokens kept, padding removed)
    prompt_index: torch.Tensor  # (N,) long, row of the prompt in the batch
    group_size: int
    tokens_per_s: float  # sampled tokens / generation wall-clock seconds
    engine_logprobs: torch.Tensor | None = None  # (N, T) the engine's own log-probs (vLLM)
    dropped: torch.Tensor | None = None  # (N,) bool: held a placeholder token, emptied (drop_placeholders)

    def __len__(self) -> int:
        return self.response_ids.shape[0]


def drop_placeholders(rollouts: Rollouts, never_ids: list[int], pad_id: int) -> Rollouts:
    """Empty every rollout that sampled a placeholder token (``Backbone.never_generate``).

    A sampled ``<|video_pad|>`` / ``<|motion_pad|>`` would make the trainer's forward expect
    features it does not have (and ``<reg>`` mid-response breaks the head's readout), so such a
    rollout is kept as a zero-length response: invalid format, zero advantage in
    :func:`mcgrpo_step`, counted in ``train/dropped_rollouts``. Engines call this before they
    recompute log-probs.
    """
    ids, mask = rollouts.response_ids, rollouts.response_mask
    bad = (torch.isin(ids, torch.tensor(never_ids, device=ids.device)) & mask).any(1)  # (N,)
    rollouts.dropped = bad
    if bool(bad.any()):
        rollouts.response_ids = ids.masked_fill(bad[:, None], pad_id)
        rollouts.response_mask = mask & ~bad[:, None]
        rollouts.texts = ["" if b else t for b, t in zip(bad.tolist(), rollouts.texts)]
        if rollouts.engine_logprobs is not None:
            rollouts.engine_logprobs = rollouts.engine_logprobs.masked_fill(bad[:, None].to(ids.device), 0.0)
    return rollouts


def fresh_casts(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast without its weight-cast cache (or nothing when autocast is off).

    The cache is keyed on the parameter object and lives for the whole ``training_step``;
    parameters change inside one step (K updates, reference swap), so cached low-precision
    copies would be stale.
    """
    if not torch.is_autocast_enabled(device.type):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.get_autocast_dtype(device.type), cache_enabled=False)


class ReferencePolicy:
    """The SFT values of the policy's trainable tensors, swapped in for the KL forward.

    Args:
        source: the ``init_from`` checkpoint (so a run resumed with ``--ckpt_path`` still compares
            with the SFT weights), or ``None`` to snapshot the weights at the first use.
    """

    def __init__(self, source: str | None) -> None:
        self.source = source
        self.values: dict[str, torch.Tensor] | None = None

    @staticmethod
    def parameters(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        """Trainable tensors of ``module`` that shape pi_theta."""
        return {n: p for n, p in module.named_parameters() if n.startswith(POLICY_PREFIXES) and p.requires_grad}

    def _snapshot(self, params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
        if not self.source:
            return {n: p.detach().clone() for n, p in params.items()}
        state = load_state_dict(self.source)
        missing = [n for n in params if n not in state]
        if missing:
            raise KeyError(f"{self.source}: reference (SFT) weights lack {missing[:3]}")
        return {n: state[n].to(p.device, p.dtype) for n, p in params.items()}

    @contextlib.contextmanager
    def swapped_in(self, module: torch.nn.Module) -> Iterator[None]:
        """Inside the block the module's policy tensors hold the reference values."""
        params = self.parameters(module)
        if self.values is None:
            self.values = self._snapshot(params)
        self._swap(params)
        try:
            yield
        finally:
            self._swap(params)

    def _swap(self, params: dict[str, torch.nn.Parameter]) -> None:
        assert self.values is not None
        for name, p in params.items():
            p.data, self.values[name] = self.values[name], p.data


# ---------------------------------------------------------------------------- stages
def policy_forward(model: Any, inputs: PromptInputs, rollouts: Rollouts) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, T)`` response log-probs and ``(N,)`` head margins at the appended ``<reg>`` (grad)."""
    with fresh_casts(model.device):
        logp, h_reg = model.forward_responses(inputs, rollouts.response_ids, rollouts.response_mask)
        return logp, model.head(h_reg).float()


@torch.no_grad()
def reference_logprobs(module: Any, inputs: PromptInputs, rollouts: Rollouts) -> torch.Tensor:
    """``(N, T)`` log pi_ref of the sampled response tokens."""
    with module.reference.swapped_in(module), fresh_casts(module.device):
        return module.model.forward_responses(inputs, rollouts.response_ids, rollouts.response_mask)[0]


def read_margins(module: Any, head_margin: torch.Tensor, rollouts: Rollouts) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N,)`` m_hat and ``(N,)`` validity of every rollout, by the template's one validity rule.

    m_hat is the head's margin at the appended ``<reg>`` (``readout="head"``), or the number the
    rollout wrote between ``<answer>`` and ``</answer>`` (``readout="ntp"``; NaN where the
    response is invalid, so it earns no margin reward).
    """
    hp = module.hparams
    parsed = [tpl.parse_response(t, hp.readout, hp.reasoning) for t in rollouts.texts]
    valid = torch.tensor([p.valid for p in parsed], dtype=torch.bool)
    if hp.readout == "head":
        return head_margin.detach(), valid
    return torch.tensor([p.number for p in parsed], dtype=torch.float32, device=head_margin.device), valid


def rewards_of(module: Any, margin: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Eq. 11 for every rollout: margin reward (of :func:`read_margins`' m_hat) + format reward."""
    hp = module.hparams
    return objectives.total_reward(margin, target, valid, hp.alpha_reward, format_weight=hp.format_weight)


def sampler_correction(module: Any, rollouts: Rollouts) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """Truncated importance weights when the engine's log-probs are known (vLLM), else none."""
    if rollouts.engine_logprobs is None:
        return None, {}
    return objectives.truncated_is_weight(
        rollouts.old_logprobs, rollouts.engine_logprobs, rollouts.response_mask, module.hparams.tis_cap
    )


def manual_update(module: Any, loss: torch.Tensor) -> None:
    """One optimiser step per policy update when ``ppo_epochs > 1`` (manual optimisation)."""
    if module.automatic_optimization:
        return
    optimizer = module.optimizers()
    optimizer.zero_grad()
    module.manual_backward(loss)
    optimizer.step()


def mcgrpo_step(module: Any, batch: Any) -> torch.Tensor:
    """generate -> reward -> advantages -> K policy updates with aux regression -> log (Eq. 11-14).

    Rewards use the rollout policy's margins (the first update's forward, detached); ratios use
    the rollout's old log-probs (recomputed by this model, see ``RolloutCallback``). With
    ``ppo_epochs == 1`` Lightning optimises the returned loss; with ``K > 1`` the K updates on
    this rollout batch are manual.

    Args:
        module: the ``VersusQModule`` (settings in ``hparams``, parts in ``model``).
        batch: a ``PairBatch`` with target margins, or (``target="pointwise"``) a ``VideoBatch``
            with MOS targets.

    The auxiliary regression (Eq. 14) trains the head; it is off for the "GRPO from SFT"
    ablation (``freeze_head_in_grpo``) and for the NTP readout, whose reward reads no head.
    """
    hp, model = module.hparams, module.model
    g = hp.num_generations
    rollouts = module.rollout_engine().generate(module, batch)  # 1. generate (no grad)
    inputs = model.build_prompt_inputs(batch)  # encoder outputs come from the cache
    target = module.regression_target(batch).to(module.device).repeat_interleave(g)  # (N,)
    ref = reference_logprobs(module, inputs, rollouts) if hp.beta_kl else None  # (N, T)
    logp, margin = policy_forward(model, inputs, rollouts)  # (N, T), (N,), with grad
    m_hat, valid = read_margins(module, margin, rollouts)  # (N,), (N,)
    rewards = rewards_of(module, m_hat, target, valid)  # 2. reward (N,)
    advantages = objectives.group_advantages(rewards, g)  # 3. advantages (N,)
    if rollouts.dropped is not None:
        advantages = advantages.masked_fill(rollouts.dropped.to(advantages.device), 0.0)
    is_weight, is_stats = sampler_correction(module, rollouts)  # vLLM sampled from another model
    for k in range(hp.ppo_epochs):  # 4. K policy updates, each with the aux regression
        if k:
            logp, margin = policy_forward(model, inputs, rollouts)
        terms = objectives.mcgrpo_loss(
            logp,
            rollouts.old_logprobs,
            ref,
            advantages,
            rollouts.response_mask,
            margin,
            target,
            hp.clip_eps,
            hp.beta_kl,
            hp.lambda_aux,
            aux=hp.readout == "head" and not hp.freeze_head_in_grpo,
            is_weight=is_weight,
        )
        manual_update(module, terms.loss)
    log_step(module, rewards, valid, m_hat, target, terms, len(inputs), rollouts, is_stats)  # 5. log
    if not module.automatic_optimization:
        module.lr_schedulers().step()
    return terms.loss


def log_step(
    module: Any,
    rewards: torch.Tensor,
    valid: torch.Tensor,
    m_hat: torch.Tensor,
    target: torch.Tensor,
    terms: objectives.MCGRPOLoss,
    n_prompts: int,
    rollouts: Rollouts,
    is_stats: dict[str, torch.Tensor],
) -> None:
    """Log the ``train/`` curves of the phase (+ ``train/engine_*`` for an engine that is not the policy).

    ``train/margin_mse`` is the rollouts' m_hat error (valid NTP answers only), ``train/aux_mse``
    the head's MSE of the last update (Eq. 14's term, logged even when it is off).
    """
    err = (m_hat - target).pow(2)  # (N,)
    finite = torch.isfinite(err)
    metrics = {
        "train/loss": terms.loss.detach(),
        "train/policy_loss": terms.policy,
        "train/reward_mean": rewards.mean(),
        "train/reward_std": rewards.std(unbiased=False),
        "train/format_rate": valid.float().mean(),
        "train/margin_mse": err[finite].mean() if bool(finite.any()) else err.new_tensor(float("nan")),
        "train/aux_mse": terms.aux,
        "train/kl": terms.kl,
        "train/clip_frac": terms.clip_frac,
        "train/rollout_tokens_per_s": float(rollouts.tokens_per_s),
        "train/dropped_rollouts": float(rollouts.dropped.sum()) if rollouts.dropped is not None else 0.0,
    }
    # vLLM: |log pi_old - log pi_engine| of the sampled tokens and the truncated IS weights
    metrics.update({f"train/engine_{k}": v for k, v in is_stats.items()})
    module.log_dict(metrics, batch_size=n_prompts)
