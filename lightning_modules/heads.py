"""Margin regression head r_phi (paper Sec. 3.3, Eq. 8): last-layer hidden state at ``<reg>`` -> margin.

Also :func:`fp32_mlp`, the float32 evaluation of the small MLPs (this head and the motion
projector): under DeepSpeed bf16 every parameter is cast to bf16 and there is no autocast, under
``bf16-mixed`` autocast would run them in bf16; both MLPs are tiny, and a margin regressed in
bf16 keeps ~3 significant digits, so their math always runs in float32 whatever the parameters'
dtype (gradients still reach the parameters in their own dtype).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def fp32_mlp(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Apply a ``Sequential`` of ``LayerNorm`` / ``Linear`` / ``GELU`` in float32, autocast off.

    >>> net = nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 2), nn.GELU()).to(torch.bfloat16)
    >>> fp32_mlp(net, torch.ones(3, 4, dtype=torch.bfloat16)).dtype
    torch.float32
    """
    with torch.autocast(x.device.type, enabled=False):
        x = x.float()
        for layer in layers:
            if isinstance(layer, nn.LayerNorm):
                x = F.layer_norm(x, layer.normalized_shape, layer.weight.float(), layer.bias.float(), layer.eps)
            elif isinstance(layer, nn.Linear):
                x = F.linear(x, layer.weight.float(), None if layer.bias is None else layer.bias.float())
            elif isinstance(layer, nn.GELU):
                x = F.gelu(x, approximate=layer.approximate)
            else:
                raise TypeError(f"fp32_mlp: unsupported layer {type(layer).__name__}")
    return x


class MarginHead(nn.Module):
    """Two-layer MLP ``d -> hidden -> 1`` on the ``<reg>`` hidden state, evaluated in float32.

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
        """``(B, d)`` hidden states (any float dtype) -> ``(B,)`` float32 margins."""
        return fp32_mlp(self.net, h_reg).squeeze(-1)
