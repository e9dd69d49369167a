"""``VersusQModule``: the LightningModule (paper Sec. 3.3-3.4). It orchestrates; parts live elsewhere.

Model inputs are built here from ``PairBatch`` / ``VideoBatch`` (``datamodules/pairwise.py``):
:meth:`build_prompt_inputs` encodes every clip through the cached frozen encoders
(``lightning_modules/cache.py``), writes the chat prompt (``backbone.pair_prompt``) with each
video's frame placeholders (expanded as Qwen3-VL's processor does) and motion placeholders, and
tokenizes it. Every later forward goes through :meth:`forward_responses`: prompt + response +
``<reg>``, left-padded so ``<reg>`` is the last position of every row; it returns the response
tokens' log-probs and ``h_<reg>``. SFT (:meth:`_sft_step`), MC-GRPO and inference all use it.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule

from lightning_modules import backbone as bb
from lightning_modules import objectives
from lightning_modules.cache import (
    EncoderCache,
    FrozenEncoders,
    PromptInputs,
    assemble,
    expand_inputs,
)
from lightning_modules.heads import MarginHead
from lightning_modules.mcgrpo import MCGRPOMixin
from lightning_modules.motion import MotionInjector, MotionProjector, SlowFastMotionEncoder

PHASES = ("sft", "mcgrpo")
TARGETS = ("pairwise", "pointwise")
READOUTS = ("head", "ntp")


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}; allowed: {list(allowed)}")


class VersusQModule(MCGRPOMixin, LightningModule):
    """Motion-aware Qwen3-VL + margin head, trained by SFT (here) and MC-GRPO (``phase="mcgrpo"``).

    Args:
        backbone: ``"tiny"`` (embedded CPU model) or a Qwen3-VL hub id / local path.
        lora: LoRA settings for ``load_backbone`` (``None`` = full fine-tuning, the paper's).
        attn_implementation: ``"eager" | "sdpa" | "flash_attention_2"`` or ``None``.
        dtype: weights dtype of the VLM (``"bfloat16" | "float16" | "float32"``).
        seed: initialisation seed of the tiny parts.
        motion_encoder: ``"slowfast_r50"`` (needs ``motion_weights``) or ``"tiny"``.
        motion_weights: path to ``SLOWFAST_8x8_R50.pyth`` (see ``lightning_modules/motion.py``).
        motion_frames: T' dense frames per video = motion tokens per video (paper: 64).
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
        max_new_tokens, temperature: generation settings of :meth:`predict_margin` (greedy at 0).
        cache_size, cache_dir: frozen-encoder cache (memory entries, optional disk directory).
        num_generations, alpha_reward, format_weight, beta_kl, clip_eps, lambda_aux,
            freeze_head_in_grpo, lr_grpo: MC-GRPO hyper-parameters (paper Sec. 4.1, App. B).
        ppo_epochs: K policy updates per rollout batch (1: automatic optimisation; K > 1:
            manual, so ``trainer.accumulate_grad_batches`` must be 1).
    """

    def __init__(
        self,
        backbone: str = "tiny",
        lora: dict[str, Any] | None = None,
        attn_implementation: str | None = None,
        dtype: str = "float32",
        seed: int = 0,
        motion_encoder: str = "tiny",
        motion_weights: str | None = None,
        motion_frames: int = 64,
        head_hidden: int = 256,
        phase: str = "sft",
        lambda_reg: float = 0.5,
        lr_backbone: float = 1e-5,
        lr_projector: float = 1e-4,
        lr_head: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        init_from: str | None = None,
        freeze_vision: bool = True,
        freeze_llm: bool = False,
        target: str = "pairwise",
        readout: str = "head",
        reasoning: bool = True,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        cache_size: int = 4096,
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
    ) -> None:
        super().__init__()
        for name, value, allowed in (("phase", phase, PHASES), ("target", target, TARGETS),
                                     ("readout", readout, READOUTS)):
            _check(name, value, allowed)
        if ppo_epochs < 1:
            raise ValueError(f"ppo_epochs={ppo_epochs}; must be >= 1")
        self.save_hyperparameters()
        self.automatic_optimization = not (phase == "mcgrpo" and ppo_epochs > 1)
        self._build(bb.load_backbone(backbone, lora, attn_implementation, dtype, freeze_vision, seed))
        self.parse_failures = 0
        if init_from:
            self.load_weights(init_from)

    def _build(self, parts: bb.Backbone) -> None:
        hp = self.hparams
        self.parts = parts
        self.model = parts.model
        self.processor = parts.processor
        d = parts.base_model.config.text_config.hidden_size
        self.motion_encoder = SlowFastMotionEncoder(hp.motion_encoder, hp.motion_weights, seed=hp.seed)
        self.motion_projector = MotionProjector(self.motion_encoder.out_dim, d)
        self.head = MarginHead(d, hp.head_hidden)
        if hp.freeze_llm:
            parts.base_model.model.language_model.requires_grad_(False)
            parts.base_model.lm_head.requires_grad_(False)
        self.injector = MotionInjector(parts.base_model.get_input_embeddings(), parts.token_ids[bb.MOTION_PAD])
        tag = f"{parts.source}:{hp.seed}:{hp.motion_encoder}:{hp.motion_weights}"
        self.cache = EncoderCache(hp.cache_size, hp.cache_dir)
        self.encoders = FrozenEncoders(parts.base_model, self.processor.video_processor, self.motion_encoder,
                                       self.cache, tag, cache_vision=hp.freeze_vision)

    # ------------------------------------------------------------------ properties / bookkeeping
    @property
    def tokenizer(self) -> Any:
        """The processor's tokenizer (left padding)."""
        return self.processor.tokenizer

    @property
    def encoder_calls(self) -> dict[str, int]:
        """Videos actually run through each frozen encoder since construction."""
        return dict(self.encoders.calls)

    @property
    def checkpoint_id(self) -> str:
        """Stable id of where the weights came from (for the evaluation journal)."""
        trainer = self._trainer
        ckpt = getattr(trainer, "ckpt_path", None) if trainer is not None else None
        source = ckpt or self.hparams.init_from
        if not source:
            return f"init:{self.hparams.backbone}:{self.hparams.seed}"
        step = trainer.global_step if trainer is not None else 0
        digest = hashlib.sha1(f"{Path(source).resolve()}:{step}".encode()).hexdigest()[:12]
        return f"ckpt:{Path(source).name}:{step}:{digest}"

    def load_weights(self, path: str) -> None:
        """Load the weights of a VersusQ checkpoint (``init_from``: SFT -> MC-GRPO hand-off)."""
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"init_from checkpoint not found: {file}")
        state = torch.load(file, map_location="cpu", weights_only=False)
        missing, unexpected = self.load_state_dict(state.get("state_dict", state), strict=False)
        if missing or unexpected:
            raise ValueError(f"{file}: weights do not match this model (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")

    def policy_model(self) -> torch.nn.Module:
        """The VLM whose LLM weights the vLLM engine hosts."""
        return self.model

    # ------------------------------------------------------------------ batch -> model inputs
    def _groups(self, batch: Any) -> list[list[Any]]:
        if hasattr(batch, "clips_a"):
            return [[a, b] for a, b in zip(batch.clips_a, batch.clips_b)]
        return [[c] for c in batch.clips if c is not None]

    def build_prompt_inputs(self, batch: Any) -> PromptInputs:
        """Prompts of a ``PairBatch`` (pair template) or ``VideoBatch`` (pointwise; ``None`` clips skipped)."""
        groups = self._groups(batch)
        clips = [c for g in groups for c in g]
        for clip in clips:
            if clip.motion.shape[0] != self.hparams.motion_frames:
                raise ValueError(f"{clip.path}: {clip.motion.shape[0]} motion frames, model expects "
                                 f"motion_frames={self.hparams.motion_frames} (match data and model config)")
        dtype = self.parts.base_model.get_input_embeddings().weight.dtype
        vision = self.encoders.vision(clips, self.device, dtype)
        motion = self.encoders.motion(clips, self.device)  # (V, T', C)
        texts, k = [], 0
        for group in groups:
            blocks = [bb.video_block(self._frame_placeholder(c, vision[k + i].grid_thw), c.motion.shape[0])
                      for i, c in enumerate(group)]
            texts.append(bb.pair_prompt(*blocks) if len(group) == 2 else bb.single_prompt(blocks[0]))
            k += len(group)
        ids = [torch.tensor(self.tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
        motion = motion.reshape(len(groups), -1, motion.shape[-1])  # (B, vpp*T', C)
        return PromptInputs(ids, vision, motion, videos_per_prompt=len(groups[0]) if groups else 1)

    def _frame_placeholder(self, clip: Any, grid_thw: torch.Tensor) -> str:
        from transformers.video_utils import VideoMetadata

        t = clip.frames.shape[0]
        total = max(int(clip.frame_count), t)
        meta = VideoMetadata(total_num_frames=total, fps=float(clip.fps) or 24.0,
                             frames_indices=np.linspace(0, total - 1, t).round().astype(int).tolist())
        return self.processor.replace_video_token(
            {"video_grid_thw": grid_thw.view(1, 3).cpu(), "video_metadata": [meta]}, 0)

    def _model_kwargs(self, inputs: PromptInputs, seqs: list[torch.Tensor]) -> dict[str, Any]:
        ids = self.parts.token_ids
        kwargs = assemble(seqs, inputs.vision, ids["<|image_pad|>"], ids["<|video_pad|>"], self.tokenizer.pad_token_id)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in kwargs.items()}

    # ------------------------------------------------------------------ forward / generate API
    def forward_responses(self, inputs: PromptInputs, response_ids: torch.Tensor,
                          response_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward over prompt + response + ``<reg>`` (the ``_forward_with_reg`` of every phase).

        Args:
            inputs: :meth:`build_prompt_inputs` of ``B`` prompts.
            response_ids: ``(N, T)``, ``N = k * B`` (prompt-major groups of ``k``), right-padded.
            response_mask: ``(N, T)`` bool, a prefix of each row (the response's own tokens).

        Returns:
            ``logprobs (N, T)``: log pi(response token), 0 on padding, with grad; and
            ``h_reg (N, d)``: last-layer hidden state at the appended ``<reg>``.
        """
        inputs = expand_inputs(inputs, response_ids.shape[0] // len(inputs))
        reg = torch.tensor([self.parts.token_ids[bb.REG]])
        lengths = response_mask.sum(1).cpu()  # (N,)
        seqs = [torch.cat([p, r[:n].cpu(), reg]) for p, r, n in zip(inputs.prompt_ids, response_ids, lengths)]
        kwargs = self._model_kwargs(inputs, seqs)
        t = response_ids.shape[1]
        keep = t + 2  # kept columns W-keep .. W-1: every response token's predictor, and <reg>
        with self.injector.use(self.motion_projector(inputs.motion)):
            out = self.model(**kwargs, use_cache=False, output_hidden_states=True, logits_to_keep=keep)
        logits = out.logits.float()  # (N, keep, V)
        # response token j of row n sits at kept column t-R_n+j+1; its predictor at t-R_n+j
        idx = ((t - lengths)[:, None] + torch.arange(t)).clamp(max=t).to(self.device)  # (N, T)
        targets = kwargs["input_ids"][:, -keep:].gather(1, idx + 1)  # (N, T)
        rows = logits.gather(1, idx[..., None].expand(-1, -1, logits.shape[-1]))  # (N, T, V)
        logp = rows.gather(2, targets[..., None]).squeeze(-1) - torch.logsumexp(rows, -1)  # (N, T)
        return logp * response_mask.to(self.device), out.hidden_states[-1][:, -1]

    def response_logprobs(self, inputs: PromptInputs, response_ids: torch.Tensor,
                          response_mask: torch.Tensor) -> torch.Tensor:
        """``(N, T)`` log-probs of the response tokens (rollout-callback protocol)."""
        return self.forward_responses(inputs, response_ids, response_mask)[0]

    def sequence_logprobs(self, inputs: PromptInputs, response_ids: torch.Tensor,
                          response_mask: torch.Tensor) -> torch.Tensor:
        """Alias of :meth:`response_logprobs`."""
        return self.response_logprobs(inputs, response_ids, response_mask)

    def margins_from_hidden(self, h_reg: torch.Tensor) -> torch.Tensor:
        """``(N, d)`` ``<reg>`` states -> ``(N,)`` margins (r_phi, Eq. 8)."""
        return self.head(h_reg)

    def _end_ids(self) -> list[int]:
        ids = self.parts.token_ids
        end = bb.ANSWER if self.hparams.readout == "head" else bb.ANSWER_END
        return [ids[end], ids["<|im_end|>"]]

    @torch.no_grad()
    def generate_responses(self, inputs: PromptInputs, num_return_sequences: int = 1,
                           **sampling: Any) -> torch.Tensor:
        """Sample/greedy-decode responses; ``(B*k, T)`` ids (prompt stripped), prompt-major, right-padded.

        Generation ends at ``<answer>`` (``</answer>`` for the NTP readout) or ``<|im_end|>``;
        ``<reg>``, the motion and vision placeholder tokens are suppressed (never sampled).
        ``stop_strings`` that are one special token become end ids; others go to HF as is.
        """
        inputs = expand_inputs(inputs, num_return_sequences)
        kwargs = self._model_kwargs(inputs, inputs.prompt_ids)
        eos = self._end_ids()
        extra: dict[str, Any] = {}
        stops = [s for s in sampling.pop("stop_strings", None) or [] if s not in self.parts.token_ids]
        if stops:
            extra = {"stop_strings": stops, "tokenizer": self.tokenizer}
        sampling.setdefault("max_new_tokens", self.hparams.max_new_tokens)
        if sampling.get("temperature", 1.0) == 0.0 or not sampling.get("do_sample", True):
            sampling.update(do_sample=False, temperature=None, top_p=None)
        ids = self.parts.token_ids
        never = self.parts.never_generate + [ids[t] for t in ("<|video_pad|>", "<|image_pad|>",
                                                             "<|vision_start|>", "<|vision_end|>")]
        with self.injector.use(self.motion_projector(inputs.motion)):
            out = self.model.generate(**kwargs, eos_token_id=eos, pad_token_id=self.tokenizer.pad_token_id,
                                      suppress_tokens=never, **sampling, **extra)
        return out[:, kwargs["input_ids"].shape[1]:]

    def prompt_embeds(self, inputs: PromptInputs) -> list[torch.Tensor]:
        """Per prompt ``(L_b, d)`` input embeddings with video and motion features scattered in (vLLM)."""
        kwargs = self._model_kwargs(inputs, inputs.prompt_ids)
        embed = self.parts.base_model.get_input_embeddings()
        with self.injector.use(self.motion_projector(inputs.motion)):
            x = embed(kwargs["input_ids"])  # (B, W, d)
        video = torch.cat(kwargs["mm_encoder_outputs"]["video"].pooler_output).to(x.dtype)
        x = x.masked_scatter((kwargs["mm_token_type_ids"] == 2)[..., None], video)
        return [row[m.bool()] for row, m in zip(x, kwargs["attention_mask"])]

    # ------------------------------------------------------------------ inference
    def _respond(self, batch: Any) -> tuple[torch.Tensor, list[str]]:
        """Greedy rationale -> ``<reg>`` -> head (or the parsed number). NaN where the format fails."""
        inputs = self.build_prompt_inputs(batch)
        if not len(inputs):
            return torch.empty(0), []
        temp = self.hparams.temperature
        ids = self.generate_responses(inputs, 1, do_sample=temp > 0, temperature=temp or None)
        lengths, _ = bb.end_lengths(ids, self._end_ids())
        mask = torch.arange(ids.shape[1], device=ids.device)[None] < lengths[:, None].to(ids.device)
        texts = [self.tokenizer.decode(r[m].tolist(), skip_special_tokens=False) for r, m in zip(ids, mask)]
        parsed = [bb.parse_response(t, self.hparams.readout) for t in texts]
        if self.hparams.readout == "head":
            _, h_reg = self.forward_responses(inputs, ids, mask)
            values = self.head(h_reg).float().cpu()
        else:
            values = torch.tensor([p[2] for p in parsed], dtype=torch.float32)
        bad = torch.tensor([not p[1] for p in parsed])
        values[bad] = float("nan")
        self._count_failures(int(bad.sum()))
        return values, [p[0] if p[1] else t for p, t in zip(parsed, texts)]

    def _count_failures(self, n: int) -> None:
        self.parse_failures += n
        if n and self._trainer is not None and not self._trainer.predicting:
            # Lightning forbids self.log in predict; the evaluation callback reports failures there
            self.log("parse_failures", float(self.parse_failures), reduce_fx="max")

    @torch.no_grad()
    def predict_margin(self, batch: Any) -> tuple[torch.Tensor, list[str]]:
        """Signed margins ``(B,)`` (NaN on a format failure) and rationales of a ``PairBatch``.

        The pointwise-target ablation scores both videos with :meth:`predict_score` and
        subtracts (``s_a - s_b``).
        """
        if self.hparams.target == "pointwise":
            from types import SimpleNamespace

            clips = list(batch.clips_a) + list(batch.clips_b)
            scores, texts = self.predict_score(SimpleNamespace(clips=clips))
            b = len(batch.clips_a)
            return scores[:b] - scores[b:], [f"A: {x} B: {y}" for x, y in zip(texts[:b], texts[b:])]
        return self._respond(batch)

    @torch.no_grad()
    def predict_score(self, batch: Any) -> tuple[torch.Tensor, list[str]]:
        """Pointwise ablation: absolute score per video of a ``VideoBatch`` (NaN for ``None`` clips)."""
        if hasattr(batch, "clips_a"):
            raise TypeError("predict_score takes a VideoBatch (clips), not a PairBatch")
        values, texts = self._respond(batch)
        present = [c is not None for c in batch.clips]
        scores = torch.full((len(present),), float("nan"))
        scores[torch.tensor(present, dtype=torch.bool)] = values
        it = iter(texts)
        return scores, [next(it) if p else "" for p in present]

    @torch.no_grad()
    def encode_videos(self, batch: Any) -> int:
        """Warm the frozen-encoder caches with a ``VideoBatch``'s clips; returns how many were encoded."""
        clips = [c for c in getattr(batch, "clips", []) if c is not None]
        before = sum(self.encoders.calls.values())
        if clips:
            dtype = self.parts.base_model.get_input_embeddings().weight.dtype
            self.encoders.vision(clips, self.device, dtype)
            self.encoders.motion(clips, self.device)
        return sum(self.encoders.calls.values()) - before

    # ------------------------------------------------------------------ training
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """Dispatch on ``phase``."""
        if self.hparams.phase == "sft":
            return self._sft_step(batch)
        return self._mcgrpo_step(batch, batch_idx)

    def _mcgrpo_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """generate -> reward -> advantages -> K policy updates with aux regression -> log (Eq. 11-14).

        Rewards use the rollout policy's margins (the first update's forward, detached); ratios
        use the rollout's old log-probs (recomputed by this model, see ``RolloutCallback``);
        pi_ref is the SFT initialisation (``lightning_modules/mcgrpo.py``). ``ppo_epochs == 1``:
        Lightning optimises the returned loss; ``K > 1``: K manual updates on this rollout batch.
        """
        hp = self.hparams
        g = hp.num_generations
        rollouts = self._rollout_engine().generate(self, batch, g)  # 1. generate (no grad)
        inputs = self.build_prompt_inputs(batch)  # encoder outputs come from the cache
        target = batch.margin.float().to(self.device).repeat_interleave(g)  # (N,)
        ref = self._reference_logprobs(inputs, rollouts) if hp.beta_kl else None  # (N, T)
        logp, margin = self._policy_forward(inputs, rollouts)  # (N, T), (N,), with grad
        rewards = objectives.total_reward(margin, target, rollouts.texts, hp.alpha_reward,
                                          format_weight=hp.format_weight)  # 2. reward (N,)
        advantages = objectives.group_advantages(rewards, g)  # 3. advantages (N,)
        for k in range(hp.ppo_epochs):  # 4. K policy updates, each with the aux regression
            if k:
                logp, margin = self._policy_forward(inputs, rollouts)
            terms = objectives.mcgrpo_loss(
                logp, rollouts.old_logprobs, ref, advantages, rollouts.response_mask, margin,
                target, hp.clip_eps, hp.beta_kl, hp.lambda_aux, aux=not hp.freeze_head_in_grpo)
            self._manual_update(terms.loss)
        self._log_mcgrpo(rewards, rollouts, terms, len(batch.clips_a))  # 5. log
        if not self.automatic_optimization:
            self.lr_schedulers().step()
        return terms.loss

    def _targets(self, batch: Any) -> tuple[torch.Tensor, list[str]]:
        """Regression targets (margin m*, or MOS for the pointwise ablation) and rationales."""
        if self.hparams.target == "pointwise":
            if hasattr(batch, "clips_a"):
                raise TypeError("target='pointwise' trains on VideoBatch items (clips + mos), got a PairBatch")
            keep = torch.tensor([c is not None for c in batch.clips])
            target, rationale = batch.mos[keep].float(), None
        else:
            target, rationale = batch.margin.float(), batch.rationale
        if not self.hparams.reasoning:
            return target, [""] * len(target)
        if rationale is None:
            raise ValueError("SFT with reasoning=True needs batch.rationale; set model.init_args.reasoning=false "
                             "or give the data rationales")
        return target, list(rationale)

    def _sft_tokens(self, target: torch.Tensor, rationales: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenized ``<think>c</think><answer>`` (+ number for NTP) without ``<reg>``: ``(B, T)`` ids, mask."""
        ntp = self.hparams.readout == "ntp"
        texts = [bb.response_text(r, f"{m:+.2f}" if ntp else "")[: -len(bb.REG)] for r, m in zip(rationales, target.tolist())]
        rows = [torch.tensor(self.tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
        mask = torch.arange(width)[None] < torch.tensor([len(r) for r in rows])[:, None]
        return ids.to(self.device), mask.to(self.device)

    def sft_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        """L_SFT = L_NTP (response tokens up to ``<answer>``) + lambda_reg * MSE(r_phi(h_<reg>), m*) (Eq. 9-10)."""
        target, rationales = self._targets(batch)
        inputs = self.build_prompt_inputs(batch)
        ids, mask = self._sft_tokens(target, rationales)
        logp, h_reg = self.forward_responses(inputs, ids, mask)
        ntp = -logp.sum() / mask.sum()
        pred = self.head(h_reg)
        reg = torch.mean((pred - target.to(pred.device)) ** 2)
        weight = self.hparams.lambda_reg if self.hparams.readout == "head" else 0.0
        return {"loss": ntp + weight * reg, "ntp": ntp.detach(), "reg_mse": reg.detach(),
                "zero_mse": torch.mean(target**2)}

    def _sft_step(self, batch: Any) -> torch.Tensor:
        start = time.perf_counter()
        out = self.sft_loss(batch)
        n = len(out_batch) if (out_batch := getattr(batch, "clips_a", None)) is not None else len(batch.clips)
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

    def _param_groups(self) -> list[dict[str, Any]]:
        hp = self.hparams
        grpo = hp.phase == "mcgrpo"
        head_params = [] if (grpo and hp.freeze_head_in_grpo) else [p for p in self.head.parameters()]
        llm = [p for p in self.model.parameters() if p.requires_grad]
        groups = [
            {"name": "backbone", "params": llm, "lr": hp.lr_grpo if grpo else hp.lr_backbone},
            {"name": "projector", "params": list(self.motion_projector.parameters()),
             "lr": hp.lr_grpo if grpo else hp.lr_projector},
            {"name": "head", "params": head_params, "lr": hp.lr_head},
        ]
        return [g for g in groups if g["params"]]

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over backbone / projector / head groups; linear warm-up then cosine decay."""
        if self.hparams.phase == "mcgrpo" and self.hparams.freeze_head_in_grpo:
            self.head.requires_grad_(False)
        optimizer = torch.optim.AdamW(self._param_groups(), weight_decay=self.hparams.weight_decay)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = self.hparams.warmup_steps

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(total - warmup, 1))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
