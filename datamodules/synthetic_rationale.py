"""Truthful rationales for the synthetic benchmark (the SFT ``<think>`` text, no tags).

The generator knows every clip's distortions and severities, so the rationale it writes is
evidence the model can actually learn to see. Two forms, one vocabulary:

* **pairwise** (:func:`make_rationale`, :func:`rationale_for_table`): evidence for Video A,
  evidence for Video B, then the gap in words (``annotate.margin_descriptor``);
* **single video** (:func:`make_single_rationale`, :func:`single_rationale_for_table`), for the
  pointwise Table 2 rows: evidence for the one video, then its quality level in words
  (``annotate.quality_level``, the ITU-T P.910 ACR labels) -- the same evidence phrases, so the
  pointwise and pairwise rows differ only in the scoring target.

Both are deterministic per row (pair) and never state a number, like the annotated rationales
of ``datamodules.annotate``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datamodules.annotate.descriptors import margin_descriptor, quality_level
from datamodules.synthetic_content import CONTENT_NAMES

SEVERITY_WORDS = (
    (0.3, ("mild", "slight", "faint")),
    (0.65, ("moderate", "noticeable", "clear")),
    (1.01, ("severe", "heavy", "strong")),
)
# Every phrase names its distortion with the keyword in ``DISTORTION_KEYWORDS``.
DISTORTION_PHRASES: dict[str, tuple[str, ...]] = {
    "compression": (
        "{adj} compression blocking",
        "{adj} compression artefacts that smear detail",
        "{adj} blockiness from compression",
    ),
    "blur": ("{adj} blur that softens edges", "{adj} overall blur", "{adj} blur on fine detail"),
    "noise": ("{adj} grainy sensor noise", "{adj} noise in flat areas", "{adj} speckled noise"),
    "downscale": (
        "{adj} loss of resolution with jagged edges",
        "{adj} pixelation from low resolution",
        "{adj} upscaling softness from reduced resolution",
    ),
    "stutter": ("{adj} stutter from dropped frames", "{adj} motion stutter", "{adj} jerky stutter"),
    "color": (
        "{adj} colour cast and exposure shift",
        "{adj} colour and brightness distortion",
        "{adj} off colour with wrong exposure",
    ),
    "flicker": ("{adj} brightness flicker between frames", "{adj} exposure flicker", "{adj} temporal flicker"),
    "motion_blur": (
        "{adj} motion blur on moving parts",
        "{adj} motion blur that smears movement",
        "{adj} motion blur trails",
    ),
}
DISTORTION_KEYWORDS = {
    "compression": "compression",
    "blur": "blur",
    "noise": "noise",
    "downscale": "resolution",
    "stutter": "stutter",
    "color": "colour",
    "flicker": "flicker",
    "motion_blur": "motion blur",
}
_EVIDENCE = (
    "Video {v}, showing {content}, has {issues}.",
    "In Video {v} ({content}) I see {issues}.",
    "Video {v} ({content}) suffers from {issues}.",
)
_GAP = (
    "Overall, Video {better} is {word} than Video {worse}.",
    "Weighing this evidence, Video {better} looks {word} than Video {worse}.",
    "The gap favours Video {better}, which is {word} than Video {worse}.",
)
_DRAW = (
    "Overall, the two videos are about the same in quality.",
    "Weighing this evidence, both videos are about the same.",
)


def _issues(info: dict, rng: np.random.Generator) -> str:
    """Phrase a clip's distortions, most severe first, e.g. ``"mild blur and heavy noise"``."""
    pairs = sorted(zip(info["distortions"], info["severities"]), key=lambda p: -float(p[1]))
    if not pairs:
        return "clean detail and smooth motion without visible artefacts"
    phrases = []
    for name, severity in pairs:
        if name not in DISTORTION_PHRASES:
            raise ValueError(f"unknown distortion {name!r}; allowed: {sorted(DISTORTION_PHRASES)}")
        words = next(w for bound, w in SEVERITY_WORDS if float(severity) < bound)
        phrases.append(str(rng.choice(DISTORTION_PHRASES[name])).format(adj=rng.choice(words)))
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def make_rationale(info_a: dict, info_b: dict, margin: float, rng: np.random.Generator | None = None) -> str:
    """A truthful ``<think>``-style rationale (no tags) for a pair with known distortions.

    Args:
        info_a: Video A's ``content`` (family id), ``distortions`` (list[str]), ``severities``.
        info_b: the same for Video B.
        margin: ``mos_a - mos_b`` on the [1, 5] scale; its sign gives the direction and
            ``annotate.margin_descriptor`` the degree word.
        rng: varies the phrasing deterministically (default: a fixed generator).

    Returns:
        Evidence for A, evidence for B and the gap, ~25–60 words.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    parts = []
    for tag, info in (("A", info_a), ("B", info_b)):
        content = CONTENT_NAMES.get(info["content"], str(info["content"]).replace("_", " "))
        parts.append(str(rng.choice(_EVIDENCE)).format(v=tag, content=content, issues=_issues(info, rng)))
    word = margin_descriptor(margin)
    if word == "about the same":
        parts.append(str(rng.choice(_DRAW)))
    else:
        better, worse = ("A", "B") if margin > 0 else ("B", "A")
        parts.append(str(rng.choice(_GAP)).format(better=better, worse=worse, word=word))
    return " ".join(parts)


def _as_list(value: Any) -> list[str]:
    """A ``;``-joined CSV cell (pandas may have parsed a single value as float) → list."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    return [v for v in str(value).split(";") if v]


