"""load_backbone: tiny Qwen3-VL loads offline, VersusQ tokens, template, freezing, error messages."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest
import torch

from lightning_modules import backbone as bb
from lightning_modules import template as tpl


@pytest.fixture(scope="module")
def tiny() -> bb.Backbone:
    return bb.load_backbone("tiny", dtype="float32")


def test_tiny_loads_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    parts = bb.load_backbone("tiny", dtype="float32")
    assert type(parts.base_model).__name__ == "Qwen3VLForConditionalGeneration"
    assert type(parts.processor).__name__ == "Qwen3VLProcessor"
    assert type(parts.processor.video_processor).__name__ == "Qwen3VLVideoProcessor"
    assert sum(p.numel() for p in parts.model.parameters()) < 5_000_000


def test_tiny_is_deterministic(tiny: bb.Backbone) -> None:
    again = bb.load_backbone("tiny", dtype="float32")
    assert again.tokenizer.get_vocab() == tiny.tokenizer.get_vocab()
    for (name, a), (_, b) in zip(tiny.model.named_parameters(), again.model.named_parameters()):
        assert torch.equal(a, b), name


def test_versusq_tokens_are_single_ids(tiny: bb.Backbone) -> None:
    tok = tiny.tokenizer
    for text in tpl.VERSUSQ_TOKENS:
        ids = tok(text, add_special_tokens=False).input_ids
        assert ids == [tiny.token_ids[text]], text
    assert tiny.base_model.get_input_embeddings().weight.shape[0] >= len(tok)
    placeholders = {tiny.token_ids[t] for t in (tpl.REG, tpl.MOTION_PAD, "<|video_pad|>", "<|vision_end|>")}
    assert placeholders <= set(tiny.never_generate)


def test_response_template_token_by_token(tiny: bb.Backbone) -> None:
    tok = tiny.tokenizer
    ids = tok(tpl.response_text("Video A is sharper."), add_special_tokens=False).input_ids
    tokens = tok.convert_ids_to_tokens(ids)
    assert tokens[0] == tpl.THINK and tokens[-3:] == [tpl.THINK_END, tpl.ANSWER, tpl.REG]
    assert tok.decode(ids[1:-3]) == "Video A is sharper."


def test_vision_frozen_llm_trainable(tiny: bb.Backbone) -> None:
    model = tiny.base_model
    assert not any(p.requires_grad for p in model.model.visual.parameters())
    assert all(p.requires_grad for p in model.model.language_model.parameters())


def test_bad_options_raise() -> None:
    with pytest.raises(ValueError, match="allowed"):
        bb.load_backbone("tiny", dtype="float64")
    with pytest.raises(ValueError, match="allowed"):
        bb.load_backbone("tiny", attn_implementation="magic")


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn installed")
def test_flash_attention_missing_names_install() -> None:
    with pytest.raises(ImportError, match="pip install flash-attn"):
        bb.load_backbone("tiny", attn_implementation="flash_attention_2")


def test_lora_wraps_language_model_and_trains_new_token_rows() -> None:
    parts = bb.load_backbone("tiny", dtype="float32", lora={"rank": 4, "alpha": 8})
    trainable = [n for n, p in parts.model.named_parameters() if p.requires_grad]
    assert trainable and all("language_model" in n or "lm_head" in n for n in trainable)
    deltas = [n for n in trainable if "trainable_tokens_delta" in n]
    assert len(deltas) == 2 and all("lora_" in n for n in trainable if n not in deltas)  # embed + lm_head rows
    adapter = parts.base_model.get_input_embeddings().token_adapter
    rows = {parts.token_ids[t] for t in bb.TRAINED_TOKEN_ROWS}
    assert set(adapter.token_indices["default"]) == rows and parts.token_ids[tpl.MOTION_PAD] not in rows
    with pytest.raises(ValueError, match="allowed"):
        bb.load_backbone("tiny", lora={"r": 4})


def test_lora_token_rows_move_and_reach_vllm() -> None:
    from callbacks.vllm_weights import policy_weights

    torch.manual_seed(0)
    parts = bb.load_backbone("tiny", dtype="float32", lora={"rank": 4, "alpha": 8})
    embed = parts.base_model.get_input_embeddings()
    before = dict(policy_weights(parts.model))
    opt = torch.optim.SGD([p for p in parts.model.parameters() if p.requires_grad], lr=1.0)
    ids = torch.tensor([[parts.token_ids[tpl.ANSWER], parts.token_ids[tpl.REG], 5]])
    embed(ids).sum().backward()
    opt.step()
    after = dict(policy_weights(parts.model))
    name = "model.language_model.embed_tokens.weight"
    assert before.keys() == after.keys() and name in after and "lm_head.weight" in after
    moved = (after[name] != before[name]).any(1).nonzero().flatten().tolist()
    assert moved == sorted([parts.token_ids[tpl.ANSWER], parts.token_ids[tpl.REG]])  # trained rows only


@pytest.mark.gpu
@pytest.mark.slow
def test_real_qwen3_vl_4b_loads() -> None:
    """Needs the Qwen3-VL-4B-Instruct weights (hub cache or HF access) and a CUDA GPU."""
    parts = bb.load_backbone(bb.DEFAULT_HUB_ID, dtype="bfloat16", attn_implementation="sdpa")
    model = parts.base_model.cuda()
    assert parts.token_ids[tpl.REG] < model.get_input_embeddings().weight.shape[0]
    ids = parts.tokenizer(tpl.pair_prompt("[A]", "[B]"), return_tensors="pt").input_ids.cuda()
    with torch.no_grad():
        out = model(input_ids=ids)
    assert torch.isfinite(out.logits.float()).all()


def test_real_qwen3_vl_4b_architecture_on_meta(shared_dir: Any) -> None:
    """The real config (no weights): 4.44B parameters; under LoRA the new token rows train through
    one tied-embedding delta of 7 x 2560 values (not full matrix copies); checkpointing reaches all
    36 decoder layers."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from lightning_modules import training

    raw = json.loads((shared_dir / "reference" / "qwen3-vl-4b-instruct.config.json").read_text())
    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(Qwen3VLConfig(**raw))
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.438e9, rel=1e-3)
    training.enable_activation_checkpointing(model)
    assert all(layer.gradient_checkpointing for layer in model.model.language_model.layers)
    rows = list(range(151669, 151669 + len(bb.TRAINED_TOKEN_ROWS)))  # VersusQ's ids after the hub vocabulary
    assert max(rows) < raw["text_config"]["vocab_size"]  # no resize: the new rows exist, untrained
    model.requires_grad_(True)
    model.model.visual.requires_grad_(False)
    peft_model = bb.apply_lora(model, {"rank": 4, "alpha": 8}, rows)
    extra = {n: p.numel() for n, p in peft_model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert list(extra.values()) == [len(rows) * 2560] and "embed_tokens" in next(iter(extra))
