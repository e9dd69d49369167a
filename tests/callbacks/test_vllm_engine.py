"""The vLLM rollout path on CPU with the tiny model and an engine stand-in that follows vLLM 0.33's
documented semantics (issue 9 items 5-8): stop by token id vs stop strings, logit-bias
suppression, the training tokenizer, dropped placeholder rollouts, importance-sampling correction."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from callbacks import vllm_engine as ve
from callbacks.rollout import RolloutCallback
from lightning_modules import template as tpl
from lightning_modules.versusq import VersusQModule


class VLLMStandIn:
    """Samples scripted token streams the way vLLM 0.33 would finish them.

    Stop strings are matched on text decoded with special tokens skipped (so ``"<answer>"``, a
    special token, never matches); ``stop_token_ids`` and the EOS id stop after the token; a
    ``logit_bias`` of -inf replaces the token (unless ``ignore_bias``: a placeholder slips through).
    Log-probs: -1 per sampled token.
    """

    def __init__(self, tokenizer: Any, scripts: list[list[int]], ignore_bias: bool = False) -> None:
        self.tokenizer, self.scripts, self.ignore_bias = tokenizer, scripts, ignore_bias
        self.requests: list[dict[str, Any]] = []
        self.pushed: list[str] = []

    def _sample(self, script: list[int], params: dict[str, Any]) -> SimpleNamespace:
        out: list[int] = []
        stops = set(params.get("stop_token_ids") or []) | {self.tokenizer.convert_tokens_to_ids("<|im_end|>")}
        for token in script[: params["max_tokens"]]:
            if not self.ignore_bias and params.get("logit_bias", {}).get(token) == float("-inf"):
                token = self.tokenizer(" x", add_special_tokens=False).input_ids[0]
            out.append(token)
            text = self.tokenizer.decode(out, skip_special_tokens=True)
            if token in stops or any(s in text for s in params.get("stop") or []):
                break
        return SimpleNamespace(token_ids=out, text=text, logprobs=[{t: SimpleNamespace(logprob=-1.0)} for t in out])

    def generate(self, prompts: list[dict], params: dict[str, Any], use_tqdm: bool = False) -> list[Any]:
        self.requests.append(params)
        return [SimpleNamespace(outputs=[self._sample(self.scripts[(b * params["n"] + k) % len(self.scripts)], params)
                                         for k in range(params["n"])]) for b in range(len(prompts))]

    def apply_model(self, fn: Any) -> list[Any]:
        return [fn(SimpleNamespace(load_weights=lambda ws: self.pushed.extend(n for n, _ in ws)))]

    def reset_prefix_cache(self) -> None: ...

    def sleep(self, level: int = 1) -> None: ...

    def wake_up(self) -> None: ...


def _scripts(module: VersusQModule, placeholder_at: int | None = None) -> list[list[int]]:
    """Rationale, ``</think><answer>``, then text the model would go on writing, then ``<|im_end|>``."""
    tok = module.model.tokenizer
    ids = module.model.token_ids
    body = tok(" A is sharper than B.", add_special_tokens=False).input_ids
    tail = tok(" extra words", add_special_tokens=False).input_ids
    script = [ids[tpl.THINK], *body, ids[tpl.THINK_END], ids[tpl.ANSWER], *tail, ids["<|im_end|>"]]
    scripts = [list(script) for _ in range(4)]
    if placeholder_at is not None:
        scripts[placeholder_at].insert(2, ids["<|video_pad|>"])
    return scripts


def _vllm_module(monkeypatch: pytest.MonkeyPatch, **standin: Any) -> tuple[VersusQModule, VLLMStandIn, dict]:
    monkeypatch.setattr(ve, "_VLLM_AVAILABLE", True)
    monkeypatch.setattr(ve, "make_sampling_params", lambda kwargs: kwargs)
    module = VersusQModule(motion_frames=8, head_hidden=16, phase="mcgrpo", max_new_tokens=40, num_generations=2)
    llm = VLLMStandIn(module.model.tokenizer, _scripts(module, **standin))
    callback = RolloutCallback(engine="vllm", vllm={"llm": llm, "enable_sleep_mode": False})
    callback.setup(SimpleNamespace(global_step=0, world_size=1, global_rank=0, local_rank=0), module, "fit")  # type: ignore[arg-type]
    logged: dict[str, Any] = {}
    module.log_dict = lambda metrics, **kw: logged.update(metrics)  # type: ignore[method-assign]
    return module, llm, logged


def test_rollouts_end_at_answer_and_are_corrected(monkeypatch: pytest.MonkeyPatch, make_pair_batch: Any) -> None:
    module, llm, logged = _vllm_module(monkeypatch)
    seen = []
    real = ve.VLLMRollout.generate
    monkeypatch.setattr(ve.VLLMRollout, "generate", lambda self, *a: seen.append(real(self, *a)) or seen[-1])
    loss = module.training_step(make_pair_batch([(0, 1), (2, 3)]), 0)
    assert torch.isfinite(loss)
    r = seen[0]
    answer = module.model.token_ids[tpl.ANSWER]
    ends = r.response_ids.gather(1, (r.response_mask.sum(1, keepdim=True) - 1))
    assert (ends == answer).all()  # stopped at <answer>, nothing after it
    assert all(t.endswith("</think><answer>") for t in r.texts) and logged["train/format_rate"] == 1.0
    assert llm.requests[0]["stop_token_ids"][0] == answer and "stop" not in llm.requests[0]
    assert set(llm.requests[0]["logit_bias"]) == set(module.model.never_generate)
    assert {"train/engine_gap_mean", "train/engine_weight_mean", "train/engine_truncated_frac"} <= set(logged)
    assert logged["train/engine_gap_mean"] > 0  # engine (-1 per token) vs trainer log-probs differ
    assert logged["train/dropped_rollouts"] == 0.0 and llm.pushed  # weights pushed before sampling


def test_placeholder_rollout_dropped_not_crashing(monkeypatch: pytest.MonkeyPatch, make_pair_batch: Any) -> None:
    module, llm, logged = _vllm_module(monkeypatch, placeholder_at=1)
    llm.ignore_bias = True  # a placeholder gets through the engine
    seen = []
    real = ve.VLLMRollout.generate
    monkeypatch.setattr(ve.VLLMRollout, "generate", lambda self, *a: seen.append(real(self, *a)) or seen[-1])
    loss = module.training_step(make_pair_batch([(0, 1), (2, 3)]), 0)
    assert torch.isfinite(loss) and logged["train/dropped_rollouts"] == 1.0
    r = seen[0]
    assert r.dropped.tolist() == [False, True, False, False] and r.response_mask[1].sum() == 0
    assert not torch.isin(r.response_ids[r.response_mask], torch.tensor(module.model.never_generate)).any()


def test_engine_folder_holds_the_training_tokenizer(tmp_path: Path) -> None:
    module = VersusQModule(motion_frames=8, head_hidden=16)
    folder = ve.export_engine_dir(module.model, tmp_path / "engine")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for token in (tpl.ANSWER, tpl.REG, tpl.MOTION_PAD, "<|im_end|>"):
        assert tokenizer.convert_tokens_to_ids(token) == module.model.token_ids[token], token
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["Qwen3VLForConditionalGeneration"]
    assert json.loads((folder / "generation_config.json").read_text())["eos_token_id"] == module.model.end_token_ids()
