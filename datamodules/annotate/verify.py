"""Checks every annotator reply must pass before it becomes a training rationale.

:func:`verify_reply` is the one rule; a reply is accepted only when

1. it has ``WORD_BOUNDS`` words (the prompt asks for ``TARGET_WORDS``, a little slack either side);
2. its last sentence is the verdict in its fixed form (:func:`~.descriptors.verdict_sentence`)
   and that verdict says the label's direction *and* degree word;
3. no sentence before it claims the opposite overall winner ("Video A is better than Video B"
   for a pair where B is better; attribute comparisons such as "A is sharper" are evidence, not a
   claim about the winner, and are left alone);
4. it states nothing that could leak a score: decimals, fractions, ``x out of y``, percentages,
   score/rating vocabulary, digits attached to quality words;
5. it does not mention the hidden reference it was given.

Reasons (the ``reason`` of a rejected record): ``empty``, ``too_short``, ``too_long``,
``no_verdict``, ``wrong_direction``, ``wrong_degree``, ``score_leak``, ``mentions_reference``.
The verdict is **kept**, canonicalised, as the rationale's last sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from datamodules.annotate.descriptors import margin_descriptor, verdict_sentence

__all__ = [
    "TARGET_WORDS",
    "WORD_BOUNDS",
    "REASONS",
    "Check",
    "clean_reply",
    "parse_verdict",
    "find_leak",
    "verify_reply",
    "verdict_agrees",
]

TARGET_WORDS = (60, 150)  # asked for in the prompt
WORD_BOUNDS = (40, 220)  # accepted
REASONS = (
    "empty",
    "too_short",
    "too_long",
    "no_verdict",
    "wrong_direction",
    "wrong_degree",
    "score_leak",
    "mentions_reference",
)

_DEGREES = r"slightly|clearly|substantially"
_TAGS = r"</?(?:think|answer|reg)>"
_VERDICT = re.compile(
    rf"Overall,\s+(?:Video\s+(?P<win>[AB])\s+is\s+(?P<deg>{_DEGREES})\s+better\s+than\s+"
    rf"Video\s+(?P<lose>[AB])|(?P<draw>Video\s+A\s+and\s+Video\s+B\s+are\s+about\s+the\s+same))"
    r"\s*[.!]?\s*$",
    re.IGNORECASE,
)
_NEGATION = re.compile(r"\b(not|no|never|hardly|barely)\b|n't\b", re.IGNORECASE)
_CLAIM = re.compile(
    r"\bVideo\s+(?P<x>[AB])\s+(?:is|looks|appears|seems)\s+(?P<mid>(?:\w+\s+){0,2}?)"
    r"(?:(?P<up>better|superior|preferable|(?:of\s+)?(?:higher|better)[- ]quality)|"
    r"(?P<down>worse|inferior|(?:of\s+)?(?:lower|worse)[- ]quality))"
    r"(?:\s+overall)?\s+(?:than|to)\s+Video\s+(?P<y>[AB])\b",
    re.IGNORECASE,
)
_QUALITY_WORDS = r"quality|score|scores|rating|grade|level|stars?|points?"
_LEAKS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a decimal number", re.compile(r"\d+[.,]\d+")),
    ("a fraction", re.compile(r"\b\d+\s*/\s*\d+\b|\b\d+\s+out\s+of\s+\d+\b", re.IGNORECASE)),
    ("a percentage", re.compile(r"\d+\s*(?:%|percent\b|per\s+cent\b)", re.IGNORECASE)),
    (
        "score vocabulary",
        re.compile(
            r"\b(?:MOS|mean\s+opinion|opinion\s+scores?|scores?|scored|"
            r"scoring|ratings?|rated|graded)\b",
            re.IGNORECASE,
        ),
    ),
    (
        "a number attached to a quality word",
        re.compile(
            rf"\b\d+(?:\s*-\s*|\s+)(?:\w+\s+)?(?:{_QUALITY_WORDS})\b|"
            rf"\b(?:{_QUALITY_WORDS})(?:\s+\w+)?\s+(?:of\s+)?\d+\b",
            re.IGNORECASE,
        ),
    ),
)
# "labels" / "viewers" are left out on purpose: on-screen text labels and what viewers would notice
# are legitimate evidence.
_REFERENCE = re.compile(
    r"\b(?:reference\s+(?:information|info|judge?ment)|hidden\s+reference|"
    r"ground[- ]truth|(?:was|were|been)\s+(?:told|provided)|"
    r"human\s+(?:raters|ratings|judge?ments?))\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Check:
    """Outcome of :func:`verify_reply`.

    Attributes:
        ok: the reply is accepted.
        rationale: accepted: the text to train on (the verdict in its canonical form);
            rejected: the cleaned reply, kept in the record for auditing.
        reason: one of :data:`REASONS` when rejected, else ``None``.
        detail: what exactly failed (quoted text), for the record and the retry prompt.
    """

    ok: bool
    rationale: str
    reason: str | None = None
    detail: str = ""


def clean_reply(text: str) -> str:
    """The rationale part of a reply: tags, markdown, list markers and extra whitespace removed.

    A reply ``<think>X</think>Y`` with a non-empty ``Y`` is a reasoning model's private thought
    ``X`` followed by its answer ``Y``: only ``Y`` is kept.

    >>> clean_reply("<think>1. A is sharp.\\n2. **B** is soft.</think>")
    'A is sharp. B is soft.'
    >>> clean_reply("<think>let me look</think> A is sharp.")
    'A is sharp.'
    """
    head, closed, tail = text.partition("</think>")
    head, tail = re.sub(_TAGS, " ", head), re.sub(_TAGS, " ", tail)
    text = tail if closed and tail.strip() else f"{head} {tail}"
    text = re.sub(r"(^|\n)\s*(?:\d+[.)]|[-*•]|#+)\s+", r"\1", text)
    text = re.sub(r"\*\*|__|`", "", text)
    return " ".join(text.split())


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def parse_verdict(text: str) -> tuple[str, str | None] | None:
    """``(winner, degree)`` of the verdict ending ``text``: winner ``"A"``/``"B"``/``"draw"``.

    >>> parse_verdict("A is soft. Overall, Video B is clearly better than Video A.")
    ('B', 'clearly better')
    >>> parse_verdict("Overall, Video A and Video B are about the same.")
    ('draw', None)
    >>> parse_verdict("B wins.") is None
    True
    """
    sentences = _sentences(text)
    match = _VERDICT.fullmatch(sentences[-1]) if sentences else None
    if match is None:
        return None
    if match["draw"]:
        return "draw", None
    if match["win"].upper() == match["lose"].upper():
        return None
    return match["win"].upper(), f"{match['deg'].lower()} better"


def _claimed_winners(text: str) -> list[tuple[str, str]]:
    """``(winner, quoted claim)`` of every un-negated overall comparison in ``text``."""
    out = []
    for sentence in _sentences(text):
        for m in _CLAIM.finditer(sentence):
            x, y = m["x"].upper(), m["y"].upper()
            if x == y or _NEGATION.search(m["mid"] or "") or _NEGATION.search(sentence[: m.start()]):
                continue
            out.append((x if m["up"] else y, m.group(0)))
    return out


def find_leak(text: str) -> str | None:
    """What in ``text`` could leak a score (``None`` when nothing does).

    >>> find_leak("Video A would get 4.2/5.")
    "a decimal number: '4.2'"
    >>> find_leak("Its quality 4 beats B's 3-star look.")
    "a number attached to a quality word: 'quality 4'"
    >>> find_leak("Video A shows 2 blocky areas at 1080p.") is None
    True
    """
    for what, pattern in _LEAKS:
        m = pattern.search(text)
        if m:
            return f"{what}: {m.group(0)!r}"
    return None


def _expected(margin: float) -> tuple[str, str | None]:
    """The verdict ``(winner, degree)`` that ``margin`` calls for."""
    word = margin_descriptor(margin)
    if word == "about the same":
        return "draw", None
    return ("A" if margin > 0 else "B"), word


def verdict_agrees(rationale: str, margin: float) -> bool:
    """True when ``rationale`` ends with the verdict of ``margin`` (direction and degree).

    >>> verdict_agrees("Soft. Overall, Video B is clearly better than Video A.", -0.8)
    True
    >>> verdict_agrees("Soft. Overall, Video A is clearly better than Video B.", -0.8)
    False
    """
    return parse_verdict(rationale) == _expected(margin)


def _body_check(body: str, margin: float) -> tuple[str, str] | None:
    """Rejection ``(reason, detail)`` from the text before the verdict, or None."""
    leak = find_leak(body)
    if leak:
        return "score_leak", leak
    ref = _REFERENCE.search(body)
    if ref:
        return "mentions_reference", f"mentions {ref.group(0)!r}"
    if margin_descriptor(margin) != "about the same":
        want = "A" if margin > 0 else "B"
        wrong = [claim for winner, claim in _claimed_winners(body) if winner != want]
        if wrong:
            return "wrong_direction", f"the text claims {wrong[0]!r}"
    return None


def verify_reply(reply: str, margin: float) -> Check:
    """Accept or reject one annotator reply for a pair with label ``margin`` (= MOS_A - MOS_B).

    >>> body = "Video A is crisp with fine texture and steady motion. " * 6
    >>> verify_reply(body + "Overall, Video A is clearly better than Video B.", 0.9).ok
    True
    >>> verify_reply(body + "Overall, Video B is clearly better than Video A.", 0.9).reason
    'wrong_direction'
    """
    text = clean_reply(reply)
    words = len(text.split())
    if words == 0:
        return Check(False, text, "empty", "the reply has no text")
    if not WORD_BOUNDS[0] <= words <= WORD_BOUNDS[1]:
        reason = "too_short" if words < WORD_BOUNDS[0] else "too_long"
        allowed = f"{WORD_BOUNDS[0]}-{WORD_BOUNDS[1]}"
        return Check(False, text, reason, f"{words} words; allowed {allowed}")
    sentences = _sentences(text)
    got, want = parse_verdict(text), _expected(margin)
    if got is None:
        return Check(False, text, "no_verdict", f"last sentence {sentences[-1]!r} is not the verdict")
    problem = _body_check(" ".join(sentences[:-1]), margin)
    if problem is None and got != want:
        problem = (
            "wrong_direction" if got[0] != want[0] else "wrong_degree",
            f"verdict {sentences[-1]!r}; the label is {verdict_sentence(margin)!r}",
        )
    if problem is not None:
        return Check(False, text, *problem)
    return Check(True, " ".join([*sentences[:-1], verdict_sentence(margin)]))
