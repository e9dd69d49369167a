"""Pure loss and reward math for VersusQ (SFT and MC-GRPO).

Tensors in, tensors out: no Lightning, no I/O, no model code. Every function is small and
carries a ``>>>`` example; ``tests/lightning_modules/test_objectives.py`` checks them on
hand-made tensors.

Conventions
-----------
* ``B`` prompts, ``G`` rollouts per prompt, ``N = B * G`` rollouts laid out prompt-major
  (rollouts ``g = 0..G-1`` of prompt ``b`` are rows ``b * G + g``), ``T`` response tokens.
* Token-level tensors (log-probs, masks) are ``(N, T)``; ``mask`` is 1 on real response tokens.
* Sequence reduction (:func:`masked_mean`): mean over each response's own tokens, then mean over
  responses -- the ``1/G sum_g 1/|o_g| sum_t`` of GRPO (DeepSeekMath), so a long rationale does
  not weigh more than a short one.

Decisions (paper Sec. 3.4, Eq. 11-14)
-------------------------------------
* **Ratio (Eq. 13)**: token-level ``rho_t = exp(logp_new_t - logp_old_t)``, clipped per token, as
  in GRPO implementations (DeepSeekMath, TRL). The sequence-level ratio of Eq. 13 is the product
  of ~100+ token ratios: it explodes/vanishes after one update and clipping then zeroes whole
  responses; per-token clipping keeps the trust region meaningful. The two coincide at the first
  (on-policy) update, where every ratio is 1.
* **KL**: the k3 estimator ``exp(r) - r - 1`` with ``r = logp_ref - logp_new`` per sampled
  token (unbiased for ``KL(pi || pi_ref)`` under samples from ``pi``, always >= 0).
* **Advantage std (Eq. 12)**: *population* std (``unbiased=False``), so the normalised
  advantages of a group have exactly unit population std (up to ``eps_std``) whatever ``G``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: Reward weights of the paper (Sec. 4.1): 1.0 for the margin term, 0.2 for a valid format.
MARGIN_REWARD_WEIGHT = 1.0
FORMAT_REWARD_WEIGHT = 0.2


def margin_reward(pred: torch.Tensor, target: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Margin accuracy reward ``exp(-alpha * (m_hat - m*)^2)`` (Eq. 11), in (0, 1].

    Args:
        pred: ``(N,)`` predicted margins ``m_hat``.
        target: ``(N,)`` MOS margins ``m*`` (MOS on [1, 5], so ``|m*| <= 4``).
        alpha: sensitivity to the squared error (not given in the paper; 1.0 gives reward 0.37
            at an error of one MOS point).

    Returns:
        ``(N,)`` reward, 1 for an exact margin, decreasing in ``|m_hat - m*|``.

    >>> margin_reward(torch.tensor([0.5, 1.5]), torch.tensor([0.5, 0.5])).round(decimals=4)
    tensor([1.0000, 0.3679])
    """
    return torch.exp(-alpha * (pred - target).pow(2))


def format_reward(valid: torch.Tensor, weight: float = FORMAT_REWARD_WEIGHT) -> torch.Tensor:
    """Format reward ``w_f`` for valid rollouts, 0 otherwise (Eq. 11).

    Args:
        valid: ``(N,)`` bool, the template's validity rule applied to each rollout
            (``lightning_modules.template.is_valid``).
        weight: ``w_f`` (paper 0.2).

    >>> format_reward(torch.tensor([True, False])).tolist()
    [0.20000000298023224, 0.0]
    """
    return valid.float() * weight


