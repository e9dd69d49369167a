"""The response template: THE validity rule (inference parsing and the format reward), lengths, masks."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from lightning_modules import objectives as obj
from lightning_modules import template as tpl


@pytest.mark.parametrize(
    "text",
    [
        "<think>A is sharper; B has blocking.</think><answer>",
        "  <think>multi\nline\nrationale</think>\n<answer>\n",
        "<think>x</think><answer>   ",
    ],
)
def test_valid_head_responses(text: str) -> None:
    parsed = tpl.parse_response(text)
    assert parsed.valid and parsed.rationale == text.split("<think>")[1].split("</think>")[0].strip()
    assert tpl.is_valid([text]).tolist() == [True]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A is better.",
        "<think></think><answer>",  # empty rationale under the reasoning template
        "<think>  \n </think><answer>",  # whitespace-only rationale
        "<think>ok</think>",  # no <answer>
        "<think>ok</think><answer> 0.4",  # text after <answer>
        "<think>ok</think><answer><reg>",  # <reg> is appended by the module, never sampled
        "<think>ok<think>again</think><answer>",  # nested tag
        "<think>ok</answer></think><answer>",
        "<think>ok</think><answer><answer>",
        "preamble <think>ok</think><answer>",
        "<think>ok</think> A <answer>",
        "ok</think><answer>",  # no <think>
    ],
)
def test_invalid_head_responses(text: str) -> None:
    assert not tpl.parse_response(text).valid
    assert tpl.is_valid([text]).tolist() == [False]


def test_reasoning_flag_decides_the_think_block() -> None:
    empty, full = "<think></think><answer>", "<think>A is sharper.</think><answer>"
    assert tpl.is_valid([empty, full], reasoning=False).tolist() == [True, False]
    assert tpl.is_valid([empty, full], reasoning=True).tolist() == [False, True]


def test_ntp_readout_needs_a_closed_number() -> None:
    good = tpl.parse_response("<think>x</think><answer> -0.40 </answer>", "ntp")
    assert good.valid and good.number == pytest.approx(-0.4) and good.rationale == "x"
    for text in (
        "<think>x</think><answer>-0.40",
        "<think>x</think><answer>big</answer>",
        "<think>x</think><answer>1</answer> more",
        "<think>x</think><answer>",
    ):
        parsed = tpl.parse_response(text, "ntp")
        assert not parsed.valid and math.isnan(parsed.number), text
    with pytest.raises(ValueError, match=r"allowed: \['head', 'ntp'\]"):
        tpl.parse_response("<think>x</think><answer>", "digits")  # type: ignore[arg-type]


def test_invalid_rollout_still_earns_its_margin_reward() -> None:
    """The reward's format term is the template's rule (one home), the margin term stays."""
    pred, target = torch.tensor([0.5, 0.5, 0.5]), torch.zeros(3)
    texts = ["<think>ok</think><answer>", "<think> </think><answer>", "broken"]
    r = obj.total_reward(pred, target, tpl.is_valid(texts), alpha=1.0)
    base = math.exp(-0.25)
    assert r.tolist() == pytest.approx([base + 0.2, base, base])


def test_generated_and_full_response_text() -> None:
    assert tpl.response_text("r") == tpl.generated_text("r") + tpl.REG
    assert tpl.parse_response(tpl.generated_text("Video A is sharper.")).valid
    assert tpl.parse_response(tpl.generated_text("", "+0.30"), "ntp", reasoning=False).number == 0.3


def test_response_lengths_end_token_inclusive_pad_exclusive() -> None:
    ids = torch.tensor(
        [
            [1, 5, 9, 0, 0],  # end token 9 -> 3
            [1, 5, 6, 5, 6],  # runs to the budget -> 5
            [5, 5, 0, 0, 0],  # padded without an end token -> 2
            [9, 0, 0, 0, 0],  # end first -> 1
        ]
    )
    lengths = tpl.response_lengths(ids, [9], pad_id=0)
    assert lengths.tolist() == [3, 5, 2, 1]
    assert tpl.response_lengths(ids, [9, 0], pad_id=0).tolist() == [3, 5, 3, 1]  # pad is an end id
    mask = tpl.lengths_to_mask(lengths, ids.shape[1])
    assert mask.sum(1).tolist() == [3, 5, 2, 1] and mask.dtype == torch.bool
    assert not mask[:, 1:].logical_and(~mask[:, :-1]).any()  # a prefix of every row


def test_template_version_covers_every_text() -> None:
    """Change a prompt or the response template -> bump TEMPLATE_VERSION (journals key on it)."""
    texts = [
        tpl.pair_prompt("[A]", "[B]"),
        tpl.single_prompt("[V]"),
        tpl.video_block("[V]", 2),
        tpl.response_text("r", "+0.10"),
        tpl.end_tokens("head"),
        tpl.end_tokens("ntp"),
    ]
    digest = hashlib.sha256(repr(texts).encode()).hexdigest()[:16]
    assert (tpl.TEMPLATE_VERSION, digest) == ("versusq-chat-1", "3f450af70b9392f1")
