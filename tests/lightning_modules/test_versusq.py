"""VersusQModule (tiny): prompt/<reg>/loss masks, one SFT step, predict_margin, caching, CLI smoke."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from datamodules.video import Clip
from lightning_modules import backbone as bb
from lightning_modules.versusq import VersusQModule

MOTION_FRAMES = 8


def make_clip(i: int, size: int = 64) -> Clip:
    g = torch.Generator().manual_seed(i)
    return Clip(
        path=f"clip{i}.mp4", key=f"key{i}",
        frames=torch.randint(0, 255, (8, 3, size, size), dtype=torch.uint8, generator=g),
        motion=torch.randint(0, 255, (MOTION_FRAMES, 3, 32, 32), dtype=torch.uint8, generator=g),
        fps=16.0, frame_count=32, duration=2.0, width=size, height=size, rotation=0, padded=False,
        backend="test",
    )


def pair_batch(pairs: list[tuple[int, int]], rationale: bool = True) -> SimpleNamespace:
    return SimpleNamespace(
        clips_a=[make_clip(i) for i, _ in pairs], clips_b=[make_clip(j) for _, j in pairs],
        margin=torch.tensor([0.1 * (i - j) for i, j in pairs]),
        rationale=[f"Video A has mild blur {i}." for i, _ in pairs] if rationale else None,
        benchmark=["syn"] * len(pairs), index_a=torch.tensor([i for i, _ in pairs]),
        index_b=torch.tensor([j for _, j in pairs]),
    )


@pytest.fixture(scope="module")
def module() -> VersusQModule:
    return VersusQModule(motion_frames=MOTION_FRAMES, head_hidden=32, max_new_tokens=8)


def test_prompt_holds_both_videos_and_motion(module: VersusQModule) -> None:
    inputs = module.build_prompt_inputs(pair_batch([(0, 1)]))
    ids = inputs.prompt_ids[0]
    tid = module.parts.token_ids
    assert int((ids == tid[bb.MOTION_PAD]).sum()) == 2 * MOTION_FRAMES
    n_video = sum(int(f.embeds.shape[0]) for f in inputs.vision)
    assert int((ids == tid["<|video_pad|>"]).sum()) == n_video
    text = module.tokenizer.decode(ids)
    assert text.index("Video A:") < text.index("Video B:") and text.endswith("<|im_start|>assistant\n")


def test_reg_position_and_loss_mask(module: VersusQModule, monkeypatch: pytest.MonkeyPatch) -> None:
    batch = pair_batch([(0, 1), (2, 3)])
    batch.rationale = ["A is sharper.", "Both videos are about the same in quality here."]
    target, rationales = module._targets(batch)
    ids, mask = module._sft_tokens(target, rationales)
    tok = module.tokenizer
    for row, m, r in zip(ids, mask, rationales):
        labelled = tok.convert_ids_to_tokens(row[m].tolist())
        assert labelled[0] == bb.THINK and labelled[-2:] == [bb.THINK_END, bb.ANSWER]  # up to <answer>
        assert bb.REG not in labelled and tok.decode(row[m][1:-2].tolist()) == r
    seen = {}
    real_forward = module.model.forward

    def spy(**kwargs):
        seen.update(kwargs)
        return real_forward(**kwargs)

    monkeypatch.setattr(module.model, "forward", spy)
    inputs = module.build_prompt_inputs(batch)
    logp, _ = module.forward_responses(inputs, ids, mask)
    monkeypatch.undo()
    rows = seen["input_ids"]
    assert (rows[:, -1] == module.parts.token_ids[bb.REG]).all()  # <reg> is the last position
    with torch.no_grad(), module.injector.use(module.motion_projector(inputs.motion)):
        full = module.model(**{k: v for k, v in seen.items() if k != "logits_to_keep"}).logits
    full = torch.log_softmax(full.float(), -1)
    for n in range(2):  # logprobs align with the response tokens, token by token
        length = int(mask[n].sum())
        cols = torch.arange(rows.shape[1] - 1 - length, rows.shape[1] - 1)
        expected = full[n, cols - 1].gather(1, rows[n, cols][:, None]).squeeze(1)
        assert torch.allclose(logp[n, :length], expected, atol=1e-4)
        assert (logp[n, length:] == 0).all()


def test_motion_tokens_reach_the_llm(module: VersusQModule) -> None:
    inputs = module.build_prompt_inputs(pair_batch([(0, 1)]))
    ids = torch.tensor([[module.parts.token_ids[bb.THINK]]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    with torch.no_grad():
        _, h1 = module.forward_responses(inputs, ids, mask)
        inputs.motion = torch.randn_like(inputs.motion)  # (LayerNorm in g_theta ignores shifts)
        _, h2 = module.forward_responses(inputs, ids, mask)
    assert not torch.allclose(h1, h2)


def test_one_step_updates_trainable_parts_only() -> None:
    m = VersusQModule(motion_frames=MOTION_FRAMES, head_hidden=32, seed=1)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt = torch.optim.AdamW(m._param_groups(), weight_decay=0.0)
    loss = m.sft_loss(pair_batch([(0, 1), (2, 3)]))["loss"]
    loss.backward()
    opt.step()
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("motion_projector.") for n in changed)
    assert any(n.startswith("head.") for n in changed)
    assert any("language_model" in n for n in changed)
    assert not any(n.startswith("motion_encoder.") or ".visual." in n for n in changed)


def test_predict_margin_caches_encoders_and_counts_failures(module: VersusQModule) -> None:
    batch = pair_batch([(10, 11), (12, 10)])
    calls0, fails0 = module.encoder_calls, module.parse_failures
    margins, rationales = module.predict_margin(batch)
    assert margins.shape == (2,) and len(rationales) == 2
    assert module.encoder_calls["vision"] - calls0["vision"] == 3  # clip 10 appears twice
    assert module.encoder_calls["motion"] - calls0["motion"] == 3
    # the untrained model does not reach <answer> in 8 tokens: NaN, counted, never invented
    bad = torch.isnan(margins)
    assert module.parse_failures - fails0 == int(bad.sum())
    after = module.encoder_calls
    module.predict_margin(batch)
    assert module.encoder_calls == after  # second call on the same clips: 0 encoder calls


def test_head_margin_when_format_is_valid(module: VersusQModule, monkeypatch: pytest.MonkeyPatch) -> None:
    answer = module.parts.token_ids[bb.ANSWER]
    think, think_end = module.parts.token_ids[bb.THINK], module.parts.token_ids[bb.THINK_END]
    fixed = torch.tensor([[think, 50, think_end, answer, 0], [think, 51, 52, think_end, answer]])
    monkeypatch.setattr(module, "generate_responses", lambda inputs, k=1, **kw: fixed)
    margins, rationales = module.predict_margin(pair_batch([(0, 1), (2, 3)]))
    assert torch.isfinite(margins).all() and len(rationales) == 2


def test_reg_is_never_generated(module: VersusQModule) -> None:
    never = module.parts.never_generate
    handle = module.model.lm_head.register_forward_hook(
        lambda mod, args, out: out.index_add(-1, torch.tensor(never), torch.full((*out.shape[:-1], len(never)), 1e4))
    )
    try:
        inputs = module.build_prompt_inputs(pair_batch([(0, 1)]))
        ids = module.generate_responses(inputs, 2, do_sample=True, temperature=1.0, max_new_tokens=6)
    finally:
        handle.remove()
    assert ids.shape[0] == 2
    assert not torch.isin(ids, torch.tensor(never)).any()


def test_predict_score_skips_missing_clips(module: VersusQModule) -> None:
    batch = SimpleNamespace(clips=[make_clip(20), None], mos=torch.tensor([3.0, math.nan]))
    scores, texts = module.predict_score(batch)
    assert scores.shape == (2,) and math.isnan(scores[1]) and texts[1] == ""
    assert module.encode_videos(batch) == 0  # already cached by predict_score


def test_checkpoint_id_and_bad_options(module: VersusQModule) -> None:
    assert module.checkpoint_id == "init:tiny:0"
    with pytest.raises(ValueError, match="allowed"):
        VersusQModule(readout="digits")
    with pytest.raises(ValueError, match="motion_frames"):
        VersusQModule(motion_frames=4).build_prompt_inputs(pair_batch([(0, 1)]))


@pytest.mark.skipif(importlib.util.find_spec("datamodules.pairwise") is None, reason="datamodule not written yet")
def test_cli_fast_dev_run(tmp_path: Path) -> None:
    from datamodules.synthetic import generate_benchmark
    from run import main

    root = Path(__file__).resolve().parents[2]
    data = tmp_path / "synthetic"
    generate_benchmark(data, seed=0, size="tiny", workers=1)
    labels = data / "labels.csv"
    overrides = [  # a list-valued option is replaced whole (jsonargparse has no per-index override)
        f'--data.init_args.{key}=[{{"name": "syn_{split}", "label_file": "{labels}", '
        f'"video_root": "{data}", "split": "{split}"}}]'
        for key, split in (("train_sets", "train"), ("val_sets", "test"), ("test_sets", "ood_content"))]
    cli = main(["fit", "--config", str(root / "conf/base.yaml"), "--config", str(root / "conf/sft.yaml"),
                "--config", str(root / "conf/tiny.yaml"), "--trainer.fast_dev_run=true",
                f"--trainer.default_root_dir={tmp_path}", *overrides])
    assert cli.trainer.global_step == 1
    assert math.isfinite(float(cli.trainer.callback_metrics["train/loss"]))