def total_reward(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    alpha: float = 1.0,
    margin_weight: float = MARGIN_REWARD_WEIGHT,
    format_weight: float = FORMAT_REWARD_WEIGHT,
) -> torch.Tensor:
    """Reward of Eq. 11: ``margin_weight * exp(-alpha (m_hat - m*)^2) + w_f * [valid format]``.

    An invalid-format rollout still earns its margin reward when it has an ``m_hat`` (the head
    reads the ``<reg>`` appended to the rollout whatever it contains); a NaN ``m_hat`` (NTP
    readout: no number could be parsed) earns none.

    Args:
        pred: ``(N,)`` margins ``m_hat`` (no grad needed): the head's at the appended ``<reg>``,
            or the parsed answer number (NTP readout), NaN when there is none.
        target: ``(N,)`` MOS margins, repeated ``G`` times per prompt.
        valid: ``(N,)`` bool validity of the rollouts (see :func:`format_reward`).
        alpha, margin_weight, format_weight: see :func:`margin_reward`, paper weights 1.0 / 0.2.

    Returns:
        ``(N,)`` float reward on ``pred``'s device.

    >>> total_reward(torch.tensor([1.0, 1.0, float("nan")]), torch.tensor([1.0, 1.0, 1.0]),
    ...              torch.tensor([True, False, False])).tolist()
    [1.2000000476837158, 1.0, 0.0]
    """
    fmt = format_reward(valid, format_weight).to(pred.device)
    margin = torch.nan_to_num(margin_reward(pred.detach().float(), target.float(), alpha), nan=0.0)
    return margin_weight * margin + fmt


