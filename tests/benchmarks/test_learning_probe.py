"""benchmarks/learning_probe.py: the oracle replaces every visual token by its clip's quality direction."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from benchmarks import learning_probe
from lightning_modules.cache import VisionFeatures


def test_oracle_tokens_carry_the_clip_quality() -> None:
    d = 8
    real = [VisionFeatures(torch.tensor([1, 2, 2]), torch.randn(4, d), [torch.randn(4, d)]) for _ in range(2)]
    encoders = SimpleNamespace(vision=lambda clips, device, dtype: real)
    config = SimpleNamespace(text_config=SimpleNamespace(hidden_size=d))
    module = SimpleNamespace(model=SimpleNamespace(encoders=encoders, vlm=SimpleNamespace(config=config)))
    learning_probe.install_oracle(module, {"a.mp4": 0.9, "b.mp4": 0.1}, gain=4.0, seed=0)
    clips = [SimpleNamespace(path="a.mp4"), SimpleNamespace(path="b.mp4")]
    out = module.model.encoders.vision(clips, "cpu", torch.float32)
    a, b = out[0].embeds, out[1].embeds
    assert a.shape == (4, d) and torch.allclose(a, a[0].expand_as(a))  # one direction on every token
    assert torch.allclose(a[0], -b[0]) and abs(a[0].norm().item() - 4.0 * 0.4) < 1e-5  # 4 (q - 0.5) u
    assert all(not x.any() for x in out[0].deepstack)  # DeepStack levels carry nothing
