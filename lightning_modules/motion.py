"""Motion pathway (paper Sec. 3.3, Eq. 7): frozen SlowFast fast-pathway tokens -> projector g_theta.

``SlowFastMotionEncoder`` runs a pytorchvideo SlowFast (``create_slowfast``) up to ``res5`` and
keeps the **fast** pathway, mean-pooled over space: one feature per fast-pathway time step, so
``T'`` motion frames give ``T'`` motion tokens (64 in the paper; the fast pathway has no temporal
stride). Input is the clip's dense window ``(T', 3, H', W')`` uint8; Kinetics normalisation and the
slow-pathway subsampling (every ``alpha``-th frame) happen inside the encoder.

Weights (``variant="slowfast_r50"``): the Kinetics-400 ``SLOWFAST_8x8_R50.pyth`` checkpoint of the
pytorchvideo model zoo. pytorchvideo's hub download is not used (offline clusters); fetch it once
on a machine with internet::

    wget https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/SLOWFAST_8x8_R50.pyth

and point ``model.init_args.motion_weights`` (``VersusQModule(motion_weights=...)``) at the file.
``variant="tiny"`` is the same architecture with fewer channels (8 in each pathway's stem), one block
per stage (depth 18) and a patch stem; its weights are random (seeded) unless ``motion_weights`` names a checkpoint of
``python -m lightning_modules.motion_pretrain`` (the tiny stand-in for Kinetics pre-training).

Injection: ``MotionInjector`` registers a forward hook on the LLM's input-embedding layer that
overwrites the rows at ``<|motion_pad|>`` positions with the projected motion tokens of the
current batch (set with ``with injector.use(tokens):``). Why a hook rather than building
``inputs_embeds`` ourselves: Qwen3-VL's ``forward``/``generate`` then run unmodified on
``input_ids`` -- M-RoPE positions, vision-token scattering, DeepStack, KV cache, and
``num_return_sequences`` expansion all stay HF's code. During cached decoding only new tokens are
embedded; motion placeholders are never sampled, so the hook is a no-op there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, get_args

import torch
from torch import nn

from lightning_modules.heads import fp32_mlp

MotionEncoderName = Literal["slowfast_r50", "tiny"]
MOTION_VARIANTS: tuple[str, ...] = get_args(MotionEncoderName)
KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


def _build_slowfast(variant: MotionEncoderName) -> nn.Module:
    from pytorchvideo.models.slowfast import create_slowfast

    if variant == "slowfast_r50":
        return create_slowfast(model_num_class=400)  # the zoo's SLOWFAST_8x8_R50 layout
    if variant == "tiny":
        # One block per stage, 8 stem channels in BOTH pathways (beta = 1: the motion tokens come
        # from the fast one, which the R50 layout makes 8x thinner), and a stem that keeps pixel
        # detail: a 4x4 stride-4 patch conv and no max-pool. The R50 stem (7x7 stride 2, then a
        # 2x pool) or a motion clip at half the frame size averages away the blur, noise and
        # coding artefacts of 64-px clips (docs/learning.md).
        return create_slowfast(
            stem_dim_outs=(8, 8),
            slowfast_channel_reduction_ratio=(1,),
            stem_conv_kernel_sizes=((1, 4, 4), (3, 4, 4)),
            stem_conv_strides=((1, 4, 4), (1, 4, 4)),
            stem_pool=(None, None),
            model_depth=18,
            head=None,
        )
    raise ValueError(f"motion_encoder={variant!r}; allowed: {list(MOTION_VARIANTS)}")


#: The tiny SlowFast pre-trained by ``make motion-weights`` (``conf/tiny.yaml``'s ``motion_weights``).
TINY_WEIGHTS = "lightning_modules/weights/tiny_slowfast.pt"
_ROOT = Path(__file__).resolve().parents[1]


def resolve_weights(path: str) -> Path:
    """``path`` as given, or, when relative and absent there, relative to the checkout's root.

    So ``conf/tiny.yaml``'s ``lightning_modules/weights/tiny_slowfast.pt`` loads from any working
    directory. Raises FileNotFoundError naming both places and the command that makes it.
    """
    file = Path(path).expanduser()
    if file.is_file():
        return file
    if not file.is_absolute() and (_ROOT / file).is_file():
        return _ROOT / file
    hint = (
        "make it: make motion-weights (python -m lightning_modules.motion_pretrain, docs/learning.md)"
        if file.name.startswith("tiny")
        else "download SLOWFAST_8x8_R50.pyth, see lightning_modules/motion.py, and set model.init_args.motion_weights"
    )
    where = f"{file}" + ("" if file.is_absolute() else f" (nor {_ROOT / file})")
    raise FileNotFoundError(f"SlowFast checkpoint not found: {where}; {hint}")


def _load_slowfast_weights(model: nn.Module, path: str) -> None:
    file = resolve_weights(path)
    checkpoint = torch.load(file, map_location="cpu", weights_only=False)
    state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch: a checkpoint of another variant
        raise ValueError(f"{file}: not a state dict of this SlowFast variant: {err}") from err
    trunk_missing = [k for k in missing if not k.startswith("blocks.6")]
    if trunk_missing or unexpected:
        raise ValueError(
            f"{file}: not a state dict of this SlowFast variant (missing {trunk_missing[:3]}…, unexpected {list(unexpected)[:3]}…)"
        )


class SlowFastMotionEncoder(nn.Module):
    """Frozen SlowFast; ``(N, T', 3, H, W)`` uint8 -> ``(N, T', C_fast)`` fast-pathway tokens.

    Args:
        variant: ``"slowfast_r50"`` or ``"tiny"`` (both C_fast = 256).
        weights: checkpoint path (required for ``slowfast_r50``; optional for ``tiny``: a
            ``motion_pretrain`` checkpoint, else random weights).
        alpha: fast/slow frame-rate ratio (SlowFast's alpha, 4 for 8x8 R50).
        seed: initialisation seed for ``tiny``.
    """

    def __init__(self, variant: MotionEncoderName = "tiny", weights: str | None = None, alpha: int = 4, seed: int = 0):
        super().__init__()
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        model = _build_slowfast(variant)
        torch.random.set_rng_state(state)
        if variant == "slowfast_r50" and weights is None:
            raise ValueError("motion_encoder='slowfast_r50' needs motion_weights=<path to SLOWFAST_8x8_R50.pyth>")
        if weights is not None:
            _load_slowfast_weights(model, weights)
        self.trunk = nn.ModuleList(list(model.blocks)[:5])  # stem + res2..res5 (fusion included)
        self.alpha = alpha
        self.out_dim = 256  # res5 fast-pathway channels of both variants
        self.register_buffer("mean", torch.tensor(KINETICS_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(KINETICS_STD).view(1, 3, 1, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> SlowFastMotionEncoder:
        """Always stays in eval mode (frozen BatchNorm statistics)."""
        return super().train(False)

    def _dtype(self) -> torch.dtype:
        """The parameters' dtype, with the buffers brought to it.

        DeepSpeed's bf16 casts the parameters of the whole LightningModule (this frozen encoder
        too) but, from DeepSpeed 0.19.4, not the buffers; BatchNorm then fails for any input.
        """
        dtype = next(self.parameters()).dtype
        if any(b.dtype != dtype for b in self.buffers() if b.is_floating_point()):
            self.to(dtype)
        return dtype

    def encode(self, motion: torch.Tensor) -> torch.Tensor:
        """``forward`` without ``no_grad`` and in the current BatchNorm mode (pre-training, probes).

        Args:
            motion: ``(N, T', 3, H, W)`` uint8, ``T' % alpha == 0``.

        Returns:
            ``(N, T', C_fast)`` features in the encoder's dtype, one per fast-pathway frame.
        """
        if motion.shape[1] % self.alpha:
            raise ValueError(f"motion clip has {motion.shape[1]} frames, not a multiple of alpha={self.alpha}")
        fast = motion.permute(0, 2, 1, 3, 4).to(self._dtype()).div(255.0)  # (N, 3, T', H, W)
        fast = (fast - self.mean) / self.std
        x = [fast[:, :, :: self.alpha].contiguous(), fast]  # slow (N,3,T'/a,H,W), fast
        for block in self.trunk:
            x = block(x)
        return x[1].mean(dim=(3, 4)).transpose(1, 2)  # (N, T', C_fast)

    @torch.no_grad()
    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        """Encode dense clips (in the dtype of the encoder's parameters).

        Args:
            motion: ``(N, T', 3, H, W)`` uint8, ``T' % alpha == 0``.

        Returns:
            ``(N, T', C_fast)`` float32 features, one per fast-pathway frame.
        """
        return self.encode(motion).float()


class MotionProjector(nn.Module):
    """g_theta: two-layer MLP from SlowFast features to the LLM embedding size (Eq. 7).

    >>> MotionProjector(8, 16)(torch.zeros(2, 5, 8)).shape
    torch.Size([2, 5, 16])
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(in_dim), nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., in_dim)`` -> ``(..., out_dim)`` float32 (``heads.fp32_mlp``: dtype-robust)."""
        return fp32_mlp(self.net, features)


class MotionInjector:
    """Replaces ``<|motion_pad|>`` embeddings with projected motion tokens (forward hook).

    Args:
        embedding: the LLM's input embedding layer.
        motion_token_id: id of ``<|motion_pad|>``.
    """

    def __init__(self, embedding: nn.Module, motion_token_id: int):
        self.motion_token_id = motion_token_id
        self.tokens: torch.Tensor | None = None  # (B, M, d): per prompt row, in prompt order
        self.handle = embedding.register_forward_hook(self._hook)

    @contextmanager
    def use(self, tokens: torch.Tensor) -> Iterator[None]:
        """Inject ``tokens`` ``(B, M, d)`` into every forward inside the block.

        Rows of a forward may be a multiple ``k * B`` of the prompts (``num_return_sequences``);
        prompt ``b``'s tokens then go to rows ``b*k .. b*k+k-1`` (HF's ``repeat_interleave``).
        """
        previous, self.tokens = self.tokens, tokens
        try:
            yield
        finally:
            self.tokens = previous

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        input_ids = args[0]  # (R, L)
        mask = input_ids == self.motion_token_id  # (R, L)
        if not bool(mask.any()):
            return output
        if self.tokens is None:
            raise RuntimeError("motion placeholders in the input but no motion tokens set (use MotionInjector.use)")
        tokens = self.tokens
        rows = input_ids.shape[0]
        if rows % tokens.shape[0]:
            raise ValueError(f"{rows} input rows cannot be expanded from {tokens.shape[0]} prompts' motion tokens")
        tokens = tokens.repeat_interleave(rows // tokens.shape[0], dim=0)  # (R, M, d)
        counts = mask.sum(1)
        if bool((counts != tokens.shape[1]).any()):
            raise ValueError(f"rows hold {counts.tolist()} motion placeholders, expected {tokens.shape[1]} each")
        out = output.clone()
        out[mask] = tokens.reshape(-1, tokens.shape[-1]).to(out.dtype)
        return out

    def remove(self) -> None:
        """Detach the hook."""
        self.handle.remove()
