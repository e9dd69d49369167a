"""``VersusQModel``: the ``nn.Module`` of VersusQ (paper Sec. 3.3): VLM + motion pathway + margin head.

It owns the Qwen3-VL backbone (``vlm``), the frozen SlowFast (``motion_encoder``), the trainable
motion projector g_theta, the margin head r_phi, the motion-injection hook and the frozen-encoder
caches. Everything that turns batches into model calls lives here:

* :meth:`build_prompt_inputs` encodes every clip of a ``PairBatch`` / ``VideoBatch`` through the
  cached frozen encoders (``lightning_modules/cache.py``), writes the chat prompt
  (``template.pair_prompt``) with each video's frame placeholders (expanded as Qwen3-VL's
  processor does) and motion placeholders, and tokenizes it;
* :meth:`forward_responses` -- the one forward of every phase: prompt + response + ``<reg>``,
  left-padded so ``<reg>`` is the last position of every row; returns the response tokens'
  log-probs and ``h_<reg>``;
* :meth:`generate_responses` (HF ``generate``), :meth:`prompt_embeds` (vLLM's input) and
  :meth:`respond` (greedy rationale -> validity rule -> head, the inference path).

The training logic (losses, phases, optimisers) is the LightningModule's (``versusq.py``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.video_utils import VideoMetadata

from lightning_modules import objectives
from lightning_modules import template as tpl
from lightning_modules.backbone import Backbone
from lightning_modules.cache import (
    EncoderCache,
    FrozenEncoders,
    PromptInputs,
    assemble,
    expand_inputs,
)
from lightning_modules.heads import MarginHead
from lightning_modules.motion import MotionInjector, MotionProjector, SlowFastMotionEncoder


def clip_groups(batch: Any) -> list[list[Any]]:
    """The clips of each prompt: ``[a, b]`` per pair of a ``PairBatch``; ``[clip]`` per present
    clip of a ``VideoBatch`` (``None`` clips -- undecodable videos -- are skipped)."""
    if hasattr(batch, "clips_a"):
        return [[a, b] for a, b in zip(batch.clips_a, batch.clips_b)]
    return [[c] for c in batch.clips if c is not None]


class VersusQModel(nn.Module):
    """Motion-aware Qwen3-VL with a margin head.

    Args:
        parts: what ``backbone.load_backbone`` returned (VLM, processor, token ids).
        motion_encoder: the frozen SlowFast fast-pathway encoder.
        motion_frames: T' motion tokens per video (the data must decode as many frames).
        head_hidden: hidden width of r_phi.
        readout: ``head`` (``<reg>`` -> r_phi) or ``ntp`` (the number as answer text).
        reasoning: whether responses carry a rationale (the validity rule depends on it).
        max_new_tokens, temperature: generation settings of :meth:`respond` (greedy at 0).
        cache: frozen-encoder cache (``None``: encode every time).
        encoder_tag: identifies the frozen encoders' weights in cache keys.
        freeze_vision: the vision tower is frozen (its features may be cached).
        freeze_llm: keep the language model fixed.
    """

    def __init__(
        self,
        parts: Backbone,
        motion_encoder: SlowFastMotionEncoder,
        *,
        motion_frames: int,
        head_hidden: int,
        readout: tpl.Readout = "head",
        reasoning: bool = True,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        cache: EncoderCache | None = None,
        encoder_tag: str = "",
        freeze_vision: bool = True,
        freeze_llm: bool = False,
    ) -> None:
        super().__init__()
        tpl.check_choice("readout", readout, tpl.READOUTS)
        self.parts = parts
        self.vlm = parts.model
        d = parts.base_model.config.text_config.hidden_size
        self.motion_encoder = motion_encoder
        self.motion_projector = MotionProjector(motion_encoder.out_dim, d)
        self.head = MarginHead(d, head_hidden)
        if freeze_llm:
            parts.base_model.model.language_model.requires_grad_(False)
            parts.base_model.lm_head.requires_grad_(False)
        self.injector = MotionInjector(parts.base_model.get_input_embeddings(), parts.token_ids[tpl.MOTION_PAD])
        self.cache = cache
        self.encoders = FrozenEncoders(
            parts.base_model,
            parts.processor.video_processor,
            motion_encoder,
            cache,
            encoder_tag,
            cache_vision=freeze_vision,
        )
        self.motion_frames, self.readout, self.reasoning = motion_frames, readout, reasoning
        self.max_new_tokens, self.temperature = max_new_tokens, temperature

    # ------------------------------------------------------------------ properties
    @property
    def processor(self) -> Any:
        """The Qwen3-VL processor (tokenizer + image/video processors)."""
        return self.parts.processor

    @property
    def tokenizer(self) -> Any:
        """The processor's tokenizer (left padding)."""
        return self.parts.processor.tokenizer

    @property
    def token_ids(self) -> dict[str, int]:
        """Id of every VersusQ and Qwen special token by its text."""
        return self.parts.token_ids

    @property
    def device(self) -> torch.device:
        """Where the margin head's weights are (the module is on one device)."""
        return next(self.head.parameters()).device

    @property
    def encoder_calls(self) -> dict[str, int]:
        """Videos actually run through each frozen encoder since construction."""
        return dict(self.encoders.calls)

    @property
    def never_generate(self) -> list[int]:
        """Placeholder token ids no engine may sample (``Backbone.never_generate``)."""
        return self.parts.never_generate

    def end_token_ids(self) -> list[int]:
        """Ids that end a generation under this readout (``template.end_tokens``)."""
        return [self.token_ids[t] for t in tpl.end_tokens(self.readout)]

    # ------------------------------------------------------------------ batch -> model inputs
    def build_prompt_inputs(self, batch: Any) -> PromptInputs:
        """Prompts of a ``PairBatch`` (pair template) or ``VideoBatch`` (pointwise; ``None`` clips skipped)."""
        groups = clip_groups(batch)
        clips = [c for g in groups for c in g]
        for clip in clips:
            if clip.motion.shape[0] != self.motion_frames:
                raise ValueError(
                    f"{clip.path}: {clip.motion.shape[0]} motion frames, model expects "
                    f"motion_frames={self.motion_frames} (match data and model config)"
                )
        dtype = self.parts.base_model.get_input_embeddings().weight.dtype
        vision = self.encoders.vision(clips, self.device, dtype)
        motion = self.encoders.motion(clips, self.device)  # (V, T', C)
        texts, k = [], 0
        for group in groups:
            blocks = [
                tpl.video_block(self._frame_placeholder(c, vision[k + i].grid_thw), c.motion.shape[0])
                for i, c in enumerate(group)
            ]
            texts.append(tpl.pair_prompt(*blocks) if len(group) == 2 else tpl.single_prompt(blocks[0]))
            k += len(group)
        ids = [torch.tensor(self.tokenizer(t, add_special_tokens=False).input_ids) for t in texts]
        motion = motion.reshape(len(groups), -1, motion.shape[-1])  # (B, vpp*T', C)
        return PromptInputs(ids, vision, motion, videos_per_prompt=len(groups[0]) if groups else 1)

    def _frame_placeholder(self, clip: Any, grid_thw: torch.Tensor) -> str:
        t = clip.frames.shape[0]
        total = max(int(clip.frame_count), t)
        meta = VideoMetadata(
            total_num_frames=total,
            fps=float(clip.fps) or 24.0,
            frames_indices=np.linspace(0, total - 1, t).round().astype(int).tolist(),
        )
        return self.processor.replace_video_token(
            {"video_grid_thw": grid_thw.view(1, 3).cpu(), "video_metadata": [meta]}, 0
        )

    def _model_kwargs(self, inputs: PromptInputs, seqs: list[torch.Tensor]) -> dict[str, Any]:
        ids = self.token_ids
        kwargs = assemble(seqs, inputs.vision, ids["<|image_pad|>"], ids["<|video_pad|>"], self.tokenizer.pad_token_id)
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in kwargs.items()}

    def response_tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenize teacher-forced responses: ``(B, T)`` right-padded ids and their mask."""
        return self._right_pad([self.tokenizer(t, add_special_tokens=False).input_ids for t in texts], self.device)

    def _right_pad(self, rows: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Token lists -> right-padded ``(N, T)`` ids and their prefix mask on ``device``."""
        lengths = torch.tensor([len(r) for r in rows])
        ids = torch.full((len(rows), int(lengths.max())), self.tokenizer.pad_token_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        return ids.to(device), tpl.lengths_to_mask(lengths, ids.shape[1]).to(device)

    # ------------------------------------------------------------------ forward / generate
    def forward_responses(
        self, inputs: PromptInputs, response_ids: torch.Tensor, response_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward over prompt + response + ``<reg>`` (every phase's forward).

        Args:
            inputs: :meth:`build_prompt_inputs` of ``B`` prompts.
            response_ids: ``(N, T)``, ``N = k * B`` (prompt-major groups of ``k``), right-padded.
            response_mask: ``(N, T)`` bool, a prefix of each row (the response's own tokens).

        Returns:
            ``logprobs (N, T)``: log pi(response token), 0 on padding, with grad; and
            ``h_reg (N, d)``: last-layer hidden state at the appended ``<reg>``.
        """
        inputs = expand_inputs(inputs, response_ids.shape[0] // len(inputs))
        reg = torch.tensor([self.token_ids[tpl.REG]])
        lengths = response_mask.sum(1).cpu()  # (N,)
        seqs = [torch.cat([p, r[:n].cpu(), reg]) for p, r, n in zip(inputs.prompt_ids, response_ids, lengths)]
        kwargs = self._model_kwargs(inputs, seqs)
        t = response_ids.shape[1]
        keep = t + 2  # kept columns W-keep .. W-1: every response token's predictor, and <reg>
        with self.injector.use(self.motion_projector(inputs.motion)):
            out = self.vlm(**kwargs, use_cache=False, output_hidden_states=True, logits_to_keep=keep)
        # response token j of row n sits at kept column t-R_n+j+1; its predictor at t-R_n+j
        idx = ((t - lengths)[:, None] + torch.arange(t)).clamp(max=t).to(self.device)  # (N, T)
        targets = kwargs["input_ids"][:, -keep:].gather(1, idx + 1)  # (N, T)
        rows = out.logits.gather(1, idx[..., None].expand(-1, -1, out.logits.shape[-1]))  # (N, T, V)
        logp = objectives.token_logprobs(rows, targets)  # (N, T)
        return logp * response_mask.to(self.device), out.hidden_states[-1][:, -1]

    def response_logprobs(
        self, inputs: PromptInputs, response_ids: torch.Tensor, response_mask: torch.Tensor
    ) -> torch.Tensor:
        """``(N, T)`` log-probs of the response tokens (the rollout engines' protocol)."""
        return self.forward_responses(inputs, response_ids, response_mask)[0]

    @torch.no_grad()
    def generate_responses(self, inputs: PromptInputs, num_return_sequences: int = 1, **sampling: Any) -> torch.Tensor:
        """Sample/greedy-decode responses; ``(B*k, T)`` ids (prompt stripped), prompt-major, right-padded.

        Generation ends at :meth:`end_token_ids`; the placeholder tokens
        (``Backbone.never_generate``) are suppressed (never sampled). Sampling is from the full
        distribution (``top_k=0``, ``top_p=1``) unless asked otherwise.
        """
        inputs = expand_inputs(inputs, num_return_sequences)
        kwargs = self._model_kwargs(inputs, inputs.prompt_ids)
        sampling.setdefault("max_new_tokens", self.max_new_tokens)
        # explicit settings: HF would apply the checkpoint's generation_config (Qwen3-VL: top_k 20,
        # top_p 0.8, temperature 0.7) or its global defaults (top_k 50) to whatever is not passed
        if sampling.get("temperature", 1.0) == 0.0 or not sampling.get("do_sample", True):
            sampling.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            sampling = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, **sampling}
        sampling.setdefault("repetition_penalty", 1.0)
        with self.injector.use(self.motion_projector(inputs.motion)):
            out = self.vlm.generate(
                **kwargs,
                eos_token_id=self.end_token_ids(),
                pad_token_id=self.tokenizer.pad_token_id,
                suppress_tokens=self.never_generate,
                **sampling,
            )
        return out[:, kwargs["input_ids"].shape[1] :]

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
    @torch.no_grad()
    def respond(self, batch: Any) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """Greedy (or ``temperature``) rationale -> ``<reg>`` -> head, or the parsed number (NTP).

        Head readout: a response that breaks the template's validity rule (budget reached
        without ``</think><answer>``, or ended early) is closed by :func:`template.force_close`,
        the head is read on the closed response and the answer is flagged *forced*. NTP readout:
        a response without a parsable number has nothing to read, so its value is NaN.

        Returns:
            ``values (P,)`` float32 on the CPU; the rationale of each response (the raw text
            where even the closed response does not parse); the ``(P,)`` bool forced flags.
            ``P`` = prompts of the batch (present clips only).
        """
        inputs = self.build_prompt_inputs(batch)
        if not len(inputs):
            return torch.empty(0), [], torch.zeros(0, dtype=torch.bool)
        temp = self.temperature
        ids = self.generate_responses(inputs, 1, do_sample=temp > 0, temperature=temp or None)
        mask = tpl.lengths_to_mask(tpl.response_lengths(ids, self.end_token_ids()), ids.shape[1])
        texts = tpl.decode_rows(self.tokenizer, ids, mask)
        parsed = [tpl.parse_response(t, self.readout, self.reasoning) for t in texts]
        invalid = torch.tensor([not p.valid for p in parsed], dtype=torch.bool)
        if self.readout == "ntp":
            values = torch.tensor([p.number for p in parsed], dtype=torch.float32)
            values[invalid] = float("nan")
            return values, [p.rationale if p.valid else t for p, t in zip(parsed, texts)], torch.zeros_like(invalid)
        if invalid.any():
            ids, mask = self._closed(ids, mask, invalid)
            texts = tpl.decode_rows(self.tokenizer, ids, mask)
            parsed = [tpl.parse_response(t, self.readout, self.reasoning) for t in texts]
        values = self.head(self.forward_responses(inputs, ids, mask)[1]).float().cpu()
        return values, [p.rationale if p.valid else t for p, t in zip(parsed, texts)], invalid

    def _closed(
        self, ids: torch.Tensor, mask: torch.Tensor, invalid: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``ids``/``mask`` with the ``invalid`` rows closed by :func:`template.force_close`."""
        tid, end_ids = self.token_ids, self.end_token_ids()
        rows = [row[m].tolist() for row, m in zip(ids.cpu(), mask.cpu())]
        rows = [
            tpl.force_close(r, tid[tpl.THINK_END], tid[tpl.ANSWER], end_ids) if bad else r
            for r, bad in zip(rows, invalid.tolist())
        ]
        return self._right_pad(rows, ids.device)

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
