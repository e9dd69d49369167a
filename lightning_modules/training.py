"""How the fit stage meets the hardware: float32 master weights, global batch, activation checkpointing.

Called from ``VersusQModule.__init__`` (before ``init_from`` is loaded, so the hand-off keeps the
float32 values), ``setup("fit")`` (before the strategy moves the model, builds the optimizer or
DeepSpeed reads ``accumulate_grad_batches``) and ``on_fit_start`` (after the precision plugin
converted the module).

* **Master weights** (issue 9, item 1). ``model.dtype: bfloat16`` stores the VLM in bf16 to save
  memory. Plain AdamW on bf16 weights rounds most lr-1e-5 updates away, and ``bf16-mixed`` is only
  autocast -- it never keeps a float32 copy. So every *trainable* parameter is held in float32
  (autocast runs the matmuls in bf16) and only frozen parts stay in ``dtype``; DeepSpeed casts the
  module to bf16 itself and keeps float32 masters in its ZeRO optimizer. A trainable parameter
  that is not float32 when fitting starts outside DeepSpeed (``precision: bf16-true`` /
  ``16-true`` cast it) is an error.
* **Global batch** (item 4). ``global_batch_size`` is the one batch setting: the gradient
  accumulation is derived from it, the world size and the per-device batch, so stacking a
  multi-GPU overlay keeps the paper's batch.
  Under DeepSpeed the loss is divided by the accumulation twice (Lightning's closure and
  ``DeepSpeedEngine.backward``); :func:`deepspeed_loss_factor` undoes the second division.
* **Activation checkpointing** (item 8): a config switch, on in the GPU overlays.
* **Optimiser groups and schedule**: backbone / projector / head learning rates, warm-up + cosine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from lightning.pytorch.strategies import DeepSpeedStrategy


def uses_deepspeed(trainer: Any) -> bool:
    """Whether the trainer's strategy is DeepSpeed (which keeps float32 masters of bf16 weights)."""
    return isinstance(getattr(trainer, "strategy", None), DeepSpeedStrategy)


def keep_trainable_fp32(module: torch.nn.Module) -> int:
    """Hold every trainable floating parameter in float32 (frozen ones keep their dtype).

    Returns:
        How many parameters were cast.

    >>> net = torch.nn.Linear(2, 2).to(torch.bfloat16)
    >>> keep_trainable_fp32(net), net.weight.dtype
    (2, torch.float32)
    """
    cast = 0
    for p in module.parameters():
        if p.requires_grad and p.is_floating_point() and p.dtype != torch.float32:
            p.data = p.data.float()
            cast += 1
    return cast


def check_trainable_fp32(module: torch.nn.Module, trainer: Any, dtype: str) -> None:
    """Raise when fitting would update low-precision weights without float32 masters.

    Raises:
        ValueError: naming the parameter and the settings that decide it.
    """
    if uses_deepspeed(trainer):
        return
    low = [(n, p.dtype) for n, p in module.named_parameters() if p.requires_grad and p.dtype != torch.float32]
    if low:
        precision = getattr(trainer, "precision", "?")
        raise ValueError(
            f"{len(low)} trainable parameters are {low[0][1]} (e.g. {low[0][0]}) with no float32 master "
            f"copy: AdamW would round most updates away (model.init_args.dtype={dtype!r}, "
            f"trainer.precision={precision!r}, trainer.strategy={type(trainer.strategy).__name__}). "
            "Use trainer.precision: bf16-mixed (trainable weights are then kept in float32) or "
            "strategy: deepspeed_stage_2 (float32 masters in the ZeRO optimizer)"
        )


def accumulation(global_batch: int, world_size: int, per_device: int) -> int:
    """Gradient-accumulation steps that make ``global_batch`` items per optimiser step.

    >>> accumulation(48, 1, 2), accumulation(48, 8, 2), accumulation(8, 8, 1)
    (24, 3, 1)
    >>> accumulation(8, 3, 1)
    Traceback (most recent call last):
    ...
    ValueError: global_batch_size=8 is not divisible by world size (3) x data batch_size (1)
    """
    per_step = world_size * per_device
    if global_batch < 1 or global_batch % per_step:
        raise ValueError(
            f"global_batch_size={global_batch} is not divisible by world size ({world_size}) "
            f"x data batch_size ({per_device})"
        )
    return global_batch // per_step


