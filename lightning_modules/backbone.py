"""``load_backbone``: the Qwen3-VL model + processor VersusQ is built on (the seam tests replace).

Two sources, one code path afterwards:

* **real** -- any hub id or local directory of a Qwen3-VL checkpoint (default
  ``Qwen/Qwen3-VL-4B-Instruct``): ``Qwen3VLForConditionalGeneration`` + ``AutoProcessor``, bf16,
  optional flash-attention 2 and optional LoRA (PEFT).
* **tiny** (``name="tiny"``, the embedded CPU default) -- the *same* classes
  (``Qwen3VLForConditionalGeneration``, ``Qwen3VLProcessor`` with ``Qwen2VLImageProcessor`` and
  ``Qwen3VLVideoProcessor``) from a small config built in code (~1 M parameters) and a byte-level
  BPE tokenizer trained deterministically at load time on ``tokenizer/corpus.txt`` (a few KB of
  VQA vocabulary). It never touches the hub or the network.

Both get the VersusQ tokens of ``lightning_modules/template.py`` (``<think> </think> <answer>
</answer> <reg>`` and the motion placeholders ``<|motion_start|> <|motion_pad|> <|motion_end|>``,
embeddings resized). ``<reg>``, the motion and the vision placeholders are in
:attr:`Backbone.never_generate` (every generation engine suppresses them).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import nn

from lightning_modules.template import (
    MOTION_END,
    MOTION_PAD,
    MOTION_START,
    REG,
    VERSUSQ_TOKENS,
    check_choice,
)

DEFAULT_HUB_ID = "Qwen/Qwen3-VL-4B-Instruct"
QWEN_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
#: Placeholder tokens that stand for inputs (features are scattered in at their positions) or
#: for the head's readout: a model must never sample them.
PLACEHOLDER_TOKENS = (
    REG,
    MOTION_START,
    MOTION_PAD,
    MOTION_END,
    "<|video_pad|>",
    "<|image_pad|>",
    "<|vision_start|>",
    "<|vision_end|>",
)
#: VersusQ tokens whose embeddings the model reads and that are new to a hub checkpoint (the
#: motion pads are overwritten by the projector): trained even under LoRA.
TRAINED_TOKEN_ROWS = tuple(t for t in VERSUSQ_TOKENS if t != MOTION_PAD)
DType = Literal["bfloat16", "float16", "float32"]
AttnImplementation = Literal["eager", "sdpa", "flash_attention_2"]
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
ATTN_IMPLEMENTATIONS: tuple[str, ...] = get_args(AttnImplementation)
TOKENIZER_DIR = Path(__file__).resolve().parent / "tokenizer"


@dataclass
class Backbone:
    """What :func:`load_backbone` returns.

    Attributes:
        model: ``Qwen3VLForConditionalGeneration`` (wrapped in a ``PeftModel`` with LoRA).
        processor: ``Qwen3VLProcessor`` (tokenizer + image + video processors).
        source: hub id / path, or ``"tiny"``.
        token_ids: id of every VersusQ and Qwen special token by its text.
    """

    model: nn.Module
    processor: Any
    source: str
    token_ids: dict[str, int] = field(default_factory=dict)

    @property
    def tokenizer(self) -> Any:
        """The processor's tokenizer."""
        return self.processor.tokenizer

    @property
    def base_model(self) -> nn.Module:
        """The ``Qwen3VLForConditionalGeneration`` under an optional PEFT wrapper."""
        get_base = getattr(self.model, "get_base_model", None)
        return get_base() if callable(get_base) else self.model

    @property
    def never_generate(self) -> list[int]:
        """Ids of :data:`PLACEHOLDER_TOKENS`, suppressed at generation by every engine."""
        return [self.token_ids[t] for t in PLACEHOLDER_TOKENS]


@lru_cache(maxsize=1)
def _tiny_tokenizer_json() -> str:
    """Train the tiny byte-level BPE on the in-repo corpus (deterministic; cached per process)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = (TOKENIZER_DIR / "corpus.txt").read_text(encoding="utf-8").splitlines()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=768,
        special_tokens=list(QWEN_TOKENS + VERSUSQ_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    return tok.to_str()


def build_tiny_tokenizer() -> Any:
    """A ``PreTrainedTokenizerFast`` with the Qwen chat/vision tokens and the VersusQ tokens."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tiny_tokenizer_json()),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
    )
    tok.add_special_tokens({"additional_special_tokens": list(QWEN_TOKENS[1:] + VERSUSQ_TOKENS)})
    return tok


def build_tiny_processor() -> Any:
    """``Qwen3VLProcessor`` for the tiny model: small pixel budgets so 64-px frames stay tiny."""
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    video = Qwen3VLVideoProcessor(
        size={"shortest_edge": 2 * 32 * 32, "longest_edge": 8 * 64 * 64},
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        do_sample_frames=False,
        cap_pixels_per_frame=False,
    )
    image = Qwen2VLImageProcessor(
        size={"shortest_edge": 32 * 32, "longest_edge": 64 * 64},
        patch_size=16,
        merge_size=2,
        temporal_patch_size=2,
    )
    return Qwen3VLProcessor(image_processor=image, tokenizer=build_tiny_tokenizer(), video_processor=video)


