"""MarginHead: one float per <reg> state, trainable."""

from __future__ import annotations

import torch

from lightning_modules.heads import MarginHead


def test_margin_head_shape_and_gradient() -> None:
    head = MarginHead(16, 8)
    h = torch.randn(5, 16, dtype=torch.bfloat16)
    out = head(h)
    assert out.shape == (5,) and out.dtype == torch.float32
    out.sum().backward()
    assert all(p.grad is not None for p in head.parameters())


def test_margin_head_fits_a_linear_target() -> None:
    torch.manual_seed(0)
    head = MarginHead(8, 32)
    x = torch.randn(64, 8)
    y = x[:, 0] - 0.5 * x[:, 1]
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        loss = torch.mean((head(x) - y) ** 2)
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 * torch.mean(y**2).item()
