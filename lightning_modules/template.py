"""The VersusQ chat template (paper Eq. 6): tokens, prompt and response text, the validity rule.

Everything here is text or token-id bookkeeping, no model: the prompt the model reads
(:func:`pair_prompt`, :func:`single_prompt`), the response it writes
``<think>{rationale}</think><answer>`` followed by the ``<reg>`` placeholder the module appends
(:func:`response_text`), the ONE rule deciding whether a written response is valid
(:func:`is_valid`, used by inference parsing *and* the MC-GRPO format reward), where a response
ends (:func:`end_tokens`, :func:`response_lengths`) and how a length becomes a mask
(:func:`lengths_to_mask`).

``TEMPLATE_VERSION`` names the prompt wording and response template; bump it whenever any text
below changes (a test pins the texts to it), because comparisons journaled under another
template are not comparable (the evaluation journal's identity includes it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch

TEMPLATE_VERSION = "versusq-chat-1"

THINK, THINK_END, ANSWER, ANSWER_END, REG = "<think>", "</think>", "<answer>", "</answer>", "<reg>"
MOTION_START, MOTION_PAD, MOTION_END = "<|motion_start|>", "<|motion_pad|>", "<|motion_end|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VERSUSQ_TOKENS = (THINK, THINK_END, ANSWER, ANSWER_END, REG, MOTION_START, MOTION_PAD, MOTION_END)

#: How the margin is read out: ``head`` = r_phi on the ``<reg>`` state (the paper);
#: ``ntp`` = the number written as answer text (Table 2 ablation).
Readout = Literal["head", "ntp"]
#: ``pairwise`` = two videos, signed margin (the method); ``pointwise`` = one video, its MOS.
Target = Literal["pairwise", "pointwise"]
READOUTS: tuple[str, ...] = get_args(Readout)
TARGETS: tuple[str, ...] = get_args(Target)

SYSTEM_PROMPT = "You are a video quality assessment expert. Compare the perceptual quality of two videos."
PAIR_QUESTION = (
    "Which video has better quality, and by how much? Reason about visual and temporal evidence "
    "first, then give the signed quality margin."
)
SINGLE_SYSTEM = "You are a video quality assessment expert."
SINGLE_QUESTION = "Score the perceptual quality of this video on a scale from 1 to 5. Reason about the evidence first."

# The validity rule, written once. ``C`` (the rationale) may not contain a template tag.
_TAG = r"(?:<think>|</think>|<answer>|</answer>|<reg>)"
_RATIONALE = rf"((?:(?!{_TAG}).)*)"
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)"
_HEAD_RE = re.compile(rf"\s*<think>{_RATIONALE}</think>\s*<answer>\s*", re.DOTALL)
_NTP_RE = re.compile(rf"\s*<think>{_RATIONALE}</think>\s*<answer>\s*({_NUMBER})\s*</answer>\s*", re.DOTALL)


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming ``name`` and the allowed values when ``value`` is not one.

    >>> check_choice("readout", "head", READOUTS)
    """
    if value not in allowed:
        raise ValueError(f"{name}={value!r}; allowed: {list(allowed)}")


# ---------------------------------------------------------------------------- prompts
def video_block(video_placeholder: str, num_motion: int) -> str:
    """Frames (the processor-expanded video placeholder) followed by the motion tokens.

    >>> video_block("<V>", 2)
    '<V><|motion_start|><|motion_pad|><|motion_pad|><|motion_end|>'
    """
    return video_placeholder + MOTION_START + MOTION_PAD * num_motion + MOTION_END


def _chat(system: str, user: str) -> str:
    return f"{IM_START}system\n{system}{IM_END}\n{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"


def pair_prompt(video_a: str, video_b: str) -> str:
    """The pairwise prompt ``x_ij`` up to the assistant turn (chat format of Qwen3-VL).

    Args:
        video_a: :func:`video_block` of Video A (frames + motion tokens).
        video_b: the same for Video B.

    >>> pair_prompt("[A]", "[B]").endswith("<|im_start|>assistant\\n")
    True
    """
    return _chat(SYSTEM_PROMPT, f"Video A: {video_a}\nVideo B: {video_b}\n{PAIR_QUESTION}")