def tiny_config(tokenizer: Any) -> Any:
    """The embedded default's ``Qwen3VLConfig``: 2 text layers (d=64), 2 vision blocks, DeepStack on block 0."""
    from transformers import Qwen3VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_TOKENS}
    vocab = (len(tokenizer) + 63) // 64 * 64
    text = dict(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [2, 3, 3],
            "mrope_interleaved": True,
        },
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=16,
        temporal_patch_size=2,
        spatial_merge_size=2,
        out_hidden_size=64,
        num_position_embeddings=64,
        deepstack_visual_indexes=[0],
    )
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def _check_attn(attn_implementation: str | None) -> None:
    if attn_implementation is None:
        return
    check_choice("attn_implementation", attn_implementation, ATTN_IMPLEMENTATIONS)
    if attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ImportError(
            "attn_implementation='flash_attention_2' needs flash-attn: pip install flash-attn "
            "(or pip install 'versusq[flash]'); use 'sdpa' without it"
        )


def _dtype(name: str) -> torch.dtype:
    check_choice("dtype", name, tuple(DTYPES))
    return DTYPES[name]


def _load_real(name: str, dtype: torch.dtype, attn_implementation: str | None) -> tuple[nn.Module, Any]:
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    processor = AutoProcessor.from_pretrained(name)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    model = Qwen3VLForConditionalGeneration.from_pretrained(name, **kwargs)
    return model, processor


def _load_tiny(seed: int, dtype: torch.dtype, attn_implementation: str | None) -> tuple[nn.Module, Any]:
    from transformers import Qwen3VLForConditionalGeneration

    processor = build_tiny_processor()
    config = tiny_config(processor.tokenizer)
    config._attn_implementation = attn_implementation or "sdpa"
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the tiny weights depend on `seed` only, not on the caller's RNG
    model = Qwen3VLForConditionalGeneration(config).to(dtype)
    torch.random.set_rng_state(state)
    return model, processor


def _add_versusq_tokens(model: nn.Module, processor: Any) -> dict[str, int]:
    """Add the VersusQ tokens (no-op for ones present) and grow the embeddings when needed."""
    tok = processor.tokenizer
    missing = [t for t in VERSUSQ_TOKENS if t not in tok.get_vocab()]
    if missing:
        tok.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    if len(tok) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tok), pad_to_multiple_of=64)
    tok.padding_side = "left"  # generation needs left padding; training masks padding anyway
    return {t: tok.convert_tokens_to_ids(t) for t in QWEN_TOKENS + VERSUSQ_TOKENS}


def apply_lora(model: nn.Module, lora: dict[str, Any], token_rows: list[int] | None = None) -> nn.Module:
    """Wrap ``model`` with PEFT LoRA on the language model.

    The embedding and output rows of ``token_rows`` (VersusQ's own tokens, untrained in the
    hub checkpoint) are trained as well (peft ``trainable_token_indices``: a few rows, not full
    copies of both matrices as ``modules_to_save`` would make).

    Args:
        model: the ``Qwen3VLForConditionalGeneration``.
        lora: ``rank`` (16), ``alpha`` (32), ``dropout`` (0.05), ``target_modules`` (regex or
            list; default: the language model's attention and MLP projections) and optional
            ``modules_to_save``.
        token_rows: token ids whose embedding (and, untied, output) rows train.
    """
    from peft import LoraConfig, get_peft_model

    allowed = {"rank", "alpha", "dropout", "target_modules", "modules_to_save"}
    unknown = sorted(set(lora) - allowed)
    if unknown:
        raise ValueError(f"lora keys {unknown} unknown; allowed: {sorted(allowed)}")
    target = lora.get(
        "target_modules",
        r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
    )
    config = LoraConfig(
        r=int(lora.get("rank", 16)),
        lora_alpha=int(lora.get("alpha", 32)),
        lora_dropout=float(lora.get("dropout", 0.05)),
        target_modules=target,
        modules_to_save=lora.get("modules_to_save"),
        trainable_token_indices=_token_rows(model, token_rows),
    )
    return get_peft_model(model, config)


def _token_rows(model: nn.Module, rows: list[int] | None) -> list[int] | dict[str, list[int]] | None:
    """peft's ``trainable_token_indices``: one list when input and output embeddings are tied."""
    if not rows:
        return None
    if getattr(model.config, "tie_word_embeddings", False):
        return list(rows)
    return {"embed_tokens": list(rows), "lm_head": list(rows)}


def load_backbone(
    name: str = "tiny",
    lora: dict[str, Any] | None = None,
    attn_implementation: AttnImplementation | None = None,
    dtype: DType = "bfloat16",
    freeze_vision: bool = True,
    seed: int = 0,
) -> Backbone:
    """Load the VLM and its processor, add the VersusQ tokens, freeze the vision tower.

    Args:
        name: ``"tiny"`` (embedded, offline) or a hub id / local path of a Qwen3-VL checkpoint.
        lora: LoRA settings (see :func:`apply_lora`); ``None`` = full fine-tuning.
        attn_implementation: ``"eager" | "sdpa" | "flash_attention_2"`` or ``None`` (default).
        dtype: ``"bfloat16" | "float16" | "float32"``.
        freeze_vision: keep the vision tower's parameters fixed (paper: frozen).
        seed: initialisation seed of the tiny model.

    Raises:
        ImportError: flash-attention 2 asked for but ``flash_attn`` is not installed.
        ValueError: an unknown ``dtype`` / ``attn_implementation`` / LoRA key.
    """
    _check_attn(attn_implementation)
    torch_dtype = _dtype(dtype)
    if name == "tiny":
        model, processor = _load_tiny(seed, torch_dtype, attn_implementation)
    else:
        model, processor = _load_real(os.path.expanduser(name), torch_dtype, attn_implementation)
    token_ids = _add_versusq_tokens(model, processor)
    model.requires_grad_(True)
    if freeze_vision:
        model.model.visual.requires_grad_(False)
    if lora:
        model = apply_lora(model, lora, [token_ids[t] for t in TRAINED_TOKEN_ROWS])
    return Backbone(model=model, processor=processor, source=name, token_ids=token_ids)
