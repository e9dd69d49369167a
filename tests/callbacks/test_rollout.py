"""Tests for callbacks/rollout.py and callbacks/vllm_engine.py (no GPU, no vLLM needed)."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from callbacks import rollout as ro
from callbacks import vllm_engine as ve

VOCAB = ["<pad>", "<think>", "</think>", "<answer>", "c", "a", "b", "<eos>"]
PAD, ANSWER, EOS = 0, 3, 7


class FakeTokenizer:
    pad_token_id = PAD
    eos_token_id = EOS

    def decode(self, tokens: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(VOCAB[t] for t in tokens)


class FakePolicy(nn.Module):
    """Implements the rollout engines' model protocol with a bigram LM over VOCAB."""

    device = torch.device("cpu")

    def __init__(self, script: list[list[int]]) -> None:
        super().__init__()
        self.tokenizer = FakeTokenizer()
        self.table = nn.Parameter(torch.randn(len(VOCAB), len(VOCAB)))
        self.script = script  # responses "sampled" by generate_responses (deterministic)
        self.calls: dict[str, Any] = {}

    def build_prompt_inputs(self, batch: Any) -> dict[str, torch.Tensor]:
        return {"input_ids": torch.full((len(batch), 1), 1)}

    def generate_responses(
        self, inputs: dict, num_return_sequences: int, **sampling: Any
    ) -> torch.Tensor:
        self.calls = {"n": num_return_sequences, **sampling}
        width = max(map(len, self.script))
        return torch.tensor([row + [PAD] * (width - len(row)) for row in self.script])

    def response_logprobs(
        self, inputs: dict, ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
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
    with pytest.raises(ImportError, match="pip install vllm"):
        ve.VLLMRollout(model="Qwen/Qwen3-VL-4B-Instruct")


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
def test_build_vllm_requests() -> None:
    embeds = [torch.randn(5, 8, requires_grad=True), torch.randn(7, 8)]
    prompts, kw = ve.build_vllm_requests(embeds, 4, temperature=0.9, top_p=0.95, max_new_tokens=64)
    assert [p["prompt_embeds"].shape[0] for p in prompts] == [5, 7]
    assert not prompts[0]["prompt_embeds"].requires_grad
    assert kw == {
        "n": 4,
        "temperature": 0.9,
        "top_p": 0.95,
        "max_tokens": 64,
        "stop": ["<answer>"],
        "include_stop_str_in_output": True,
        "logprobs": 0,
    }


def _completion(tokens: list[int], text: str, lps: list[float]) -> SimpleNamespace:
    logprobs = [{t: SimpleNamespace(logprob=lp)} for t, lp in zip(tokens, lps)]
    return SimpleNamespace(token_ids=tokens, text=text, logprobs=logprobs)


def test_parse_vllm_outputs() -> None:
    outputs = [
        SimpleNamespace(
            outputs=[_completion([1, 5, 2], "x", [-0.1, -0.2, -0.3]), _completion([1], "y", [-1.0])]
        ),
        SimpleNamespace(
            outputs=[
                _completion([6, 6], "z", [-0.5, -0.6]),
                _completion([5, 5, 5, 5], "w", [-0.1] * 4),
            ]
        ),
    ]
    r = ve.parse_vllm_outputs(outputs, num_generations=2, pad_id=PAD, elapsed_s=2.0)
    assert r.response_ids.tolist()[1] == [1, PAD, PAD, PAD]
    assert r.response_mask.sum(1).tolist() == [3, 1, 2, 4]
    assert r.old_logprobs[0, :3].tolist() == pytest.approx([-0.1, -0.2, -0.3])
    assert r.old_logprobs[1, 1:].abs().sum() == 0
    assert r.texts == ["x", "y", "z", "w"] and r.prompt_index.tolist() == [0, 0, 1, 1]
    assert r.tokens_per_s == pytest.approx(10 / 2.0)
    with pytest.raises(ValueError, match="num_generations=3"):
        ve.parse_vllm_outputs(outputs, num_generations=3, pad_id=PAD, elapsed_s=1.0)


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
    policy = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    policy[0].requires_grad_(False)  # a frozen tower
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
    model = peft.get_peft_model(
        base, peft.LoraConfig(r=2, target_modules=["proj"], init_lora_weights=False)
    )
    before = {n: p.clone() for n, p in model.named_parameters()}
    pushed = dict(ve.policy_weights(model, name_map={"proj.": "layers.0.proj."}))
    reference = copy.deepcopy(model).merge_and_unload().state_dict()
    assert set(pushed) == {"layers.0.proj.weight", "layers.0.proj.bias", "head.weight", "head.bias"}
    assert torch.allclose(pushed["layers.0.proj.weight"], reference["proj.weight"], atol=1e-6)
    assert not torch.allclose(pushed["layers.0.proj.weight"], base.proj.base_layer.weight)
    for n, p in model.named_parameters():  # training weights untouched
        assert torch.equal(p, before[n])


@pytest.mark.gpu
def test_real_vllm_engine_generates() -> None:  # pragma: no cover - needs GPU + vLLM + weights
    pytest.importorskip("vllm")
    from vllm import LLM, SamplingParams

    llm = LLM(model="Qwen/Qwen3-0.6B", enable_prompt_embeds=True, gpu_memory_utilization=0.3)
    prompts, kw = ve.build_vllm_requests(
        [torch.randn(6, 1024, dtype=torch.bfloat16)], 4, max_new_tokens=8
    )
    out = ve.parse_vllm_outputs(
        llm.generate(prompts, SamplingParams(**kw)), 4, pad_id=0, elapsed_s=1.0
    )
    assert out.response_ids.shape[0] == 4 and (out.old_logprobs <= 0).all()