def rationale_for_table(table: Any, i: int, j: int, margin: float, rng: np.random.Generator | None = None) -> str:
    """``make_rationale`` for rows ``i`` (Video A) and ``j`` (Video B) of a synthetic VideoTable.

    Reads ``table.extra["content"|"distortions"|"severities"]``; ``rng`` defaults to one seeded
    by ``(i, j)`` so the same pair always gets the same text.
    """
    return make_rationale(_row_info(table, i), _row_info(table, j), margin, rng or np.random.default_rng([i, j]))


_SINGLE_EVIDENCE = (
    "The video, showing {content}, has {issues}.",
    "In this video ({content}) I see {issues}.",
    "The video ({content}) suffers from {issues}.",
)
_LEVEL = (
    "Overall, its quality is {level}.",
    "Weighing this evidence, the quality looks {level}.",
    "All in all, this is {level} quality.",
)


def make_single_rationale(info: dict, mos: float, rng: np.random.Generator | None = None) -> str:
    """A truthful rationale (no tags) for ONE video with known distortions (pointwise rows).

    Args:
        info: the video's ``content`` (family id), ``distortions`` (list[str]), ``severities``.
        mos: its MOS on the [1, 5] scale; ``annotate.quality_level`` gives the level word.
        rng: varies the phrasing deterministically (default: a fixed generator).

    Returns:
        Evidence for the video and its quality level, ~12-40 words.

    >>> make_single_rationale({"content": "scene", "distortions": ["blur"], "severities": [0.9]},
    ...                       1.4).count("blur")
    1
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    content = CONTENT_NAMES.get(info["content"], str(info["content"]).replace("_", " "))
    evidence = str(rng.choice(_SINGLE_EVIDENCE)).format(content=content, issues=_issues(info, rng))
    return f"{evidence} {str(rng.choice(_LEVEL)).format(level=quality_level(mos))}"


def _row_info(table: Any, k: int) -> dict:
    """Row ``k``'s content / distortions / severities from a synthetic VideoTable's extra columns."""
    missing = [c for c in ("content", "distortions", "severities") if c not in table.extra]
    if missing:
        raise KeyError(
            f"benchmark {table.benchmark!r}: extra columns {missing} missing "
            "(synthetic rationales need a synthetic labels file)"
        )
    return {
        "content": str(table.extra["content"][k]),
        "distortions": _as_list(table.extra["distortions"][k]),
        "severities": [float(s) for s in _as_list(table.extra["severities"][k])],
    }


def single_rationale_for_table(table: Any, k: int, rng: np.random.Generator | None = None) -> str:
    """:func:`make_single_rationale` for row ``k`` of a synthetic VideoTable (its MOS and extras).

    ``rng`` defaults to one seeded by ``k`` so the same video always gets the same text.
    """
    return make_single_rationale(_row_info(table, k), float(table.mos[k]), rng or np.random.default_rng(k))
