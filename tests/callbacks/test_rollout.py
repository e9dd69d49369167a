"""Tests for callbacks/rollout.py and callbacks/vllm_engine.py (no GPU, no vLLM needed)."""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from callbacks import rollout as ro
from callbacks import vllm_engine as ve
from callbacks import vllm_weights as vw

VOCAB = ["<pad>", "<think>", "</think>", "<answer>", "c", "a", "b", "<eos>"]
PAD, ANSWER, EOS = 0, 3, 7


class FakeTokenizer:
    pad_token_id = PAD
    eos_token_id = EOS

    def __call__(self, text: str, add_special_tokens: bool = False) -> SimpleNamespace:
        return SimpleNamespace(input_ids=[VOCAB.index(text)])

    def decode(self, tokens: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(VOCAB[t] for t in tokens)


class FakePolicy(nn.Module):
    """Implements the rollout engines' model protocol with a bigram LM over VOCAB."""

    device = torch.device("cpu")
    never_generate: list[int] = [4]  # "c" plays a placeholder token

    def __init__(self, script: list[list[int]]) -> None:
        super().__init__()
        self.tokenizer = FakeTokenizer()
        self.table = nn.Parameter(torch.randn(len(VOCAB), len(VOCAB)))
        self.script = script  # responses "sampled" by generate_responses (deterministic)
        self.calls: dict[str, Any] = {}

    def build_prompt_inputs(self, batch: Any) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.full((len(batch), 1), 1)}

    def generate_responses(self, inputs: dict, num_return_sequences: int, **sampling: Any) -> torch.Tensor:
        self.calls = {"n": num_return_sequences, **sampling}
        width = max(map(len, self.script))
        return torch.tensor([row + [PAD] * (width - len(row)) for row in self.script])

    def response_logprobs(self, inputs: dict, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        prev = torch.cat([torch.ones(ids.shape[0], 1, dtype=torch.long), ids[:, :-1]], dim=1)
        return self.table[prev].log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)

    def end_token_ids(self) -> list[int]:
        return [ANSWER, EOS]


def _lightning_module(policy: FakePolicy, num_generations: int, max_new_tokens: int) -> SimpleNamespace:
    """What RolloutCallback reads of the LightningModule: the model and its G / token budget."""
    hparams = SimpleNamespace(num_generations=num_generations, max_new_tokens=max_new_tokens)
    return SimpleNamespace(model=policy, hparams=hparams, _trainer=None)


# ---------------------------------------------------------------------------- engine option
def test_engine_validation_lists_allowed_values() -> None:
    with pytest.raises(ValueError, match=r"\['hf', 'vllm'\]"):
        ro.RolloutCallback(engine="sglang")  # type: ignore[arg-type]


def test_missing_vllm_error_names_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ve, "_VLLM_AVAILABLE", False)
    with pytest.raises(ImportError, match=r"pip install 'versusq\[vllm\]'"):
        ro.RolloutCallback(engine="vllm")
    with pytest.raises(ImportError, match=r"pip install 'vllm==0.33.\*'"):
        ve.VLLMRollout()


# ---------------------------------------------------------------------------- HF engine
def test_hf_rollout_shapes_mask_logprobs_texts() -> None:
    script = [[1, 5, 2, 3, 4], [1, 6, 7], [1, 5, 5, 2, 3, 4], [5, 5]]
    policy = FakePolicy(script)
    module = _lightning_module(policy, num_generations=2, max_new_tokens=9)
    cb = ro.RolloutCallback(engine="hf", temperature=0.7)
    cb.setup(SimpleNamespace(global_step=0), module, "fit")  # type: ignore[arg-type]
    assert module.rollout is cb
    out = cb.generate(module, batch=[0, 1])
    assert policy.calls["n"] == 2 and policy.calls["do_sample"] is True  # G from the module
    assert policy.calls["max_new_tokens"] == 9 and policy.calls["temperature"] == 0.7
    assert out.response_ids.shape == (4, 6) and len(out) == 4
    assert out.response_mask.sum(1).tolist() == [4, 3, 5, 2]  # ends at <answer> / <eos> / padding
    assert out.texts == [
        "<think>a</think><answer>",
        "<think>b<eos>",
        "<think>aa</think><answer>",
        "aa",
    ]
    assert out.prompt_index.tolist() == [0, 0, 1, 1] and out.group_size == 2
    expected = policy.response_logprobs({}, out.response_ids, out.response_mask)
    assert torch.allclose(out.old_logprobs, expected * out.response_mask)
    assert not out.old_logprobs.requires_grad
    assert (out.old_logprobs[~out.response_mask] == 0).all() and out.tokens_per_s > 0


