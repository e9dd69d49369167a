"""VersusQModule / VersusQModel (tiny): prompts, <reg> and loss masks, one SFT step, inference,
caching, the comparison identity and the default callbacks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from callbacks.evaluation import ComparisonGraphEvaluation
from callbacks.rollout import RolloutCallback
from lightning_modules import objectives, training
from lightning_modules import template as tpl
from lightning_modules import versusq as vq
from lightning_modules.checkpoints import upgrade_state_dict
from lightning_modules.versusq import VersusQModule

MOTION_FRAMES = 8
RATIONALES = ["A is sharper.", "Both videos are about the same in quality here."]


@pytest.fixture(scope="module")
def module() -> VersusQModule:
    return VersusQModule(motion_frames=MOTION_FRAMES, head_hidden=32, max_new_tokens=8)


def test_prompt_holds_both_videos_and_motion(module: VersusQModule, make_pair_batch: Any) -> None:
    model = module.model
    inputs = model.build_prompt_inputs(make_pair_batch([(0, 1)]))
    ids = inputs.prompt_ids[0]
    assert int((ids == model.token_ids[tpl.MOTION_PAD]).sum()) == 2 * MOTION_FRAMES
    n_video = sum(int(f.embeds.shape[0]) for f in inputs.vision)
    assert int((ids == model.token_ids["<|video_pad|>"]).sum()) == n_video
    text = model.tokenizer.decode(ids)
    assert text.index("Video A:") < text.index("Video B:") and text.endswith("<|im_start|>assistant\n")


def test_reg_position_and_loss_mask(
    module: VersusQModule, make_pair_batch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = module.model
    batch = make_pair_batch([(0, 1), (2, 3)], rationales=RATIONALES)
    ids, mask = model.response_tokens([tpl.generated_text(r) for r in RATIONALES])
    tok = model.tokenizer
    for row, m, r in zip(ids, mask, RATIONALES):
        labelled = tok.convert_ids_to_tokens(row[m].tolist())
        assert labelled[0] == tpl.THINK and labelled[-2:] == [tpl.THINK_END, tpl.ANSWER]  # up to <answer>
        assert tpl.REG not in labelled and tok.decode(row[m][1:-2].tolist()) == r
    seen = {}
    real_forward = model.vlm.forward

    def spy(**kwargs: Any) -> Any:
        seen.update(kwargs)
        return real_forward(**kwargs)

    monkeypatch.setattr(model.vlm, "forward", spy)
    inputs = model.build_prompt_inputs(batch)
    logp, _ = model.forward_responses(inputs, ids, mask)
    monkeypatch.undo()
    rows = seen["input_ids"]
    assert (rows[:, -1] == model.token_ids[tpl.REG]).all()  # <reg> is the last position
    with torch.no_grad(), model.injector.use(model.motion_projector(inputs.motion)):
        full = model.vlm(**{k: v for k, v in seen.items() if k != "logits_to_keep"}).logits
    full = torch.log_softmax(full.float(), -1)
    for n in range(2):  # logprobs align with the response tokens, token by token
        length = int(mask[n].sum())
        cols = torch.arange(rows.shape[1] - 1 - length, rows.shape[1] - 1)
        expected = full[n, cols - 1].gather(1, rows[n, cols][:, None]).squeeze(1)
        assert torch.allclose(logp[n, :length], expected, atol=1e-4)
        assert (logp[n, length:] == 0).all()


def test_motion_tokens_reach_the_llm(module: VersusQModule, make_pair_batch: Any) -> None:
    model = module.model
    inputs = model.build_prompt_inputs(make_pair_batch([(0, 1)]))
    ids = torch.tensor([[model.token_ids[tpl.THINK]]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    with torch.no_grad():
        _, h1 = model.forward_responses(inputs, ids, mask)
        inputs.motion = torch.randn_like(inputs.motion)  # (LayerNorm in g_theta ignores shifts)
        _, h2 = model.forward_responses(inputs, ids, mask)
    assert not torch.allclose(h1, h2)


def test_sft_step_uses_the_tested_loss_and_updates_trainable_parts_only(
    make_pair_batch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = VersusQModule(motion_frames=MOTION_FRAMES, head_hidden=32, seed=1)
    calls = []
    real = objectives.sft_loss
    monkeypatch.setattr(objectives, "sft_loss", lambda *a, **k: calls.append(k) or real(*a, **k))
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt = torch.optim.AdamW(training.param_groups(m.model, m.hparams), weight_decay=0.0)
    out = m.sft_loss(make_pair_batch([(0, 1), (2, 3)], rationales=RATIONALES))
    assert len(calls) == 1 and out["loss"].item() == pytest.approx(out["ntp"] + 0.5 * out["reg_mse"])
    out["loss"].backward()
    opt.step()
    changed = {n for n, p in m.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("model.motion_projector.") for n in changed)
    assert any(n.startswith("model.head.") for n in changed)
    assert any("language_model" in n for n in changed)
    assert not any(n.startswith("model.motion_encoder.") or ".visual." in n for n in changed)


def test_predict_margin_caches_encoders_and_counts_forced(module: VersusQModule, make_pair_batch: Any) -> None:
    batch = make_pair_batch([(10, 11), (12, 10)])
    calls0, forced0 = module.model.encoder_calls, module.forced_closes
    margins, rationales, forced = module.predict_margin(batch)
    assert margins.shape == (2,) and len(rationales) == 2 and forced.dtype == torch.bool
    assert module.model.encoder_calls["vision"] - calls0["vision"] == 3  # clip 10 appears twice
    assert module.model.encoder_calls["motion"] - calls0["motion"] == 3
    # the untrained model does not reach <answer> in 8 tokens: closed, read, flagged and counted
    assert torch.isfinite(margins).all() and forced.all()
    assert module.forced_closes - forced0 == 2
    after = module.model.encoder_calls
    module.predict_margin(batch)
    assert module.model.encoder_calls == after  # second call on the same clips: 0 encoder calls


def test_validity_rule_decides_forced(
    module: VersusQModule, make_pair_batch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = module.model.token_ids
    think, think_end, answer, im_end = (ids[t] for t in (tpl.THINK, tpl.THINK_END, tpl.ANSWER, "<|im_end|>"))
    space = module.model.tokenizer(" ", add_special_tokens=False).input_ids[0]
    fixed = torch.tensor(
        [
            [think, 50, think_end, answer, 0],  # valid
            [think, space, think_end, answer, 0],  # blank rationale: invalid
            [think, 51, 52, think_end, im_end],
        ]
    )  # no <answer>: invalid
    monkeypatch.setattr(module.model, "generate_responses", lambda inputs, k=1, **kw: fixed)
    seen: list[torch.Tensor] = []
    forward = module.model.forward_responses

    def spy(inputs: Any, ids: torch.Tensor, mask: torch.Tensor) -> Any:
        seen.append(ids[mask.bool()].clone())
        return forward(inputs, ids, mask)

    monkeypatch.setattr(module.model, "forward_responses", spy)
    margins, rationales, forced = module.predict_margin(make_pair_batch([(0, 1), (2, 3), (4, 5)]))
    assert forced.tolist() == [False, True, True] and torch.isfinite(margins).all()
    assert rationales[0] != "" and len(rationales) == 3
    # the head reads each response closed: row 3 lost <|im_end|> and gained <answer>
    kept = seen[0].tolist()
    assert kept.count(answer) == 3 and im_end not in kept


def test_ntp_readout_without_number_is_nan_not_forced(
    module: VersusQModule, make_pair_batch: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = module.model.token_ids
    think, think_end, answer, answer_end = (ids[t] for t in (tpl.THINK, tpl.THINK_END, tpl.ANSWER, tpl.ANSWER_END))
    digit = module.model.tokenizer("2", add_special_tokens=False).input_ids
    fixed = torch.tensor(
        [
            [think, 50, think_end, answer, *digit, answer_end],
            [think, 50, think_end, answer, 51, answer_end][: 4 + len(digit) + 1],
        ]
    )
    monkeypatch.setattr(module.model, "generate_responses", lambda inputs, k=1, **kw: fixed)
    monkeypatch.setattr(module.model, "readout", "ntp")
    fails0 = module.parse_failures
    margins, _, forced = module.predict_margin(make_pair_batch([(0, 1), (2, 3)]))
    assert margins[0].item() == 2.0 and math.isnan(margins[1]) and not forced.any()
    assert module.parse_failures - fails0 == 1


def test_placeholders_are_never_generated(module: VersusQModule, make_pair_batch: Any) -> None:
    model = module.model
    never = model.parts.never_generate
    assert len(never) == 8  # <reg>, 3 motion tokens, video/image pads, vision start/end
    boost = torch.tensor(never)
    handle = model.vlm.lm_head.register_forward_hook(
        lambda mod, args, out: out.index_add(-1, boost, torch.full((*out.shape[:-1], len(never)), 1e4))
    )
    try:
        inputs = model.build_prompt_inputs(make_pair_batch([(0, 1)]))
        ids = model.generate_responses(inputs, 2, do_sample=True, temperature=1.0, max_new_tokens=6)
    finally:
        handle.remove()
    assert ids.shape[0] == 2 and not torch.isin(ids, boost).any()


def test_predict_score_skips_missing_clips(module: VersusQModule, make_video_batch: Any) -> None:
    batch = make_video_batch([20, None], mos=[3.0, math.nan])
    scores, texts, forced = module.predict_score(batch)
    assert scores.shape == (2,) and math.isnan(scores[1]) and texts[1] == "" and not forced[1]
    assert module.encode_videos(batch) == 0  # already cached by predict_score


def test_checkpoint_id_and_bad_options(module: VersusQModule, make_pair_batch: Any) -> None:
    assert module.checkpoint_id == "init:tiny:0"
    with pytest.raises(ValueError, match="allowed"):
        VersusQModule(readout="digits")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="motion_frames"):
        VersusQModule(motion_frames=4).model.build_prompt_inputs(make_pair_batch([(0, 1)]))


# ---------------------------------------------------------------------------- identity
def test_comparison_identity_tracks_weights_and_settings(
    module: VersusQModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = module.comparison_identity()
    json.dumps(first)  # journal headers store it
    assert first["template_version"] == tpl.TEMPLATE_VERSION and first["backbone"] == "tiny"
    hashed = []
    monkeypatch.setattr(vq, "weights_digest", lambda named: hashed.append(1) or "x" * 32)
    assert module.comparison_identity() == first and not hashed  # cached: nothing re-hashed
    monkeypatch.undo()
    for name, tensor in [
        ("head", module.model.head.net[1].weight),
        ("llm", module.model.vlm.model.language_model.layers[0].mlp.up_proj.weight),
        ("buffer", next(b for b in module.buffers() if b.is_floating_point())),
    ]:
        with torch.no_grad():
            tensor[0].add_(1e-3)
        changed = module.comparison_identity()
        assert changed["weights"] != first["weights"], name
        with torch.no_grad():
            tensor[0].sub_(1e-3)
    for key, value in [
        ("max_new_tokens", 9),
        ("temperature", 0.7),
        ("readout", "ntp"),
        ("target", "pointwise"),
        ("reasoning", False),
        ("backbone", "other"),
    ]:
        old = module.hparams[key]
        module.hparams[key] = value
        try:
            assert module.comparison_identity() != first, key
        finally:
            module.hparams[key] = old


def test_same_checkpoint_twice_same_identity(tmp_path: Path) -> None:
    trained = VersusQModule(motion_frames=MOTION_FRAMES, head_hidden=32, seed=3)
    file = tmp_path / "w.ckpt"
    torch.save({"state_dict": trained.state_dict()}, file)
    a = VersusQModule(motion_frames=MOTION_FRAMES, head_hidden=32, init_from=str(file))
    b = VersusQModule(motion_frames=MOTION_FRAMES, head_hidden=32, init_from=str(file))
    fresh = VersusQModule(motion_frames=MOTION_FRAMES, head_hidden=32)
    assert a.comparison_identity() == b.comparison_identity() == trained.comparison_identity()
    assert a.comparison_identity()["weights"] != fresh.comparison_identity()["weights"]


def test_pre_split_checkpoints_still_load(tmp_path: Path) -> None:
    trained = VersusQModule(motion_frames=MOTION_FRAMES, head_hidden=32, seed=3)
    # before the split: the VLM was `model.*`, the other parts top-level (`head.*`, ...)
    legacy = {
        ("model." + k[len("model.vlm.") :]) if k.startswith("model.vlm.") else k[len("model.") :]: v
        for k, v in trained.state_dict().items()
    }
    assert (
        any(k.startswith("head.") for k in legacy) and upgrade_state_dict(legacy).keys() == trained.state_dict().keys()
    )
    torch.save({"state_dict": legacy}, tmp_path / "old.ckpt")
    loaded = VersusQModule(motion_frames=MOTION_FRAMES, head_hidden=32, init_from=str(tmp_path / "old.ckpt"))
    assert loaded.comparison_identity()["weights"] == trained.comparison_identity()["weights"]


# ---------------------------------------------------------------------------- default callbacks
@pytest.mark.parametrize(
    ("stage", "phase", "configured", "expected"),
    [
        ("test", "sft", [], [ComparisonGraphEvaluation]),
        ("predict", "sft", [], [ComparisonGraphEvaluation]),
        ("test", "sft", [ComparisonGraphEvaluation()], []),  # configured in YAML: kept, not replaced
        ("fit", "sft", [], []),
        ("fit", "mcgrpo", [], [RolloutCallback]),
        ("fit", "mcgrpo", [RolloutCallback(engine="hf")], []),
    ],
)
def test_default_callbacks(module: VersusQModule, stage: str, phase: str, configured: list, expected: list) -> None:
    old_phase = module.hparams.phase
    module.hparams.phase = phase
    module._trainer = SimpleNamespace(callbacks=configured, state=SimpleNamespace(fn=stage))  # type: ignore[assignment]
    try:
        assert [type(c) for c in module.configure_callbacks()] == expected
    finally:
        module._trainer = None
        module.hparams.phase = old_phase
