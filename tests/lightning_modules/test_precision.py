"""GPU precision paths emulated on CPU (issue 9 items 1-2): the whole module cast to bf16 the way
DeepSpeed does, and bf16 storage with float32 trainable weights under bf16-mixed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch

from callbacks.rollout import RolloutCallback
from lightning_modules.versusq import VersusQModule

MOTION_FRAMES = 8
BF16 = torch.bfloat16


def _deepspeed_cast(module: torch.nn.Module, buffers: bool) -> None:
    """DeepSpeed bf16: every parameter (>= 0.19.4) or the whole module (<= 0.19.0) to bf16."""
    if buffers:
        module.to(BF16)
    else:
        for p in module.parameters():
            p.data = p.data.to(BF16)


@pytest.mark.parametrize("buffers", [False, True], ids=["params-only", "params+buffers"])
@pytest.mark.parametrize("phase", ["sft", "mcgrpo"])
def test_whole_module_in_bf16_runs_a_training_step(buffers: bool, phase: str, make_pair_batch: Any) -> None:
    module = VersusQModule(motion_frames=MOTION_FRAMES, head_hidden=32, phase=phase, max_new_tokens=6)
    module.log_dict = lambda metrics, **kw: None  # type: ignore[method-assign]  # no Trainer
    RolloutCallback().setup(SimpleNamespace(global_step=0), module, "fit")  # type: ignore[arg-type]
    _deepspeed_cast(module, buffers)
    batch = make_pair_batch([(0, 1), (2, 3)], rationales=["A is sharper.", "B is noisier."])
    batch.margin = batch.margin.to(BF16)  # Lightning's DeepSpeedPrecision casts floating batch tensors
    torch.manual_seed(0)
    loss = module.training_step(batch, 0)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in module.model.head.parameters()] + [
        p.grad for p in module.model.motion_projector.parameters()
    ]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(p.grad is not None for n, p in module.model.vlm.named_parameters() if "language_model" in n)
    margins, _, _ = module.predict_margin(batch)  # inference in bf16 too
    assert margins.dtype == torch.float32 and margins.shape == (2,)
