"""MC-GRPO phase of VersusQModule on the embedded tiny model (CPU, seconds).

The learning test starts from a briefly SFT-trained tiny model whose head reads the margin
off the rationale it wrote ("A is sharper." -> +1.5, "B has less noise." -> -0.8); on one pair
with m* = +1.5 the SFT policy writes either rationale, so MC-GRPO must raise the mean reward.
Measured (seeds 0/1/2, 40 SFT steps, 10 MC-GRPO steps): +0.29 / +0.30 / +0.37 mean reward.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

from callbacks.rollout import RolloutCallback
from datamodules.video import Clip
from lightning_modules import objectives as obj
from lightning_modules.versusq import VersusQModule

MOTION_FRAMES = 8
RATIONALES = ["A is sharper.", "B has less noise."]


def _clip(i: int, scale: float) -> Clip:
    g = torch.Generator().manual_seed(i)
    frames = (torch.rand(4, 3, 32, 32, generator=g) * 255 * scale).to(torch.uint8)
    motion = (torch.rand(MOTION_FRAMES, 3, 32, 32, generator=g) * 255 * scale).to(torch.uint8)
    return Clip(f"v{i}.mp4", f"k{i}", frames, motion, 24.0, 48, 2.0, 32, 32, 0, False, "synthetic")


def _pairs(n: int) -> SimpleNamespace:
    """``n`` (1 or 2) PairBatch-shaped pairs with margins +1.5 / -0.8."""
    clips_a, clips_b = [_clip(0, 1.0), _clip(1, 0.5)], [_clip(2, 0.3), _clip(3, 0.9)]
    return SimpleNamespace(
        clips_a=clips_a[:n],
        clips_b=clips_b[:n],
        margin=torch.tensor([1.5, -0.8])[:n],
        rationale=RATIONALES[:n],
        benchmark=["synthetic"] * n,
        index_a=torch.arange(n),
        index_b=torch.arange(n) + 2,
    )


def _sft_checkpoint(path: Path, seed: int, steps: int = 40) -> str:
    torch.manual_seed(seed)
    model = VersusQModule(motion_frames=MOTION_FRAMES, seed=seed)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    batch = _pairs(2)
    for _ in range(steps):
        loss = model.sft_loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    file = path / f"sft_{seed}.ckpt"
    torch.save({"state_dict": model.state_dict()}, file)
    return str(file)


@pytest.fixture(scope="module")
def sft_ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _sft_checkpoint(tmp_path_factory.mktemp("mcgrpo"), seed=0)


def _grpo_module(init_from: str, **kwargs: object) -> tuple[VersusQModule, RolloutCallback]:
    module = VersusQModule(
        motion_frames=MOTION_FRAMES, phase="mcgrpo", init_from=init_from, **kwargs
    )
    callback = RolloutCallback(engine="hf", max_new_tokens=16)
    callback.setup(SimpleNamespace(global_step=0), module, "fit")  # type: ignore[arg-type]
    return module, callback


def _mean_reward(module: VersusQModule, callback: RolloutCallback, batch: SimpleNamespace) -> float:
    torch.manual_seed(1234)
    r = callback.generate(module, batch, 16)
    with torch.no_grad():
        _, h = module.forward_responses(
            module.build_prompt_inputs(batch), r.response_ids, r.response_mask
        )
    target = batch.margin.repeat_interleave(16)
    return obj.total_reward(module.head(h), target, r.texts).mean().item()


def test_mcgrpo_raises_mean_reward(sft_ckpt: str) -> None:
    module, callback = _grpo_module(sft_ckpt)
    batch = _pairs(1)
    groups = [
        {"params": [p for p in module.model.parameters() if p.requires_grad], "lr": 1e-4},
        {"params": list(module.motion_projector.parameters()), "lr": 1e-4},
        {"params": list(module.head.parameters()), "lr": 1e-3},
    ]
    opt = torch.optim.AdamW(groups)
    before = _mean_reward(module, callback, batch)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log without a Trainer
        for step in range(10):
            loss = module._mcgrpo_step(batch, step)
            opt.zero_grad()
            loss.backward()
            opt.step()
    after = _mean_reward(module, callback, batch)
    assert after - before > 0.15, (before, after)


def test_mcgrpo_step_gradients_reference_and_ablation(sft_ckpt: str) -> None:
    module, _ = _grpo_module(sft_ckpt)
    batch = _pairs(2)
    logged: dict[str, torch.Tensor] = {}
    module.log_dict = lambda metrics, **kw: logged.update(metrics)  # type: ignore[method-assign]
    snapshot = {n: p.detach().clone() for n, p in module.named_parameters()}
    torch.manual_seed(0)
    module._mcgrpo_step(batch, 0).backward()
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
    assert all(p.grad is not None for p in module.head.parameters())
    assert all(p.grad is not None for p in module.motion_projector.parameters())
    frozen_vision = [p for n, p in module.model.named_parameters() if "visual" in n]
    assert frozen_vision and all(p.grad is None for p in frozen_vision)

    ablation, _ = _grpo_module(sft_ckpt, freeze_head_in_grpo=True)
    ablation.log_dict = lambda metrics, **kw: None  # type: ignore[method-assign]
    ablation.head.requires_grad_(False)  # as configure_optimizers does for the ablation
    torch.manual_seed(0)
    ablation._mcgrpo_step(batch, 0).backward()
    assert all(p.grad is None for p in ablation.head.parameters())


@pytest.mark.parametrize("ppo_epochs", [1, 2])
def test_mcgrpo_trainer_fit_moves_policy(sft_ckpt: str, ppo_epochs: int) -> None:
    module = VersusQModule(
        motion_frames=MOTION_FRAMES,
        phase="mcgrpo",
        init_from=sft_ckpt,
        lr_grpo=1e-3,
        ppo_epochs=ppo_epochs,
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
        callbacks=[RolloutCallback(engine="hf", max_new_tokens=8)],
    )
    batches = [_pairs(1), _pairs(1)]
    trainer.fit(
        module, train_dataloaders=DataLoader(batches, batch_size=None, collate_fn=lambda b: b)
    )
    assert trainer.global_step == 2 * ppo_epochs  # K optimiser steps per rollout batch
    moved = [
        not torch.equal(p, before[n]) for n, p in module.model.named_parameters() if n in before
    ]
    assert any(moved)
    assert "train/reward_mean" in trainer.callback_metrics
