"""MC-GRPO phase of VersusQModule on the embedded tiny model (CPU, seconds).

The learning tests start from a briefly SFT-trained tiny model whose head reads the margin
off the rationale it wrote ("A is sharper." -> +1.5, "B has less noise." -> -0.8); on one pair
with m* = +1.5 the SFT policy writes either rationale (reward 1.2 vs 0.2), so MC-GRPO must raise
the mean reward, and the policy-gradient half alone must shift the policy to the rewarded one.
Sampled mean rewards of 16 rollouts are too noisy to see the policy half alone (the auxiliary MSE
fitting the head dominates them), so the policy is also measured deterministically by
:func:`_choice_reward`. Measured (SFT seed 0, this file's settings, advantage sign +/-):
MC-GRPO log-prob gap good - bad 0.96 -> 1.09 / 0.39 (train seeds 0) and 1.36 / -0.13 (seed 1);
policy gradient alone (15 steps, lr 3e-4, G 8) the gap rises by +1.06 / +0.31 / +0.42 (seeds
0/1/2) and falls by 2.1 / 2.1 / 2.9 with the sign flipped.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from callbacks.rollout import HFRollout, RolloutCallback
from datamodules.pair_datasets import PairBatch
from lightning_modules import objectives as obj
from lightning_modules import template as tpl
from lightning_modules.mcgrpo import Rollouts
from lightning_modules.versusq import VersusQModule

MOTION_FRAMES = 8
RATIONALES = ["A is sharper.", "B has less noise."]
SCALES = {0: 1.0, 1: 0.5, 2: 0.3, 3: 0.9}  # brightness per clip: A0 vs B2, A1 vs B3


def _pairs(make_clip: object, n: int) -> PairBatch:
    """``n`` (1 or 2) real pairs with margins +1.5 / -0.8 (clip brightness per ``SCALES``)."""
    pairs = [(0, 2), (1, 3)][:n]
    clips = {k: make_clip(k, size=32, frames=4, scale=s) for k, s in SCALES.items()}  # type: ignore[operator]
    return PairBatch(
        clips_a=[clips[i] for i, _ in pairs],
        clips_b=[clips[j] for _, j in pairs],
        margin=torch.tensor([1.5, -0.8])[:n],
        rationale=RATIONALES[:n],
        benchmark=["synthetic"] * n,
        index_a=torch.tensor([i for i, _ in pairs]),
        index_b=torch.tensor([j for _, j in pairs]),
    )


def _sft_checkpoint(path: Path, batch: PairBatch, seed: int, steps: int = 40) -> str:
    torch.manual_seed(seed)
    model = VersusQModule(motion_frames=MOTION_FRAMES, seed=seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(steps):
        loss = model.sft_loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    file = path / f"sft_{seed}.ckpt"
    torch.save({"state_dict": model.state_dict()}, file)
    return str(file)


@pytest.fixture(scope="module")
def sft_ckpt(tmp_path_factory: pytest.TempPathFactory, make_clip: object) -> str:
    return _sft_checkpoint(tmp_path_factory.mktemp("mcgrpo"), _pairs(make_clip, 2), seed=0)


def _grpo_module(init_from: str, **kwargs: object) -> VersusQModule:
    module = VersusQModule(
        motion_frames=MOTION_FRAMES, phase="mcgrpo", init_from=init_from, max_new_tokens=16, **kwargs
    )
    RolloutCallback(engine="hf").setup(SimpleNamespace(global_step=0), module, "fit")  # type: ignore[arg-type]
    return module


def _mean_reward(module: VersusQModule, batch: PairBatch) -> float:
    torch.manual_seed(1234)
    r = HFRollout(temperature=1.0, top_p=1.0).generate(module.model, batch, 16, max_new_tokens=16)
    with torch.no_grad():
        _, h = module.model.forward_responses(module.model.build_prompt_inputs(batch), r.response_ids, r.response_mask)
    target = batch.margin.repeat_interleave(16)
    return obj.total_reward(module.model.head(h), target, tpl.is_valid(r.texts)).mean().item()


@torch.no_grad()
def _choice_reward(module: VersusQModule, batch: PairBatch) -> tuple[float, float]:
    """``(expected reward, log-prob gap)`` of the policy's choice between the two trained rationales.

    The rationales' teacher-forced sequence log-probs, renormalised over the two, weight the
    reward each earns on the one pair of ``batch`` (head margin + format, Eq. 11): a deterministic
    measure of how the policy half moved, free of the sampling noise of :func:`_mean_reward`.
    """
    texts = [tpl.generated_text(r) for r in RATIONALES]
    ids, mask = module.model.response_tokens(texts)
    logp, h = module.model.forward_responses(module.model.build_prompt_inputs(batch), ids, mask)
    seq = logp.sum(1)  # (2,)
    reward = obj.total_reward(module.model.head(h), batch.margin.expand(2), tpl.is_valid(texts))
    return float((torch.softmax(seq, 0) * reward).sum()), float(seq[0] - seq[1])


def _flip_advantages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the MC-GRPO step use negated group advantages (the sign bug the tests must catch)."""
    group_advantages = obj.group_advantages
    monkeypatch.setattr(obj, "group_advantages", lambda r, g, **kw: -group_advantages(r, g, **kw))


