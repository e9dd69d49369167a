"""lightning_modules/training.py: global batch -> accumulation, float32 masters, checkpointing."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from lightning_modules import training
from lightning_modules.versusq import VersusQModule


def _trainer(world_size: int, batch_size: int, accumulate: int = 1) -> SimpleNamespace:
    return SimpleNamespace(
        world_size=world_size,
        accumulate_grad_batches=accumulate,
        datamodule=SimpleNamespace(hparams={"batch_size": batch_size}),
    )


@pytest.mark.parametrize(
    ("world", "batch", "global_batch", "expected"),
    [
        (1, 1, 8, 8),
        (8, 1, 8, 1),  # SFT: 8 pairs per step on 1 or 8 GPUs
        (1, 2, 48, 24),
        (8, 2, 48, 3),
        (24, 2, 48, 1),  # MC-GRPO: 48 prompts
    ],
)
def test_accumulation_keeps_the_global_batch(world: int, batch: int, global_batch: int, expected: int) -> None:
    trainer = _trainer(world, batch)
    training.set_accumulation(trainer, global_batch, manual=False)
    assert trainer.accumulate_grad_batches == expected
    assert expected * world * batch == global_batch


def test_accumulation_errors() -> None:
    with pytest.raises(ValueError, match="not divisible by world size \\(3\\)"):
        training.set_accumulation(_trainer(3, 1), 8, manual=False)
    with pytest.raises(ValueError, match="ppo_epochs > 1 .* set data.batch_size to 48"):
        training.set_accumulation(_trainer(1, 2), 48, manual=True)
    with pytest.raises(ValueError, match="drop trainer.accumulate_grad_batches=8"):
        training.set_accumulation(_trainer(1, 1, accumulate=8), 8, manual=False)
    with pytest.raises(ValueError, match="needs a datamodule"):
        training.set_accumulation(SimpleNamespace(world_size=1, accumulate_grad_batches=1), 8, manual=False)


def test_trainable_weights_kept_fp32_frozen_keep_dtype() -> None:
    module = VersusQModule(motion_frames=8, head_hidden=16, dtype="bfloat16")
    visual = module.model.vlm.model.visual
    assert all(p.dtype == torch.float32 for p in module.parameters() if p.requires_grad)  # at construction
    assert training.keep_trainable_fp32(module) == 0
    assert all(p.dtype == torch.bfloat16 for p in visual.parameters())  # frozen tower: memory saved
    trainer = SimpleNamespace(strategy=object(), precision="bf16-true")
    training.check_trainable_fp32(module, trainer, "bfloat16")  # all trainable fp32: fine
    module.model.head.to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"model.head.net.0.weight.*dtype='bfloat16'.*bf16-true"):
        training.check_trainable_fp32(module, trainer, "bfloat16")


def test_activation_checkpointing_same_gradients(make_pair_batch: Any) -> None:
    batch = make_pair_batch([(0, 1)], rationales=["A is sharper."])
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)  # the projector and head draw from the global RNG
        module = VersusQModule(motion_frames=8, head_hidden=16, activation_checkpointing=checkpointing)
        module.train()
        layers = module.model.vlm.model.language_model.layers
        assert all(layer.gradient_checkpointing is checkpointing for layer in layers)
        module.sft_loss(batch)["loss"].backward()
        grads.append({n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][n], grads[1][n], atol=1e-5) for n in grads[0])


def test_handoff_keeps_float32_values_under_bf16_storage(tmp_path: Any) -> None:
    """SFT -> MC-GRPO with dtype bfloat16: the trainable weights arrive unrounded."""
    sft = VersusQModule(motion_frames=8, head_hidden=16, dtype="bfloat16", seed=2)
    with torch.no_grad():
        for p in sft.parameters():
            if p.requires_grad:
                p.add_(1e-4 * torch.randn_like(p))  # below bf16 resolution for most weights
    torch.save({"state_dict": sft.state_dict()}, tmp_path / "sft.ckpt")
    grpo = VersusQModule(
        motion_frames=8, head_hidden=16, dtype="bfloat16", phase="mcgrpo", init_from=str(tmp_path / "sft.ckpt")
    )
    saved, loaded = sft.state_dict(), grpo.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    assert loaded["model.head.net.1.weight"].dtype == torch.float32


def test_deepspeed_gradients_scaled_like_plain_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning divides the loss by the accumulation, DeepSpeedEngine.backward (scale_wrt_gas=True,
    DeepSpeed runtime/engine.py) divides again: the returned loss must carry the factor back."""
    from lightning.pytorch.loops.optimization.automatic import ClosureResult
    from lightning.pytorch.strategies import DeepSpeedStrategy

    deepspeed = DeepSpeedStrategy.__new__(DeepSpeedStrategy)  # no DeepSpeed install needed for isinstance
    module = VersusQModule(motion_frames=8, head_hidden=16)
    monkeypatch.setattr(module, "_sft_step", lambda batch: torch.tensor(2.0))

    def reaches_autograd(strategy: object, acc: int) -> float:
        module._trainer = SimpleNamespace(strategy=strategy, accumulate_grad_batches=acc)  # type: ignore[assignment]
        loss = ClosureResult.from_training_step_output(module.training_step(None, 0), acc).loss  # Lightning
        return float(loss / acc) if strategy is deepspeed else float(loss)  # DeepSpeedEngine.backward

    assert reaches_autograd(deepspeed, 8) == reaches_autograd(object(), 8) == 2.0 / 8
    assert training.deepspeed_loss_factor(module._trainer, automatic=False) == 1  # manual: no accumulation
