"""``VersusQModule``: the LightningModule (paper Sec. 3.3-3.4): settings, phases, optimisers.

It orchestrates; the parts live elsewhere: the ``nn.Module`` with every model call is
:class:`~lightning_modules.model.VersusQModel` (``self.model``), the response template and its
validity rule are ``template.py``, the loss math ``objectives.py``, MC-GRPO's stages
``mcgrpo.py``. ``training_step`` dispatches on ``phase`` (SFT: :meth:`_sft_step`; MC-GRPO:
``mcgrpo.mcgrpo_step``); callbacks call :meth:`predict_margin` / :meth:`predict_score` /
:meth:`encode_videos`, and identify the model by :meth:`comparison_identity`.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from lightning.pytorch import Callback, LightningModule

from callbacks.evaluation import ComparisonGraphEvaluation
from callbacks.rollout import RolloutCallback
from lightning_modules import backbone as bb
from lightning_modules import mcgrpo, objectives, training
from lightning_modules import template as tpl
from lightning_modules.cache import EncoderCache
from lightning_modules.checkpoints import load_state_dict, upgrade_state_dict, weights_digest
from lightning_modules.inference import InferenceMixin
from lightning_modules.model import VersusQModel
from lightning_modules.motion import MotionEncoderName, SlowFastMotionEncoder

Phase = Literal["sft", "mcgrpo"]
PHASES: tuple[str, ...] = get_args(Phase)
#: Settings that define the architecture or what the weights were trained to do: a value given
#: on the command line that contradicts a checkpoint's is an error (``lightning_modules/cli.py``).
ARCHITECTURE_KEYS = (
    "backbone",
    "lora",
    "seed",
    "motion_encoder",
    "motion_frames",
    "head_hidden",
    "target",
    "readout",
    "reasoning",
)
#: Settings that change a comparison besides the weights (``comparison_identity``).
_IDENTITY_KEYS = (
    "backbone",
    "dtype",
    "attn_implementation",
    "motion_encoder",
    "motion_frames",
    "target",
    "readout",
    "reasoning",
)
_DECODE_KEYS = ("num_frames", "motion_frames", "frame_size", "motion_size", "motion_crop", "alpha")


class VersusQModule(InferenceMixin, LightningModule):
    """Motion-aware Qwen3-VL + margin head, trained by SFT and MC-GRPO (``phase``).

    Args:
        backbone: ``"tiny"`` (embedded CPU model) or a Qwen3-VL hub id / local path.
        lora: LoRA settings for ``load_backbone`` (``None`` = full fine-tuning, the paper's).
        attn_implementation: attention kernel of the VLM (``None``: transformers' default).
        dtype: weights dtype of the VLM.
        seed: initialisation seed of the tiny parts.
        motion_encoder: ``"slowfast_r50"`` (needs ``motion_weights``) or ``"tiny"``.
        motion_weights: path to ``SLOWFAST_8x8_R50.pyth`` (see ``lightning_modules/motion.py``).
        motion_frames: T' dense frames per video = motion tokens per video (paper: 64); the CLI
            links it to the datamodule.
        head_hidden: hidden width of the margin head r_phi.
        phase: ``"sft"`` or ``"mcgrpo"``.
        lambda_reg: weight of the margin MSE in SFT (Eq. 10).
        lr_backbone, lr_projector, lr_head: SFT learning rates (paper 1e-5, 1e-4, 1e-4).
        weight_decay, warmup_steps: AdamW decay; linear warm-up steps, then cosine decay.
        init_from: SFT checkpoint whose weights initialise this module (``--ckpt_path`` resumes).
        freeze_vision, freeze_llm: keep the vision tower / language model fixed.
        target: ``"pairwise"`` (the method) or ``"pointwise"`` (ablation: one video, absolute score).
        readout: ``"head"`` (``<reg>`` -> r_phi) or ``"ntp"`` (ablation: the number as answer text).
        reasoning: ``False`` trains with an empty ``<think>`` block (ablation).
        max_new_tokens: generation budget of inference and of the MC-GRPO rollouts.
        temperature: sampling temperature of :meth:`predict_margin` (greedy at 0).
        cache_gib, cache_dir: frozen-encoder cache (host-RAM budget in GiB per process, optional
            disk directory for everything beyond it).
        num_generations: G rollouts per prompt in MC-GRPO (paper 4).
        alpha_reward, format_weight, beta_kl, clip_eps, lambda_aux, freeze_head_in_grpo, lr_grpo:
            MC-GRPO hyper-parameters (paper Sec. 4.1, App. B).
        ppo_epochs: K policy updates per rollout batch (1: automatic optimisation; K > 1:
            manual, so there can be no gradient accumulation).
        tis_cap: cap of the truncated importance weight ``pi_trainer / pi_engine`` correcting a
            rollout engine that samples from an approximation of the policy (vLLM; TRL's 3.0).
        global_batch_size: items (pairs / prompts) per optimiser step over all devices; the
            gradient accumulation is derived from it (``training.set_accumulation``). ``None``
            keeps ``trainer.accumulate_grad_batches``.
        activation_checkpointing: recompute the VLM's layer activations in backward (GPU memory).
        val_comparisons_per_video: at each validation during ``fit``, rank the ``val_sets`` from
            the model's OWN generations with this many comparisons per video and log
            ``val/<set>/lsq_srcc`` (a learning check a teacher-forced loss cannot give: a
            rationale fed in names the answer); 0 turns it off. Adds a val-only
            ``ComparisonGraphEvaluation`` when none is configured.
    """

    def __init__(
        self,
        backbone: str = "tiny",
        lora: dict[str, Any] | None = None,
        attn_implementation: bb.AttnImplementation | None = None,
        dtype: bb.DType = "float32",
        seed: int = 0,
        motion_encoder: MotionEncoderName = "tiny",
        motion_weights: str | None = None,
        motion_frames: int = 64,
        head_hidden: int = 256,
        phase: Phase = "sft",
        lambda_reg: float = 0.5,
        lr_backbone: float = 1e-5,
        lr_projector: float = 1e-4,
        lr_head: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        init_from: str | None = None,
        freeze_vision: bool = True,
        freeze_llm: bool = False,
        target: tpl.Target = "pairwise",
        readout: tpl.Readout = "head",
        reasoning: bool = True,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        cache_gib: float = 4.0,
        cache_dir: str | None = None,
        num_generations: int = 4,
        alpha_reward: float = 1.0,
        format_weight: float = 0.2,
        beta_kl: float = 0.01,
        clip_eps: float = 0.2,
        lambda_aux: float = 0.5,
        freeze_head_in_grpo: bool = False,
        lr_grpo: float = 1e-6,
        ppo_epochs: int = 1,
        tis_cap: float = 3.0,
        global_batch_size: int | None = None,
        activation_checkpointing: bool = False,
        val_comparisons_per_video: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value, allowed in (
            ("phase", phase, PHASES),
            ("target", target, tpl.TARGETS),
            ("readout", readout, tpl.READOUTS),
        ):
            tpl.check_choice(name, value, allowed)
        if ppo_epochs < 1 or num_generations < 2:
            raise ValueError(f"ppo_epochs={ppo_epochs} must be >= 1 and num_generations={num_generations} >= 2")
        self.save_hyperparameters()
        self.automatic_optimization = not (phase == "mcgrpo" and ppo_epochs > 1)
        parts = bb.load_backbone(backbone, lora, attn_implementation, dtype, freeze_vision, seed)
        encoder = SlowFastMotionEncoder(motion_encoder, motion_weights, seed=seed)
        self.model = VersusQModel(
            parts,
            encoder,
            motion_frames=motion_frames,
            head_hidden=head_hidden,
            readout=readout,
            reasoning=reasoning,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            cache=EncoderCache(int(cache_gib * 2**30), cache_dir),
            freeze_vision=freeze_vision,
            freeze_llm=freeze_llm,
            encoder_tag=f"{parts.source}:{seed}:{motion_encoder}:{motion_weights}",
        )
        if activation_checkpointing:
            training.enable_activation_checkpointing(parts.base_model)
        training.keep_trainable_fp32(self)  # `dtype` stores the frozen parts; see training.py
        self.reference = mcgrpo.ReferencePolicy(init_from)
        self.parse_failures = 0  # NTP readout: responses without a number (NaN answers)
        self.forced_closes = 0  # head readout: responses closed by template.force_close
        self._digest: tuple[Any, str] | None = None
        self._loaded_from: str | None = None
        if init_from:
            self.load_weights(init_from)

    # ------------------------------------------------------------------ identity / weights
    @property
    def checkpoint_id(self) -> str:
        """Where the weights came from, for display (the journal uses :meth:`comparison_identity`)."""
        ckpt = getattr(self._trainer, "ckpt_path", None) if self._trainer is not None else None
        source = ckpt or self.hparams.init_from
        if not source:
            return f"init:{self.hparams.backbone}:{self.hparams.seed}"
        step = self._trainer.global_step if self._trainer is not None else 0
        digest = hashlib.sha1(f"{Path(source).resolve()}:{step}".encode()).hexdigest()[:12]
        return f"ckpt:{Path(source).name}:{step}:{digest}"

    def load_weights(self, path: str) -> None:
        """Load the weights of a VersusQ checkpoint (``init_from``: SFT -> MC-GRPO hand-off)."""
        missing, unexpected = self.load_state_dict(load_state_dict(path), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{path}: weights do not match this model (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        self._loaded_from = str(path)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Accept pre-split checkpoints (``checkpoints.upgrade_state_dict``); weights change here."""
        checkpoint["state_dict"] = upgrade_state_dict(checkpoint["state_dict"])
        self._digest = None

    def _weights_key(self) -> tuple[Any, ...]:
        """Changes whenever the weights can have changed: optimiser steps and ``load_state_dict``
        bump tensor versions, the reference swap moves data pointers; DeepSpeed writes through
        ``.data``, which only the step counter and the loaded checkpoint reveal."""
        trainer = self._trainer
        step = trainer.global_step if trainer is not None else 0
        ckpt = getattr(trainer, "ckpt_path", None) if trainer is not None else None
        tensors = tuple((t.data_ptr(), t._version) for _, t in self._hashed_tensors())
        return step, ckpt, self._loaded_from, tensors

    def _hashed_tensors(self) -> list[tuple[str, torch.Tensor]]:
        return list(self.named_parameters()) + list(self.named_buffers())

    def comparison_identity(self) -> dict[str, Any]:
        """Everything of the model that changes a comparison, JSON-serialisable.

        A content hash of every parameter and buffer (cached until the weights can have changed),
        the settings that change outputs, the generation settings, ``template.TEMPLATE_VERSION``
        and, when a datamodule is attached, how it decodes videos.
        """
        key = self._weights_key()
        if self._digest is None or self._digest[0] != key:
            self._digest = (key, weights_digest(self._hashed_tensors()))
        hp = self.hparams
        identity: dict[str, Any] = {k: hp[k] for k in _IDENTITY_KEYS}
        identity.update(
            weights=self._digest[1],
            template_version=tpl.TEMPLATE_VERSION,
            generation={"max_new_tokens": hp.max_new_tokens, "temperature": hp.temperature},
        )
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        decode = dict(getattr(datamodule, "hparams", {}))
        if decode:
            identity["decode"] = {k: decode[k] for k in _DECODE_KEYS if k in decode}
        return identity

    # ------------------------------------------------------------------ inference (InferenceMixin)
    def encode_videos(self, batch: Any) -> int:
        """Warm the frozen-encoder caches with a ``VideoBatch``'s clips; returns how many were encoded."""
        return self.model.encode_videos(batch)

    # ------------------------------------------------------------------ training
    def setup(self, stage: str) -> None:
        """Fit: accumulation from the global batch."""
        if stage == "fit" and self.hparams.global_batch_size:
            training.set_accumulation(self.trainer, self.hparams.global_batch_size, not self.automatic_optimization)

    def on_fit_start(self) -> None:
        """After the precision plugin converted the module: no low-precision weights without masters."""
        training.check_trainable_fp32(self, self.trainer, self.hparams.dtype)

    def rollout_engine(self) -> RolloutCallback:
        """The ``RolloutCallback`` attached in its ``setup`` (``pl_module.rollout``)."""
        engine = getattr(self, "rollout", None)
        if engine is None:
            raise RuntimeError(
                "phase='mcgrpo' needs a callbacks.rollout.RolloutCallback (the module adds a "
                "default one in configure_callbacks when the trainer has none)"
            )
        return engine

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Dispatch on ``phase`` (loss rescaled under DeepSpeed: ``training.deepspeed_loss_factor``)."""
        loss = self._sft_step(batch) if self.hparams.phase == "sft" else mcgrpo.mcgrpo_step(self, batch)
        if self._trainer is None:  # called directly (tests)
            return loss
        return loss * training.deepspeed_loss_factor(self._trainer, self.automatic_optimization)

    def regression_target(self, batch: Any) -> torch.Tensor:
        """``(P,)`` float target of each prompt: m* of a ``PairBatch``, or the MOS of each present
        clip of a ``VideoBatch`` (pointwise ablation; ``build_prompt_inputs`` skips ``None`` clips)."""
        if self.hparams.target == "pairwise":
            if not hasattr(batch, "clips_a") or batch.margin is None:
                raise TypeError("target='pairwise' trains on PairBatch items with margins")
            return batch.margin.float()
        if hasattr(batch, "clips_a"):
            raise TypeError("target='pointwise' trains on VideoBatch items (clips + mos), got a PairBatch")
        return batch.mos[torch.tensor([c is not None for c in batch.clips], dtype=torch.bool)].float()

    def _targets(self, batch: Any) -> tuple[torch.Tensor, list[str]]:
        """Regression targets (:meth:`regression_target`) and the rationale of each prompt."""
        target = self.regression_target(batch)
        if not self.hparams.reasoning:
            return target, [""] * len(target)
        rationale = batch.rationale
        if rationale is not None and not hasattr(batch, "clips_a"):  # only the present clips' prompts
            rationale = [r for r, c in zip(rationale, batch.clips) if c is not None]
        if rationale is None:
            raise ValueError(
                "SFT with reasoning=True needs batch.rationale; set model.init_args.reasoning=false "
                "or give the data rationales"
            )
        return target, list(rationale)

    def sft_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        """L_SFT = L_NTP (response tokens up to ``<answer>``) + lambda_reg * MSE(r_phi(h_<reg>), m*) (Eq. 9-10)."""
        target, rationales = self._targets(batch)
        ntp_readout = self.hparams.readout == "ntp"
        texts = [tpl.generated_text(r, f"{m:+.2f}" if ntp_readout else "") for r, m in zip(rationales, target.tolist())]
        ids, mask = self.model.response_tokens(texts)
        logp, h_reg = self.model.forward_responses(self.model.build_prompt_inputs(batch), ids, mask)
        pred = self.model.head(h_reg)
        out = objectives.sft_loss(
            logp, mask, pred, target.to(pred.device), 0.0 if ntp_readout else self.hparams.lambda_reg
        )
        return {
            "loss": out.loss,
            "ntp": out.ntp.detach(),
            "reg_mse": out.reg.detach(),
            "zero_mse": torch.mean(target**2),
        }

    def _sft_step(self, batch: Any) -> torch.Tensor:
        start = time.perf_counter()
        out = self.sft_loss(batch)
        n = len(batch)
        self.log_dict({f"train/{k}": v for k, v in out.items() if k != "zero_mse"}, prog_bar=True, batch_size=n)
        self.log("train/pairs_per_s", n / max(time.perf_counter() - start, 1e-9), batch_size=n)
        return out["loss"]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """``PairBatch``: teacher-forced SFT losses vs the predict-zero baseline; ``VideoBatch``: warm caches."""
        if hasattr(batch, "clips_a") and batch.margin is not None:
            out = self.sft_loss(batch)
            self.log_dict({f"val/{k}": v for k, v in out.items()}, batch_size=len(batch.clips_a))
        else:
            self.encode_videos(batch)

    def test_step(self, batch: Any, batch_idx: int) -> int:
        """Warm the encoder caches; the evaluation callback makes the comparisons."""
        return self.encode_videos(batch)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> int:
        """Warm the encoder caches; the evaluation callback makes the comparisons."""
        return self.encode_videos(batch)

    def configure_callbacks(self) -> list[Callback]:
        """The callbacks a stage cannot do without, when the trainer has none of their type.

        ``test`` / ``predict`` always make comparisons (a default ``ComparisonGraphEvaluation``;
        YAML files only tune it), ``fit`` does when ``val_comparisons_per_video > 0`` (the
        learning check) and MC-GRPO always has a rollout engine (HF by default).
        Lightning *replaces* trainer callbacks of a returned type, so one is returned only when
        none is configured.
        """
        trainer = self._trainer
        have = tuple(type(c) for c in (trainer.callbacks if trainer is not None else []))
        stage = trainer.state.fn if trainer is not None else None
        wanted: list[Callback] = []
        if stage in ("test", "predict") and not issubclass_any(have, ComparisonGraphEvaluation):
            wanted.append(ComparisonGraphEvaluation())
        per_video = self.hparams.val_comparisons_per_video
        if stage == "fit" and per_video > 0 and not issubclass_any(have, ComparisonGraphEvaluation):
            # the fit-time learning check: a few generated comparisons, LSQ only, no extras
            wanted.append(
                ComparisonGraphEvaluation(
                    budget_per_item=per_video,
                    aggregators=("lsq",),
                    antisymmetry_pairs=0,
                    stages=("val",),
                    convergence_steps=0,
                    num_rationales=2,
                    progress=False,
                )
            )
        if stage == "fit" and self.hparams.phase == "mcgrpo" and not issubclass_any(have, RolloutCallback):
            wanted.append(RolloutCallback())
        return wanted

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over backbone / projector / head groups; linear warm-up then cosine decay."""
        hp = self.hparams
        if hp.phase == "mcgrpo" and hp.freeze_head_in_grpo:
            self.model.head.requires_grad_(False)
        optimizer = torch.optim.AdamW(training.param_groups(self.model, hp), weight_decay=hp.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, training.warmup_cosine(hp.warmup_steps, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def issubclass_any(types: tuple[type, ...], base: type) -> bool:
    """Whether any of ``types`` is ``base`` or a subclass of it.

    >>> issubclass_any((int, str), object), issubclass_any((int,), str)
    (True, False)
    """
    return any(issubclass(t, base) for t in types)