# ---------------------------------------------------------------------------- vLLM pure parts
def test_vllm_requests_and_sampling() -> None:
    embeds = [torch.randn(5, 8, requires_grad=True), torch.randn(7, 8)]
    prompts = ve.build_vllm_requests(embeds)
    assert [p["prompt_embeds"].shape[0] for p in prompts] == [5, 7]
    assert not prompts[0]["prompt_embeds"].requires_grad
    kw = ve.sampling_kwargs(4, 64, end_ids=[ANSWER, EOS], never_ids=[6], temperature=0.9, top_p=0.95)
    assert kw == {
        "n": 4,
        "temperature": 0.9,
        "top_p": 0.95,
        "top_k": 0,
        "max_tokens": 64,
        "stop_token_ids": [ANSWER, EOS],
        "logit_bias": {6: float("-inf")},
        "logprobs": 0,
        "detokenize": False,
    }


def _completion(tokens: list[int], lps: list[float]) -> SimpleNamespace:
    logprobs = [{t: SimpleNamespace(logprob=lp)} for t, lp in zip(tokens, lps)]
    return SimpleNamespace(token_ids=tokens, text="", logprobs=logprobs)


def test_parse_vllm_outputs_decodes_with_the_training_tokenizer() -> None:
    outputs = [
        SimpleNamespace(outputs=[_completion([1, 5, 2, 3], [-0.1, -0.2, -0.3, -0.4]), _completion([1], [-1.0])]),
        SimpleNamespace(outputs=[_completion([6, 6], [-0.5, -0.6]), _completion([5, 5, 5, 5], [-0.1] * 4)]),
    ]
    r = ve.parse_vllm_outputs(outputs, num_generations=2, tokenizer=FakeTokenizer(), elapsed_s=2.0)
    assert r.response_ids.tolist()[1] == [1, PAD, PAD, PAD]
    assert r.response_mask.sum(1).tolist() == [4, 1, 2, 4]
    assert r.old_logprobs[0].tolist() == pytest.approx([-0.1, -0.2, -0.3, -0.4])
    assert r.old_logprobs[1, 1:].abs().sum() == 0
    assert r.texts == ["<think>a</think><answer>", "<think>", "bb", "aaaa"]  # not vLLM's (empty) text
    assert r.prompt_index.tolist() == [0, 0, 1, 1] and r.tokens_per_s == pytest.approx(11 / 2.0)
    with pytest.raises(ValueError, match="num_generations=3"):
        ve.parse_vllm_outputs(outputs, num_generations=3, tokenizer=FakeTokenizer(), elapsed_s=1.0)


def test_engine_per_rank_with_the_exported_folder() -> None:
    single = ve.engine_kwargs(Path("/e"), world_size=1, global_rank=0, seed=7, gpu_memory_utilization=0.2)
    assert "distributed_executor_backend" not in single and single["seed"] == 7
    assert single["model"] == single["tokenizer"] == "/e" and single["enable_prompt_embeds"]
    multi = ve.engine_kwargs(Path("/e"), world_size=8, global_rank=5, seed=7)
    assert multi["distributed_executor_backend"] == "external_launcher" and multi["seed"] == 12
    assert ve.distributed_env(8, 5, 1)["RANK"] == "5"