def set_accumulation(trainer: Any, global_batch: int, manual: bool) -> None:
    """Derive ``trainer.accumulate_grad_batches`` from the global batch (``setup("fit")``).

    Raises:
        ValueError: no datamodule ``batch_size`` to derive from, not divisible, or manual
            optimisation (``ppo_epochs > 1``) that would need accumulation.
    """
    per_device = getattr(getattr(trainer, "datamodule", None), "hparams", {}).get("batch_size")
    if per_device is None:
        raise ValueError("model.global_batch_size needs a datamodule with a batch_size")
    if trainer.accumulate_grad_batches != 1:
        raise ValueError(
            f"give one batch setting: model.global_batch_size={global_batch} derives the "
            f"accumulation, drop trainer.accumulate_grad_batches={trainer.accumulate_grad_batches}"
        )
    acc = accumulation(global_batch, trainer.world_size, int(per_device))
    if manual and acc > 1:
        raise ValueError(
            f"ppo_epochs > 1 updates manually and cannot accumulate: global_batch_size="
            f"{global_batch} needs {acc} accumulation steps at world size {trainer.world_size}; "
            f"set data.batch_size to {global_batch // trainer.world_size}"
        )
    trainer.accumulate_grad_batches = acc


def deepspeed_loss_factor(trainer: Any, automatic: bool) -> int:
    """Factor on the training-step loss that makes DeepSpeed's gradients the non-DeepSpeed ones.

    Lightning divides the returned loss by ``accumulate_grad_batches`` (automatic optimisation),
    and ``DeepSpeedEngine.backward`` divides it again by its ``gradient_accumulation_steps`` (its
    default ``scale_wrt_gas=True``; Lightning copies the same number into the DeepSpeed config).
    The accumulated gradient would be ``acc`` times smaller than without DeepSpeed, so
    ``gradient_clip_val`` (DeepSpeed's ``gradient_clipping``) would clip ``acc`` times later --
    8x for SFT's global batch of 8 on one GPU. Manual optimisation never accumulates (factor 1).

    >>> from types import SimpleNamespace
    >>> deepspeed_loss_factor(SimpleNamespace(strategy=object(), accumulate_grad_batches=8), True)
    1
    """
    if not automatic or not uses_deepspeed(trainer):
        return 1
    return int(trainer.accumulate_grad_batches)


def enable_activation_checkpointing(model: torch.nn.Module) -> None:
    """Recompute decoder/vision-block activations in backward (non-reentrant) to save memory.

    transformers >= 5.24 names it ``activation_checkpointing_enable``; older releases
    ``gradient_checkpointing_enable``.
    """
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def param_groups(model: Any, hp: Any) -> list[dict[str, Any]]:
    """AdamW groups: trainable VLM weights, motion projector, head (each with its learning rate).

    MC-GRPO trains the LLM and projector at ``lr_grpo`` (paper Sec. 4.1: eta) and the head at
    ``lr_head`` (eta_phi of Eq. 14); the "GRPO from SFT" ablation freezes the head.
    """
    grpo = hp.phase == "mcgrpo"
    head = [] if (grpo and hp.freeze_head_in_grpo) else list(model.head.parameters())
    groups = [
        {
            "name": "backbone",
            "params": [p for p in model.vlm.parameters() if p.requires_grad],
            "lr": hp.lr_grpo if grpo else hp.lr_backbone,
        },
        {
            "name": "projector",
            "params": list(model.motion_projector.parameters()),
            "lr": hp.lr_grpo if grpo else hp.lr_projector,
        },
        {"name": "head", "params": head, "lr": hp.lr_head},
    ]
    return [g for g in groups if g["params"]]


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """Learning-rate factor per step: linear warm-up over ``warmup`` steps, then cosine to 0 at ``total``.

    >>> f = warmup_cosine(2, 10)
    >>> [round(f(s), 3) for s in (0, 1, 2, 6, 10)]
    [0.5, 1.0, 1.0, 0.5, 0.0]
    """

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(total - warmup, 1))))

    return factor
