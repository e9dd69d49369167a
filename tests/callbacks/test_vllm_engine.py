"""The vLLM rollout path on CPU with the tiny model and an engine stand-in that follows vLLM 0.33's
documented semantics (issue 9 items 5-8): stop by token id vs stop strings, logit-bias
suppression, the training tokenizer, dropped placeholder rollouts, importance-sampling correction.

The stand-in's methods, the ``SamplingParams`` and ``LLM`` keyword arguments, and the output objects
are checked against vLLM 0.33.0's API as recorded in ``vllm033_api.json`` (read from the wheel's
source with ``scripts/vllm_api_snapshot.py``; vLLM cannot be installed next to this environment)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import yaml
from transformers import AutoTokenizer

from callbacks import vllm_engine as ve
from callbacks.rollout import RolloutCallback
from lightning_modules import template as tpl
from lightning_modules.versusq import VersusQModule

API = json.loads(Path(__file__).with_name("vllm033_api.json").read_text())
VLLM_YAML = Path(__file__).resolve().parents[2] / "conf" / "gpu" / "vllm.yaml"


def check_call(method: str, args: tuple, kwargs: dict[str, Any]) -> None:
    """The call ``LLM.<method>(*args, **kwargs)`` binds to vLLM 0.33's signature."""
    params = API["LLM"][method]["params"]
    assert len(args) <= len(params) and set(kwargs) <= set(params), (method, args, kwargs)


def check_sampling_params(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``SamplingParams(**kwargs)`` would accept these keywords (vLLM 0.33 fields)."""
    assert set(kwargs) <= set(API["SamplingParams"]), set(kwargs) - set(API["SamplingParams"])
    return kwargs


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
        completion = {"token_ids": out, "text": text, "logprobs": [{t: SimpleNamespace(logprob=-1.0)} for t in out]}
        assert set(completion) <= set(API["CompletionOutput"]) and "logprob" in API["Logprob"]
        return SimpleNamespace(**completion)

    def generate(self, *args: Any, **kwargs: Any) -> list[Any]:
        check_call("generate", args, kwargs)
        prompts, params = args
        self.requests.append(params)
        return [
            SimpleNamespace(
                outputs=[
                    self._sample(self.scripts[(b * params["n"] + k) % len(self.scripts)], params)
                    for k in range(params["n"])
                ]
            )
            for b in range(len(prompts))
        ]

    def apply_model(self, *args: Any, **kwargs: Any) -> list[Any]:
        check_call("apply_model", args, kwargs)
        return [args[0](SimpleNamespace(load_weights=lambda ws: self.pushed.extend(n for n, _ in ws)))]

    def reset_prefix_cache(self, *args: Any, **kwargs: Any) -> None:
        check_call("reset_prefix_cache", args, kwargs)

    def sleep(self, *args: Any, **kwargs: Any) -> None:
        check_call("sleep", args, kwargs)

    def wake_up(self, *args: Any, **kwargs: Any) -> None:
        check_call("wake_up", args, kwargs)


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
    monkeypatch.setattr(ve, "make_sampling_params", check_sampling_params)
    module = VersusQModule(motion_frames=8, head_hidden=16, phase="mcgrpo", max_new_tokens=40, num_generations=2)
    llm = VLLMStandIn(module.model.tokenizer, _scripts(module, **standin))
    callback = RolloutCallback(engine="vllm", vllm={"llm": llm, "enable_sleep_mode": True})
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


def test_engine_built_per_rank_with_the_configured_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """conf/gpu/vllm.yaml's engine settings reach ``vllm.LLM`` as keywords vLLM 0.33 accepts; on
    rank 3 of 8 the engine uses the external launcher with this rank's environment and seed."""
    built: list[dict[str, Any]] = []

    class LLM:  # what ``from vllm import LLM`` returns here
        def __init__(self, **kwargs: Any) -> None:
            built.append(kwargs)

        def sleep(self, *args: Any, **kwargs: Any) -> None:
            check_call("sleep", args, kwargs)

    monkeypatch.setitem(sys.modules, "vllm", SimpleNamespace(LLM=LLM))
    monkeypatch.setattr(ve, "_VLLM_AVAILABLE", True)
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "VLLM_ENABLE_V1_MULTIPROCESSING"):
        # setenv first, so the undo removes what the engine writes: delenv of an absent key records
        # nothing, and RANK=3 then leaked into later tests (a run.py subprocess ran as rank 3)
        monkeypatch.setenv(key, "unset")
        monkeypatch.delenv(key)
    callback_args = next(c["init_args"] for c in yaml.safe_load(VLLM_YAML.read_text())["trainer"]["callbacks+"])
    callback = RolloutCallback(**{**callback_args, "vllm": {**callback_args["vllm"], "export_dir": str(tmp_path)}})
    module = VersusQModule(motion_frames=8, head_hidden=16, phase="mcgrpo")
    callback.setup(SimpleNamespace(world_size=8, global_rank=3, local_rank=3), module, "fit")  # type: ignore[arg-type]
    callback._build()._engine(module.model)
    kwargs = built[0]
    assert set(kwargs) <= set(API["LLM"]["__init__"]["params"]) | set(API["EngineArgs"]), kwargs
    assert kwargs["distributed_executor_backend"] == "external_launcher" and kwargs["seed"] == 3
    assert kwargs["gpu_memory_utilization"] == callback_args["vllm"]["gpu_memory_utilization"]
    assert kwargs["enforce_eager"] is True and kwargs["tokenizer"] == str(tmp_path)
    assert (os.environ["RANK"], os.environ["LOCAL_RANK"], os.environ["WORLD_SIZE"]) == ("3", "3", "8")
