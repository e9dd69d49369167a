"""Tests for lightning_modules/objectives.py on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_modules import objectives as obj


# ---------------------------------------------------------------------------- rewards
def test_margin_reward_monotone_in_abs_error() -> None:
    target = torch.full((6,), 0.7)
    errors = torch.tensor([0.0, 0.1, 0.3, 0.8, 1.5, 3.0])
    up = obj.margin_reward(target + errors, target, alpha=1.0)
    down = obj.margin_reward(target - errors, target, alpha=1.0)
    assert torch.allclose(up, down)  # depends on |error| only
    assert up[0] == 1.0
    assert torch.all(up[1:] < up[:-1])  # strictly decreasing in |error|
    assert torch.allclose(up, torch.exp(-(errors**2)))


def test_margin_reward_alpha_sharpens() -> None:
    pred, target = torch.tensor([1.0]), torch.tensor([0.0])
    assert obj.margin_reward(pred, target, alpha=2.0) < obj.margin_reward(pred, target, alpha=0.5)


# ---------------------------------------------------------------------------- advantages
def test_group_advantages_zero_mean_unit_std_per_group() -> None:
    rewards = torch.tensor([0.1, 0.9, 0.4, 0.3, 1.2, 1.1, 0.2, 0.5])
    adv = obj.group_advantages(rewards, group_size=4, eps_std=1e-6).view(2, 4)
    assert torch.allclose(adv.mean(dim=1), torch.zeros(2), atol=1e-6)
    assert torch.allclose(adv.std(dim=1, unbiased=False), torch.ones(2), atol=1e-4)
    # ordering within a group is preserved
    assert torch.equal(adv[0].argsort(), rewards[:4].argsort())


def test_group_advantages_all_equal_is_zero_not_nan() -> None:
    rewards = torch.tensor([0.3, 0.3, 0.3, 0.3, 1.0, 0.0, 1.0, 0.0])
    adv = obj.group_advantages(rewards, group_size=4)
    assert torch.isfinite(adv).all()
    assert torch.equal(adv[:4], torch.zeros(4))
    assert adv[4:].abs().min() > 0.99


def test_group_advantages_bad_shape() -> None:
    with pytest.raises(ValueError, match="group_size=4"):
        obj.group_advantages(torch.zeros(6), group_size=4)


# ---------------------------------------------------------------------------- policy loss
@pytest.mark.parametrize("adv_sign", [1.0, -1.0])
def test_clipping_active_exactly_outside_band(adv_sign: float) -> None:
    eps = 0.2
    ratios = torch.tensor([0.7, 0.79, 0.81, 1.0, 1.19, 1.21, 1.4])
    logp_old = torch.zeros(1, len(ratios))
    logp_new = ratios.log().unsqueeze(0).clone().requires_grad_(True)
    mask = torch.ones_like(logp_old)
    loss, frac = obj.clipped_policy_loss(logp_new, logp_old, torch.tensor([adv_sign]), mask, eps)
    loss.backward()
    grad_zero = logp_new.grad[0] == 0
    if adv_sign > 0:  # pushing the ratio up: cut above 1 + eps only
        expected = ratios > 1 + eps
    else:  # pushing it down: cut below 1 - eps only
        expected = ratios < 1 - eps
    assert grad_zero.tolist() == expected.tolist()
    assert frac.item() == pytest.approx(expected.float().mean().item())


def test_policy_loss_gradient_direction_and_mask() -> None:
    logp_new = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    loss, _ = obj.clipped_policy_loss(logp_new, logp_new.detach(), torch.tensor([1.0, -1.0]), mask)
    loss.backward()
    g = logp_new.grad
    assert (g[0, :2] < 0).all()  # descent raises log-probs of the positive-advantage rollout
    assert (g[1, 0] > 0).all()  # ... and lowers the negative one
    assert g[mask == 0].abs().sum() == 0  # padding gets no gradient


# ---------------------------------------------------------------------------- KL
def test_kl_zero_for_identical_policies_positive_otherwise() -> None:
    logp = torch.log(torch.tensor([[0.2, 0.5, 0.9]]))
    mask = torch.ones_like(logp)
    assert obj.kl_penalty(logp, logp.clone(), mask).item() == 0.0
    for shift in (-0.3, 0.3):
        assert obj.kl_penalty(logp, logp + shift, mask).item() > 0.0


def test_kl_gradient_only_into_current_policy() -> None:
    logp_new = torch.zeros(1, 2, requires_grad=True)
    logp_ref = torch.full((1, 2), -0.5, requires_grad=True)
    obj.kl_penalty(logp_new, logp_ref, torch.ones(1, 2)).backward()
    assert logp_ref.grad is None
    assert (logp_new.grad > 0).all()  # d/dx [exp(r)-r-1], r=ref-new<0 → positive


# ---------------------------------------------------------------------------- SFT helpers
def test_token_logprobs_matches_log_softmax() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 7, generator=g)
    tokens = torch.randint(0, 7, (2, 3), generator=g)
    expected = logits.log_softmax(-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(obj.token_logprobs(logits, tokens), expected, atol=1e-6)


def test_sft_loss_token_mean_ntp_plus_weighted_mse() -> None:
    logp = torch.log(torch.tensor([[0.5, 0.25, 0.9], [0.1, 0.2, 0.3]]))
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])  # 3 supervised tokens in the batch
    pred, target = torch.tensor([0.5, -1.0]), torch.tensor([0.0, 1.0])
    out = obj.sft_loss(logp, mask, pred, target, lambda_reg=0.5)
    ntp = -(math.log(0.5) + math.log(0.25) + math.log(0.1)) / 3  # padding (0.9, 0.2, 0.3) ignored
    assert out.ntp.item() == pytest.approx(ntp)
    assert out.reg.item() == pytest.approx((0.25 + 4.0) / 2)
    assert out.loss.item() == pytest.approx(ntp + 0.5 * out.reg.item())
    assert obj.sft_loss(logp, mask, pred, target, lambda_reg=0.0).loss.item() == pytest.approx(ntp)


# ---------------------------------------------------------------------------- MC-GRPO
def _mcgrpo_inputs() -> dict[str, torch.Tensor]:
    return {
        "logp_old": torch.full((4, 3), -1.0),
        "logp_ref": torch.full((4, 3), -1.2),
        "advantages": torch.tensor([1.0, -1.0, 0.5, -0.5]),
        "mask": torch.ones(4, 3),
        "target": torch.tensor([1.0, 1.0, -0.5, -0.5]),
    }


def test_mcgrpo_aux_gradient_reaches_head_only_when_enabled() -> None:
    inp = _mcgrpo_inputs()
    head_w = torch.tensor(2.0, requires_grad=True)
    logp_new = torch.full((4, 3), -1.0, requires_grad=True)
    pred = head_w * torch.ones(4)
    out = obj.mcgrpo_loss(
        logp_new,
        inp["logp_old"],
        inp["logp_ref"],
        inp["advantages"],
        inp["mask"],
        pred,
        inp["target"],
        beta=0.01,
        lambda_aux=0.5,
    )
    out.loss.backward()
    assert head_w.grad is not None and head_w.grad > 0  # pred too high → descent lowers it
    assert logp_new.grad is not None and logp_new.grad.abs().sum() > 0

    head_w.grad = None
    pred = head_w * torch.ones(4)
    ablation = obj.mcgrpo_loss(
        logp_new,
        inp["logp_old"],
        inp["logp_ref"],
        inp["advantages"],
        inp["mask"],
        pred,
        inp["target"],
        aux=False,
    )
    assert not ablation.aux.requires_grad and ablation.aux > 0  # still logged
    ablation.loss.backward()
    assert head_w.grad is None  # "GRPO from SFT": the head gets no gradient


def test_mcgrpo_loss_is_sum_of_terms() -> None:
    inp = _mcgrpo_inputs()
    logp_new = torch.full((4, 3), -0.9, requires_grad=True)
    pred = torch.tensor([0.0, 2.0, -0.5, 0.5])
    out = obj.mcgrpo_loss(
        logp_new,
        inp["logp_old"],
        inp["logp_ref"],
        inp["advantages"],
        inp["mask"],
        pred,
        inp["target"],
        beta=0.1,
        lambda_aux=0.5,
    )
    assert out.loss.item() == pytest.approx(out.policy.item() + 0.1 * out.kl.item() + 0.5 * out.aux.item(), rel=1e-6)
    assert out.kl > 0


def test_mcgrpo_requires_reference_when_beta_positive() -> None:
    inp = _mcgrpo_inputs()
    with pytest.raises(ValueError, match="logp_ref"):
        obj.mcgrpo_loss(
            inp["logp_old"],
            inp["logp_old"],
            None,
            inp["advantages"],
            inp["mask"],
            torch.zeros(4),
            inp["target"],
            beta=0.01,
        )


# ---------------------------------------------------------------------------- sampler mismatch
def test_truncated_is_weight_caps_and_ignores_missing() -> None:
    old = torch.tensor([[0.0, -1.0, -2.0, -0.5]])
    engine = torch.tensor([[-2.0, -1.0, float("nan"), 0.0]])  # 3rd: the engine gave no log-prob
    mask = torch.tensor([[1, 1, 1, 0]])
    w, stats = obj.truncated_is_weight(old, engine, mask, cap=3.0)
    assert w[0].tolist() == pytest.approx([3.0, 1.0, 1.0, 1.0])  # e^2 capped; NaN and padding -> 1
    assert stats["weight_max"].item() == pytest.approx(math.exp(2.0)) and stats["truncated_frac"].item() == 0.5
    assert stats["gap_mean"].item() == pytest.approx(1.0) and stats["gap_max"].item() == pytest.approx(2.0)


def test_is_weight_scales_the_surrogate_not_the_kl() -> None:
    logp = torch.zeros(2, 3, requires_grad=True)
    base = dict(
        logp_old=torch.zeros(2, 3),
        logp_ref=torch.full((2, 3), -0.5),
        advantages=torch.tensor([1.0, 0.5]),
        mask=torch.ones(2, 3),
        pred=torch.zeros(2),
        target=torch.zeros(2),
        lambda_aux=0.0,
    )
    plain = obj.mcgrpo_loss(logp, **base)
    weighted = obj.mcgrpo_loss(logp, **base, is_weight=torch.full((2, 3), 2.0))
    assert weighted.policy.item() == pytest.approx(2 * plain.policy.item()) and plain.policy.item() != 0
    assert weighted.kl.item() == pytest.approx(plain.kl.item())
    (g_plain,) = torch.autograd.grad(plain.loss, logp)
    (g_weighted,) = torch.autograd.grad(weighted.loss, logp)
    kl_grad = torch.autograd.grad(0.01 * obj.kl_penalty(logp, base["logp_ref"], base["mask"]), logp)[0]
    assert torch.allclose(g_weighted - kl_grad, 2 * (g_plain - kl_grad), atol=1e-6)