def single_prompt(video: str) -> str:
    """The pointwise-ablation prompt (one video, absolute score).

    >>> single_prompt("[V]").count("Video:")
    1
    """
    return _chat(SINGLE_SYSTEM, f"Video: {video}\n{SINGLE_QUESTION}")


# ---------------------------------------------------------------------------- responses
def generated_text(rationale: str, answer: str = "") -> str:
    """What the model writes: ``<think>{rationale}</think><answer>`` (+ ``{answer}</answer>``).

    This is the SFT next-token target (Eq. 9-10: NTP up to ``<answer>``). ``answer`` is empty
    for the head readout; the NTP-readout ablation writes the number there.

    >>> generated_text("A is sharper.")
    '<think>A is sharper.</think><answer>'
    >>> generated_text("", "+0.50")
    '<think></think><answer>+0.50</answer>'
    """
    tail = f"{answer}{ANSWER_END}" if answer else ""
    return f"{THINK}{rationale}{THINK_END}{ANSWER}{tail}"


def response_text(rationale: str, answer: str = "") -> str:
    """The full response of Eq. 6: :func:`generated_text` + the ``<reg>`` placeholder.

    >>> response_text("A is sharper.")
    '<think>A is sharper.</think><answer><reg>'
    """
    return generated_text(rationale, answer) + REG


@dataclass(frozen=True)
class ParsedResponse:
    """A generated response split into its parts.

    Attributes:
        rationale: the think block's text (stripped), or the whole text when it has none.
        valid: whether the response follows the template (:func:`is_valid`).
        number: the answer's number (NTP readout), NaN otherwise or when not valid.
    """

    rationale: str
    valid: bool
    number: float


def parse_response(text: str, readout: Readout = "head", reasoning: bool = True) -> ParsedResponse:
    """Split a decoded response (special tokens kept) by THE validity rule.

    A response is valid when the WHOLE text is ``<think>C</think><answer>`` (head readout) or
    ``<think>C</think><answer>NUMBER</answer>`` (NTP readout), whitespace allowed around the tags,
    where ``C`` holds no template tag and -- with ``reasoning`` -- at least one non-space character;
    without ``reasoning`` (the "SFT w/o Reasoning" ablation, trained on ``<think></think>``) ``C``
    must be blank. Why this one rule: the empty think block is what the no-reasoning model was
    taught, so accepting it there is right; under the reasoning template it is a skipped rationale,
    and accepting it would let MC-GRPO pay the format reward (Eq. 11) for not reasoning and let
    inference read a ``<reg>`` state that summarises nothing. Text after ``<answer>`` means the
    generation did not stop where the template ends (it would sit between ``<answer>`` and the
    appended ``<reg>``), so it is invalid too.

    >>> parse_response("<think>A is sharp.</think><answer>")
    ParsedResponse(rationale='A is sharp.', valid=True, number=nan)
    >>> parse_response("<think> </think><answer>").valid, parse_response("<think></think><answer>", reasoning=False).valid
    (False, True)
    >>> parse_response("<think>x</think><answer>-0.40</answer>", "ntp")
    ParsedResponse(rationale='x', valid=True, number=-0.4)
    >>> parse_response("<think>never closed")
    ParsedResponse(rationale='never closed', valid=False, number=nan)
    """
    check_choice("readout", readout, READOUTS)
    match = (_HEAD_RE if readout == "head" else _NTP_RE).fullmatch(text)
    if match is None:
        body = text.split(THINK, 1)[-1].partition(THINK_END)[0]
        return ParsedResponse(body.strip(), False, float("nan"))
    rationale = match.group(1).strip()
    if bool(rationale) != reasoning:
        return ParsedResponse(rationale, False, float("nan"))
    number = float(match.group(2)) if readout == "ntp" else float("nan")
    return ParsedResponse(rationale, True, number)


