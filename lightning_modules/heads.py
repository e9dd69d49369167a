"""Margin regression head r_phi (paper Sec. 3.3, Eq. 8): last-layer hidden state at ``<reg>`` -> margin."""

from __future__ import annotations

import torch
from torch import nn


class MarginHead(nn.Module):
    """Two-layer MLP ``d -> hidden -> 1`` on the ``<reg>`` hidden state.

    The input is layer-normalised first: the LLM's last hidden state (before the final norm of
    some backbones) has a scale that varies across checkpoints, the head should not depend on it.

    Args:
        in_dim: LLM hidden size ``d``.
        hidden: width of the hidden layer.

    >>> head = MarginHead(8, 4)
    >>> head(torch.zeros(3, 8)).shape
    torch.Size([3])
    """

    def __init__(self, in_dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, h_reg: torch.Tensor) -> torch.Tensor:
        """``(B, d)`` hidden states -> ``(B,)`` float32 margins."""
        return self.net(h_reg.float()).squeeze(-1)