def group_advantages(rewards: torch.Tensor, group_size: int, eps_std: float = 1e-4) -> torch.Tensor:
    """Group-relative advantages ``(R - mean) / (std + eps_std)`` per prompt (Eq. 12).

    ``std`` is the population std of the group. A group whose rewards are all equal carries no
    preference and gets exactly zero advantage (never NaN, never float round-off noise).

    Args:
        rewards: ``(B * G,)`` rewards, prompt-major.
        group_size: ``G``.
        eps_std: numerical floor added to the std.

    Returns:
        ``(B * G,)`` advantages.

    >>> [round(a, 3) for a in group_advantages(torch.tensor([1.0, 3.0, 2.0, 2.0]), 2).tolist()]
    [-1.0, 1.0, 0.0, 0.0]
    """
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(
            f"rewards must be 1-D with a multiple of group_size={group_size} entries, got shape {tuple(rewards.shape)}"
        )
    grouped = rewards.float().view(-1, group_size)  # (B, G)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    std = grouped.std(dim=1, unbiased=False, keepdim=True)
    degenerate = (grouped.amax(dim=1) == grouped.amin(dim=1)).unsqueeze(1)  # (B, 1)
    adv = torch.where(degenerate, torch.zeros_like(centred), centred / (std + eps_std))
    return adv.view(-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each row's masked tokens, then over rows (rows with no token count as 0).

    >>> masked_mean(torch.tensor([[1.0, 3.0], [5.0, 9.0]]), torch.tensor([[1, 1], [1, 0]]))
    tensor(3.5000)
    """
    mask = mask.to(values.dtype)
    per_row = (values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (N,)
    return per_row.mean()


def clipped_policy_loss(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    is_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped surrogate loss ``-min(rho A, clip(rho, 1-eps, 1+eps) A)`` with token ratios (Eq. 13).

    Args:
        logp_new: ``(N, T)`` log-probs of the sampled tokens under the current policy (grad).
        logp_old: ``(N, T)`` the same under the rollout policy (no grad).
        advantages: ``(N,)`` group advantages, broadcast over each response's tokens.
        mask: ``(N, T)`` 1 on response tokens.
        clip_eps: ``eps``; the clip is active exactly where ``rho`` leaves ``[1-eps, 1+eps]``
            in the direction the advantage pushes it (there the token's gradient is zero).
        is_weight: ``(N, T)`` importance weight of the sampler mismatch
            (:func:`truncated_is_weight`), multiplying each token's surrogate; ``None`` = 1.

    Returns:
        ``(loss, clip_frac)``: scalar loss (:func:`masked_mean`) and the fraction of response
        tokens whose gradient the clip cut.

    >>> lp = torch.zeros(1, 2)
    >>> loss, frac = clipped_policy_loss(lp, lp, torch.tensor([1.0]), torch.ones(1, 2))
    >>> loss.item(), frac.item()
    (-1.0, 0.0)
    """
    ratio = torch.exp(logp_new - logp_old.detach())  # (N, T)
    adv = advantages.detach().unsqueeze(1).to(ratio.dtype)  # (N, 1)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv
    surrogate = -torch.minimum(unclipped, clipped)  # (N, T)
    if is_weight is not None:
        surrogate = surrogate * is_weight.detach()
    loss = masked_mean(surrogate, mask)
    cut = ((ratio > 1.0 + clip_eps) & (adv > 0)) | ((ratio < 1.0 - clip_eps) & (adv < 0))
    m = mask.bool()
    clip_frac = (cut & m).sum().float() / m.sum().clamp(min=1).float()
    return loss, clip_frac.detach()


def truncated_is_weight(
    logp_old: torch.Tensor, logp_engine: torch.Tensor, mask: torch.Tensor, cap: float = 3.0
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Truncated importance sampling for a sampler that is not the policy (vLLM; TRL's TIS).

    The rollouts were sampled by an engine whose distribution ``pi_engine`` differs from the
    trainer's ``pi_old`` (for VersusQ's vLLM path: 1-D positions and no DeepStack). The policy
    gradient under ``pi_old`` is recovered by weighting each token's surrogate with
    ``pi_old / pi_engine``, capped at ``cap`` so rare tokens cannot blow up the step (token-level
    truncation; the KL term is not weighted).

    Args:
        logp_old: ``(N, T)`` trainer log-probs of the sampled tokens.
        logp_engine: ``(N, T)`` the engine's log-probs of the same tokens (NaN: none given).
        mask: ``(N, T)`` 1 on response tokens.
        cap: upper bound of the weight.

    Returns:
        ``(weight, stats)``: ``(N, T)`` detached weights (1 off the mask and where the engine gave
        none) and ``gap_mean``, ``gap_max`` (``|logp_old - logp_engine|``), ``weight_mean``,
        ``weight_min``, ``weight_max`` (before the cap) and ``truncated_frac`` over the tokens.

    >>> w, st = truncated_is_weight(torch.tensor([[0.0, -1.0]]), torch.tensor([[-2.0, -1.0]]),
    ...                             torch.ones(1, 2), cap=3.0)
    >>> w.tolist(), round(st["truncated_frac"].item(), 2)
    ([[3.0, 1.0]], 0.5)
    """
    m = mask.bool() & ~torch.isnan(logp_engine)  # (N, T)
    delta = torch.where(m, logp_old.detach().float() - torch.nan_to_num(logp_engine.float()), 0.0)
    raw = torch.exp(delta)  # (N, T), 1 off the mask
    weight = raw.clamp(max=cap).detach()
    if not bool(m.any()):  # nothing to correct: neutral statistics
        zero, one = raw.new_zeros(()), raw.new_ones(())
        return weight, {
            "gap_mean": zero,
            "gap_max": zero,
            "weight_mean": one,
            "weight_min": one,
            "weight_max": one,
            "truncated_frac": zero,
        }
    sel, gap = raw[m], delta.abs()[m]
    stats = {
        "gap_mean": gap.mean(),
        "gap_max": gap.max(),
        "weight_mean": weight[m].mean(),
        "weight_min": sel.min(),
        "weight_max": sel.max(),
        "truncated_frac": (sel > cap).float().mean(),
    }
    return weight, stats


def kl_penalty(logp_new: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """k3 estimate of ``KL(pi_theta || pi_ref)``: ``exp(r) - r - 1``, ``r = logp_ref - logp_new``.

    Per sampled token, reduced with :func:`masked_mean`; zero iff the two policies agree on
    every sampled token, positive otherwise; gradient flows into ``logp_new`` only.

    >>> kl_penalty(torch.zeros(1, 3), torch.zeros(1, 3), torch.ones(1, 3)).item()
    0.0
    """
    r = logp_ref.detach() - logp_new  # (N, T)
    return masked_mean(torch.exp(r) - r - 1.0, mask)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability of each ``tokens[n, t]`` under ``logits[n, t]`` (already aligned).

    Computed as ``logit - logsumexp`` in float32, without materialising the full log-softmax.

    >>> token_logprobs(torch.zeros(1, 1, 4), torch.tensor([[2]])).exp()
    tensor([[0.2500]])
    """
    logits = logits.float()  # (N, T, V)
    picked = logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (N, T)
    return picked - torch.logsumexp(logits, dim=-1)


def regression_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Margin MSE ``1/B sum (m_hat - m*)^2`` (Eq. 9), computed in float32.

    >>> regression_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 2.0]))
    tensor(0.5000)
    """
    return F.mse_loss(pred.float(), target.float())


@dataclass
class SFTLoss:
    """Terms of the SFT objective (only ``loss`` carries a graph)."""

    loss: torch.Tensor
    ntp: torch.Tensor
    reg: torch.Tensor


def sft_loss(
    logp: torch.Tensor,
    mask: torch.Tensor,
    pred: torch.Tensor,
    target: torch.Tensor,
    lambda_reg: float = 0.5,
) -> SFTLoss:
    """SFT objective ``L_NTP + lambda_reg * L_reg`` (Eq. 9-10).

    ``L_NTP`` is the mean negative log-likelihood over every supervised token of the batch (the
    template up to ``<answer>``; HF's token-mean cross-entropy); ``L_reg`` is
    :func:`regression_loss`.

    Args:
        logp: ``(B, T)`` log-probs of the target response tokens (:func:`token_logprobs`).
        mask: ``(B, T)`` 1 on supervised tokens.
        pred: ``(B,)`` head margins at ``<reg>``. target: ``(B,)`` MOS margins.
        lambda_reg: weight of the regression term (paper 0.5; 0 for the NTP-readout ablation).

    >>> out = sft_loss(torch.log(torch.tensor([[0.5, 0.5]])), torch.tensor([[1, 0]]),
    ...                torch.tensor([1.0]), torch.tensor([0.0]))
    >>> round(out.loss.item(), 4), round(out.ntp.item(), 4), out.reg.item()
    (1.1931, 0.6931, 1.0)
    """
    mask = mask.to(logp.dtype)
    ntp = -(logp * mask).sum() / mask.sum()
    reg = regression_loss(pred, target)
    return SFTLoss(ntp + lambda_reg * reg, ntp, reg)


@dataclass
class MCGRPOLoss:
    """Terms of one MC-GRPO update (all scalars; only ``loss`` carries a graph)."""

    loss: torch.Tensor
    policy: torch.Tensor
    kl: torch.Tensor
    aux: torch.Tensor
    clip_frac: torch.Tensor


def mcgrpo_loss(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    logp_ref: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    pred: torch.Tensor,
    target: torch.Tensor,
    clip_eps: float = 0.2,
    beta: float = 0.01,
    lambda_aux: float = 0.5,
    aux: bool = True,
    is_weight: torch.Tensor | None = None,
) -> MCGRPOLoss:
    """MC-GRPO loss ``L_GRPO + lambda_aux * MSE(m_hat, m*)`` (Eq. 13-14).

    ``L_GRPO = clipped policy loss + beta * KL``. ``pred`` is the head's margin at the ``<reg>``
    appended to each rollout, with grad, so the aux gradient reaches both the head and the
    shared VLM (Eq. 14; the head's own learning rate lives in the optimiser).

    Args:
        logp_new, logp_old, advantages, mask, clip_eps: see :func:`clipped_policy_loss`.
        logp_ref: ``(N, T)`` reference-policy log-probs, or ``None`` when ``beta == 0``.
        pred: ``(N,)`` predicted margins (grad). target: ``(N,)`` MOS margins.
        beta: KL coefficient (paper 0.01). lambda_aux: aux weight (paper 0.5).
        aux: ``False`` for the "GRPO from SFT" ablation -- no aux term (the MSE is still
            returned, detached, for logging).
        is_weight: sampler-mismatch weights of the surrogate (:func:`truncated_is_weight`).

    >>> z = torch.zeros(2, 3, requires_grad=True)
    >>> out = mcgrpo_loss(z, z.detach(), z.detach(), torch.tensor([1.0, -1.0]), torch.ones(2, 3),
    ...                   torch.tensor([0.5, 0.5]), torch.tensor([0.0, 1.0]))
    >>> round(out.loss.item(), 4), round(out.aux.item(), 4)
    (0.125, 0.25)
    """
    if logp_ref is None and beta != 0:
        raise ValueError(f"mcgrpo_loss: logp_ref is required when beta={beta} != 0")
    policy, clip_frac = clipped_policy_loss(logp_new, logp_old, advantages, mask, clip_eps, is_weight)
    kl = kl_penalty(logp_new, logp_ref, mask) if logp_ref is not None else policy.new_zeros(())
    mse = regression_loss(pred, target)
    loss = policy + beta * kl + (lambda_aux * mse if aux else 0.0)
    return MCGRPOLoss(loss, policy.detach(), kl.detach(), mse.detach(), clip_frac)