# ---------------------------------------------------------------------------- weight sync
class FakeLLM:
    """Counts weight pushes the way ``LLM.apply_model(fn)`` would run them."""

    def __init__(self) -> None:
        self.hosted = SimpleNamespace(load_calls=[], load_weights=self._load)
        self.events: list[str] = []

    def _load(self, weights: list[tuple[str, torch.Tensor]]) -> None:
        self.hosted.load_calls.append([name for name, _ in weights])

    def apply_model(self, fn: Any) -> list[Any]:
        return [fn(self.hosted)]

    def reset_prefix_cache(self) -> None:
        self.events.append("reset")

    def wake_up(self) -> None:
        self.events.append("wake")

    def sleep(self, level: int = 1) -> None:
        self.events.append("sleep")


def test_sync_only_when_global_step_changed() -> None:
    llm = FakeLLM()
    engine = ve.VLLMRollout(llm=llm, enable_sleep_mode=False)
    vlm = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    vlm[0].requires_grad_(False)  # a frozen tower
    policy = SimpleNamespace(vlm=vlm)
    pushed = [engine.maybe_sync(policy, step) for step in (0, 0, 0, 1, 1, 2)]
    assert pushed == [True, False, False, True, False, True]
    calls = llm.hosted.load_calls
    assert len(calls) == 3 and engine.num_pushes == 3
    assert calls[0] == ["0.weight", "0.bias", "1.weight", "1.bias"]  # first push: everything
    assert calls[1] == ["1.weight", "1.bias"]  # later: trainable only
    assert llm.events.count("reset") == 3


def test_policy_weights_merges_lora_out_of_place() -> None:
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base = nn.Sequential()
    base.add_module("proj", nn.Linear(4, 4))
    base.add_module("head", nn.Linear(4, 1))
    model = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["proj"], init_lora_weights=False))
    before = {n: p.clone() for n, p in model.named_parameters()}
    pushed = dict(vw.policy_weights(model, name_map={"proj.": "layers.0.proj."}))
    reference = copy.deepcopy(model).merge_and_unload().state_dict()
    assert set(pushed) == {"layers.0.proj.weight", "layers.0.proj.bias", "head.weight", "head.bias"}
    assert torch.allclose(pushed["layers.0.proj.weight"], reference["proj.weight"], atol=1e-6)
    assert not torch.allclose(pushed["layers.0.proj.weight"], base.proj.base_layer.weight)
    for n, p in model.named_parameters():  # training weights untouched
        assert torch.equal(p, before[n])


def test_hf_rollouts_sample_the_full_distribution(make_pair_batch: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Old log-probs assume the full distribution: no checkpoint top-k/top-p/temperature sneaks in."""
    import transformers.generation.utils as gen

    from lightning_modules.versusq import VersusQModule

    module = VersusQModule(motion_frames=8, head_hidden=16, max_new_tokens=4)
    config = module.model.vlm.generation_config
    config.top_k, config.top_p, config.temperature = 20, 0.8, 0.7  # Qwen3-VL-Instruct's generation_config
    made: list[str] = []
    for name in ("TopKLogitsWarper", "TopPLogitsWarper", "TemperatureLogitsWarper"):
        real = getattr(gen, name)
        monkeypatch.setattr(gen, name, lambda *a, _n=name, _r=real, **k: made.append(_n) or _r(*a, **k))
    r = ro.HFRollout(temperature=1.0, top_p=1.0).generate(module.model, make_pair_batch([(0, 1)]), 2, 4)
    assert len(r) == 2 and made == []
    ro.HFRollout(temperature=0.5, top_p=0.9).generate(module.model, make_pair_batch([(0, 1)]), 2, 4)
    assert made == ["TemperatureLogitsWarper", "TopPLogitsWarper"]  # what was asked, and no top-k