def is_valid(texts: list[str], readout: Readout = "head", reasoning: bool = True) -> torch.Tensor:
    """``(N,)`` bool: :func:`parse_response`'s validity of each text (the format reward's test).

    >>> is_valid(["<think>A is sharper.</think><answer>", "<think> </think><answer>",
    ...           "<think>x</think><answer> 0.3"]).tolist()
    [True, False, False]
    """
    return torch.tensor([parse_response(t, readout, reasoning).valid for t in texts], dtype=torch.bool)


# ---------------------------------------------------------------------------- lengths and masks
def end_tokens(readout: Readout) -> tuple[str, str]:
    """Tokens that end a generation: the template's last tag, or the chat turn's end.

    >>> end_tokens("head"), end_tokens("ntp")
    (('<answer>', '<|im_end|>'), ('</answer>', '<|im_end|>'))
    """
    check_choice("readout", readout, READOUTS)
    return (ANSWER if readout == "head" else ANSWER_END, IM_END)


def response_lengths(ids: torch.Tensor, end_ids: list[int], pad_id: int | None = None) -> torch.Tensor:
    """Tokens per row up to and including the first end token.

    Generation right-pads finished rows, and a pad id may also be an end id, so lengths are read
    from the end tokens. A ``pad_id`` that is not an end id ends a row *exclusively* (only
    finished rows are padded); a row with neither runs the full width.

    Args:
        ids: ``(N, T)`` response ids.
        end_ids: ids that end a response (counted in it).
        pad_id: padding id, or ``None`` to ignore padding.

    >>> response_lengths(torch.tensor([[4, 9, 0], [4, 4, 4], [4, 0, 0]]), [9], pad_id=0)
    tensor([2, 3, 1])
    """
    n, t = ids.shape
    full = torch.full((n,), t, dtype=torch.long, device=ids.device)
    is_end = torch.isin(ids, torch.tensor(list(end_ids), dtype=ids.dtype, device=ids.device))  # (N, T)
    lengths = torch.where(is_end.any(1), is_end.int().argmax(1) + 1, full)
    if pad_id is not None and pad_id not in end_ids:
        is_pad = ids == pad_id  # (N, T)
        lengths = torch.minimum(lengths, torch.where(is_pad.any(1), is_pad.int().argmax(1), full))
    return lengths


def force_close(tokens: list[int], think_end: int, answer: int, end_ids: list[int]) -> list[int]:
    """Close a head-readout response that did not end in ``</think><answer>``.

    A trailing end token (``<answer>`` or ``<|im_end|>``) is dropped, ``</think>`` is added when
    the think block was never closed, and ``<answer>`` ends the response, so ``<reg>`` follows as
    for a valid one and the head can be read. The caller flags the comparison *forced*: it is
    used, counted and reported, never silently passed off as a valid answer.

    >>> force_close([1, 5, 5], think_end=2, answer=3, end_ids=[3, 9])  # budget reached
    [1, 5, 5, 2, 3]
    >>> force_close([1, 5, 9], think_end=2, answer=3, end_ids=[3, 9])  # ended without closing
    [1, 5, 2, 3]
    >>> force_close([1, 5, 2, 7, 9], think_end=2, answer=3, end_ids=[3, 9])  # no <answer>
    [1, 5, 2, 7, 3]
    """
    body = tokens[:-1] if tokens and tokens[-1] in end_ids else list(tokens)
    return body + ([] if think_end in body else [think_end]) + [answer]


def lengths_to_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``(N,)`` lengths -> ``(N, width)`` bool mask of each row's first ``length`` positions.

    >>> lengths_to_mask(torch.tensor([1, 3]), 3).int().tolist()
    [[1, 0, 0], [1, 1, 1]]
    """
    return torch.arange(width, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def decode_rows(tokenizer: Any, ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    """Decode each row's masked tokens with special tokens kept (the validity rule reads them)."""
    return [tokenizer.decode(row[m].tolist(), skip_special_tokens=False) for row, m in zip(ids.cpu(), mask.cpu())]
