"""Words for a pair's label: the margin's degree word, its direction sentence, the verdict.

These are the prompt fields of the paper's Appendix C ("Descriptor Rules for Pairwise Quality
Margins"; the rules' exact text is missing from the paper, the bounds below are this project's):
the annotator is told the label in words, never in numbers, so its reply has no number to leak.

The **verdict sentence** is the fixed-form last sentence every rationale must end with
(``Overall, Video B is clearly better than Video A.``); :mod:`datamodules.annotate.verify` parses
it to check the direction, and it is *kept* in the rationale SFT trains on (it is the paper's third
part, "the gap", in a form that can be checked again at training time).
"""

from __future__ import annotations

import math

__all__ = [
    "DRAW_THRESHOLD",
    "DESCRIPTOR_RULES",
    "ACR_LEVELS",
    "margin_descriptor",
    "margin_sentence",
    "verdict_sentence",
    "quality_level",
    "quality_levels",
]

#: ``|margin|`` below this (on the [1, 5] scale) is a draw (paper, Appendix B).
DRAW_THRESHOLD = 0.2
#: ``(upper bound on |margin|, descriptor)``; the last bound is open.
DESCRIPTOR_RULES: tuple[tuple[float, str], ...] = (
    (DRAW_THRESHOLD, "about the same"),
    (0.6, "slightly better"),
    (1.2, "clearly better"),
    (float("inf"), "substantially better"),
)
#: ITU-T P.910 absolute category rating labels for MOS 1..5.
ACR_LEVELS: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")


def margin_descriptor(margin: float) -> str:
    """Descriptor word for a margin on the [1, 5] scale.

    >>> [margin_descriptor(m) for m in (0.1, -0.4, 0.9, -2.0)]
    ['about the same', 'slightly better', 'clearly better', 'substantially better']
    """
    if margin != margin:  # NaN
        raise ValueError("margin is NaN; a descriptor needs a finite margin")
    return next(word for bound, word in DESCRIPTOR_RULES if abs(margin) < bound)


def margin_sentence(margin: float) -> str:
    """The directional statement of a margin, e.g. ``"Video B is clearly better than Video A"``.

    >>> margin_sentence(0.7)
    'Video A is clearly better than Video B'
    >>> margin_sentence(-0.05)
    'Video A and Video B are about the same'
    """
    word = margin_descriptor(margin)
    if word == "about the same":
        return "Video A and Video B are about the same"
    better, worse = ("A", "B") if margin > 0 else ("B", "A")
    return f"Video {better} is {word} than Video {worse}"


def verdict_sentence(margin: float) -> str:
    """The fixed-form last sentence of a rationale for this margin.

    >>> verdict_sentence(-1.5)
    'Overall, Video B is substantially better than Video A.'
    """
    return f"Overall, {margin_sentence(margin)}."


def quality_level(mos: float) -> str:
    """ACR label of a MOS on [1, 5] (nearest category, halves round up).

    >>> [quality_level(m) for m in (1.0, 2.49, 2.5, 4.9)]
    ['bad', 'poor', 'fair', 'excellent']
    """
    if not 1.0 <= mos <= 5.0:
        raise ValueError(f"MOS {mos} is not on the [1, 5] scale")
    return ACR_LEVELS[min(5, math.floor(mos + 0.5)) - 1]


def quality_levels(mos_a: float, mos_b: float) -> tuple[str, str]:
    """ACR labels of both videos; a draw gets one shared label (of the mean MOS).

    A draw straddling a category boundary would otherwise read "fair" vs "good" next to "about the
    same", and the annotator would argue a difference that the label does not have.

    >>> quality_levels(3.45, 3.55)
    ('good', 'good')
    >>> quality_levels(4.2, 2.1)
    ('good', 'poor')
    """
    if margin_descriptor(mos_a - mos_b) == "about the same":
        shared = quality_level((mos_a + mos_b) / 2)
        return shared, shared
    return quality_level(mos_a), quality_level(mos_b)
