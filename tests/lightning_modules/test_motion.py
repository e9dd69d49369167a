"""SlowFast fast-pathway tokens, projector, injection hook, checkpoint loading errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lightning_modules.motion import MotionInjector, MotionProjector, SlowFastMotionEncoder


@pytest.fixture(scope="module")
def encoder() -> SlowFastMotionEncoder:
    return SlowFastMotionEncoder("tiny")


def test_one_token_per_fast_frame(encoder: SlowFastMotionEncoder) -> None:
    clips = torch.randint(0, 255, (2, 16, 3, 32, 32), dtype=torch.uint8)
    out = encoder(clips)
    assert out.shape == (2, 16, encoder.out_dim)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # content reaches the features


def test_encoder_is_frozen_and_deterministic(encoder: SlowFastMotionEncoder) -> None:
    encoder.train()
    assert not encoder.training
    assert not any(p.requires_grad for p in encoder.parameters())
    clips = torch.randint(0, 255, (1, 8, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(encoder(clips), encoder(clips))


def test_bad_motion_inputs(encoder: SlowFastMotionEncoder, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="alpha"):
        encoder(torch.zeros(1, 6, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="allowed"):
        SlowFastMotionEncoder("i3d")
    with pytest.raises(ValueError, match="motion_weights"):
        SlowFastMotionEncoder("slowfast_r50")
    with pytest.raises(FileNotFoundError, match="SLOWFAST_8x8_R50"):
        SlowFastMotionEncoder("slowfast_r50", weights=str(tmp_path / "missing.pyth"))


def test_injector_replaces_placeholders_and_expands() -> None:
    embed = nn.Embedding(10, 4)
    injector = MotionInjector(embed, motion_token_id=7)
    ids = torch.tensor([[1, 7, 7, 2], [7, 3, 7, 2]])
    tokens = torch.arange(8.0).view(1, 2, 4)  # one prompt, 2 motion tokens
    with injector.use(tokens):
        out = embed(ids)  # 2 rows = the prompt expanded twice
    assert torch.equal(out[0, 1:3], tokens[0]) and torch.equal(out[1, [0, 2]], tokens[0])
    assert torch.equal(out[0, 0], embed.weight[1])
    with pytest.raises(RuntimeError, match="use"):
        embed(ids)
    with injector.use(torch.zeros(1, 3, 4)), pytest.raises(ValueError, match="expected 3"):
        embed(ids)
    assert torch.equal(embed(torch.tensor([[1, 2]])), embed.weight[[1, 2]][None])  # no placeholders: no-op


def test_projector_maps_to_llm_width() -> None:
    proj = MotionProjector(64, 32)
    assert proj(torch.randn(2, 16, 64)).shape == (2, 16, 32)