def _train(module: VersusQModule, batch: PairBatch, opt: torch.optim.Optimizer, steps: int) -> None:
    torch.manual_seed(0)
    module.log_dict = lambda metrics, **kw: None  # type: ignore[method-assign]
    for step in range(steps):
        loss = module.training_step(batch, step)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("flipped", [False, True])
def test_mcgrpo_raises_mean_reward(
    sft_ckpt: str, make_clip: object, flipped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if flipped:
        _flip_advantages(monkeypatch)
    module = _grpo_module(sft_ckpt)
    batch = _pairs(make_clip, 1)
    groups = [
        {"params": [p for p in module.model.vlm.parameters() if p.requires_grad], "lr": 1e-4},
        {"params": list(module.model.motion_projector.parameters()), "lr": 1e-4},
        {"params": list(module.model.head.parameters()), "lr": 1e-3},
    ]
    opt = torch.optim.AdamW(groups)
    before, (_, gap_before) = _mean_reward(module, batch), _choice_reward(module, batch)
    _train(module, batch, opt, 10)
    after, (_, gap_after) = _mean_reward(module, batch), _choice_reward(module, batch)
    if flipped:  # the auxiliary MSE alone still raises the sampled reward; the policy must not
        assert gap_after - gap_before < -0.05, (gap_before, gap_after)  # the mirror of the check below
        return
    assert after - before > 0.15, (before, after)
    assert gap_after - gap_before > 0.05, (gap_before, gap_after)  # the policy half helped too


@pytest.mark.parametrize("flipped", [False, True])
def test_policy_gradient_alone_follows_the_advantage(
    sft_ckpt: str, make_clip: object, flipped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lambda_aux = 0 and the head frozen: only the clipped policy loss (+ KL) moves the model.

    With the sign flipped the measure is the policy's own expected reward (rollouts sampled with a
    fixed seed): a policy pushed away from its high-reward samples drifts to other text, which can
    move the two fixed rationales of ``_choice_reward`` either way.
    """
    if flipped:
        _flip_advantages(monkeypatch)
    module = _grpo_module(sft_ckpt, freeze_head_in_grpo=True, lambda_aux=0.0, num_generations=8)
    module.model.head.requires_grad_(False)  # as configure_optimizers does for this ablation
    head = {n: p.clone() for n, p in module.model.head.state_dict().items()}
    batch = _pairs(make_clip, 1)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=3e-4)
    (before, gap_before), sampled_before = _choice_reward(module, batch), _mean_reward(module, batch)
    _train(module, batch, opt, 15)
    (after, gap_after), sampled_after = _choice_reward(module, batch), _mean_reward(module, batch)
    assert all(torch.equal(p, head[n]) for n, p in module.model.head.state_dict().items())
    if flipped:
        assert sampled_after - sampled_before < -0.05, (sampled_before, sampled_after)
    else:
        assert sampled_after - sampled_before > 0.05, (sampled_before, sampled_after)
        assert after - before > 0.03 and gap_after > gap_before + 0.15, (before, after, gap_before, gap_after)


def test_ppo_epochs_make_the_clip_act(sft_ckpt: str, make_clip: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """K = 3 updates on one rollout batch: the first is on-policy (ratio 1), later ones leave the band."""
    fractions: list[float] = []
    mcgrpo_loss = obj.mcgrpo_loss

    def recording(*args: object, **kwargs: object) -> obj.MCGRPOLoss:
        terms = mcgrpo_loss(*args, **kwargs)  # type: ignore[arg-type]
        fractions.append(float(terms.clip_frac))
        return terms

    monkeypatch.setattr(obj, "mcgrpo_loss", recording)
    module = VersusQModule(
        motion_frames=MOTION_FRAMES,
        phase="mcgrpo",
        init_from=sft_ckpt,
        lr_grpo=1e-3,
        ppo_epochs=3,
        max_new_tokens=8,
        num_generations=4,
    )
    trainer = Trainer(
        accelerator="cpu",
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    torch.manual_seed(0)
    trainer.fit(module, train_dataloaders=DataLoader([_pairs(make_clip, 1)], batch_size=None, collate_fn=lambda b: b))
    assert len(fractions) == 3 and fractions[0] == 0.0, fractions
    assert max(fractions[1:]) > 0.0, fractions
    assert float(trainer.callback_metrics["train/clip_frac"]) == fractions[-1]


def test_mcgrpo_step_gradients_reference_and_ablation(sft_ckpt: str, make_clip: object) -> None:
    module = _grpo_module(sft_ckpt)
    batch = _pairs(make_clip, 2)
    logged: dict[str, torch.Tensor] = {}
    module.log_dict = lambda metrics, **kw: logged.update(metrics)  # type: ignore[method-assign]
    snapshot = {n: p.detach().clone() for n, p in module.named_parameters()}
    torch.manual_seed(0)
    module.training_step(batch, 0).backward()
    assert {
        "train/reward_mean",
        "train/reward_std",
        "train/format_rate",
        "train/margin_mse",
        "train/kl",
        "train/clip_frac",
        "train/rollout_tokens_per_s",
    } <= set(logged)
    assert logged["train/kl"].item() == pytest.approx(0.0, abs=1e-6)  # pi == pi_ref at the start
    assert logged["train/clip_frac"].item() == 0.0  # first update is on-policy (ratio 1)
    for n, p in module.named_parameters():  # the reference swap restored every tensor
        assert torch.equal(p, snapshot[n]), n
    assert all(p.grad is not None for p in module.model.head.parameters())
    assert all(p.grad is not None for p in module.model.motion_projector.parameters())
    frozen_vision = [p for n, p in module.model.vlm.named_parameters() if "visual" in n]
    assert frozen_vision and all(p.grad is None for p in frozen_vision)

    ablation = _grpo_module(sft_ckpt, freeze_head_in_grpo=True)
    ablation.log_dict = lambda metrics, **kw: None  # type: ignore[method-assign]
    ablation.model.head.requires_grad_(False)  # as configure_optimizers does for the ablation
    torch.manual_seed(0)
    ablation.training_step(batch, 0).backward()
    assert all(p.grad is None for p in ablation.model.head.parameters())


@pytest.mark.parametrize("ppo_epochs", [1, 2])
def test_mcgrpo_trainer_fit_moves_policy(sft_ckpt: str, ppo_epochs: int, make_clip: object) -> None:
    module = VersusQModule(
        motion_frames=MOTION_FRAMES,
        phase="mcgrpo",
        init_from=sft_ckpt,
        lr_grpo=1e-3,
        ppo_epochs=ppo_epochs,
        max_new_tokens=8,
    )
    assert module.automatic_optimization is (ppo_epochs == 1)
    before = {n: p.detach().clone() for n, p in module.model.named_parameters() if p.requires_grad}
    trainer = Trainer(
        accelerator="cpu",
        max_steps=2 * ppo_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )  # no RolloutCallback configured: the module adds the default HF one
    batches = [_pairs(make_clip, 1), _pairs(make_clip, 1)]
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None, collate_fn=lambda b: b))
    assert trainer.global_step == 2 * ppo_epochs  # K optimiser steps per rollout batch
    moved = [not torch.equal(p, before[n]) for n, p in module.model.named_parameters() if n in before]
    assert any(moved)
    assert "train/reward_mean" in trainer.callback_metrics


def _fixed_rollouts(module: VersusQModule, batch: object, texts: list[str]) -> None:
    """Make ``module``'s rollout engine return ``texts`` (prompt-major) for every prompt of ``batch``."""
    model = module.model

    def generate(pl_module: object, b: object) -> Rollouts:
        ids, mask = model.response_tokens(texts)
        old = model.response_logprobs(model.build_prompt_inputs(b), ids, mask).detach()
        n = len(texts) // module.hparams.num_generations
        return Rollouts(
            ids,
            mask,
            old,
            list(texts),
            torch.arange(n).repeat_interleave(module.hparams.num_generations),
            module.hparams.num_generations,
            1.0,
        )

    module.rollout = SimpleNamespace(generate=generate)  # type: ignore[attr-defined]


def test_ntp_readout_rewards_the_written_number_without_head(make_pair_batch: object) -> None:
    """NTP rows: rollouts end at </answer>, the reward reads the parsed number, no aux MSE, no head."""
    module = VersusQModule(motion_frames=MOTION_FRAMES, phase="mcgrpo", readout="ntp", num_generations=4)
    ids = module.model.token_ids
    assert module.model.end_token_ids() == [ids[tpl.ANSWER_END], ids[tpl.IM_END]]
    answers = ["+1.00</answer>", "-1.00</answer>", "", "+0.50</answer>"]  # "" stops at <answer>: invalid
    _fixed_rollouts(module, None, [tpl.generated_text("x") + a for a in answers])
    logged: dict[str, torch.Tensor] = {}
    module.log_dict = lambda metrics, **kw: logged.update(metrics)  # type: ignore[method-assign]
    batch = make_pair_batch([(0, 1)], margins=[1.0])  # type: ignore[operator]
    module.training_step(batch, 0).backward()
    expected = torch.tensor([1.0 + 0.2, math.exp(-4.0) + 0.2, 0.0, math.exp(-0.25) + 0.2])
    assert logged["train/reward_mean"].item() == pytest.approx(expected.mean().item(), abs=1e-5)
    assert logged["train/format_rate"].item() == 0.75
    assert logged["train/margin_mse"].item() == pytest.approx((0.0 + 4.0 + 0.25) / 3, abs=1e-5)
    assert all(p.grad is None for p in module.model.head.parameters())  # no aux term, no head
    assert any(p.grad is not None for p in module.model.motion_projector.parameters())


def test_pointwise_grpo_step_regresses_mos(make_video_batch: object) -> None:
    """Pointwise rows through GRPO: single-video prompts, MOS targets of the decodable clips."""
    module = VersusQModule(motion_frames=MOTION_FRAMES, phase="mcgrpo", target="pointwise", num_generations=2)
    batch = make_video_batch([0, None, 1], mos=[4.5, 3.0, 1.5])  # type: ignore[operator]
    assert module.regression_target(batch).tolist() == [4.5, 1.5]
    texts = [tpl.generated_text("sharp"), tpl.generated_text("noisy")] * 2
    _fixed_rollouts(module, batch, texts)
    logged: dict[str, torch.Tensor] = {}
    module.log_dict = lambda metrics, **kw: logged.update(metrics)  # type: ignore[method-assign]
    module.training_step(batch, 0).backward()
    with torch.no_grad():
        inputs = module.model.build_prompt_inputs(batch)
        assert len(inputs) == 2  # the None clip has no prompt
        ids, mask = module.model.response_tokens(texts)
        head = module.model.head(module.model.forward_responses(inputs, ids, mask)[1])
    mse = ((head - torch.tensor([4.5, 4.5, 1.5, 1.5])) ** 2).mean()
    assert logged["train/aux_mse"].item() == pytest.approx(mse.item(), rel=1e-4)
    assert all(p.grad is not None for p in module.model.head.parameters())  # Eq. 14 on the MOS
    with pytest.raises(TypeError, match="PairBatch"):
        VersusQModule(motion_frames=MOTION_FRAMES, target="pairwise").regression_target(batch)
