"""The versioned prompt template (``templates/*.txt``) and the chat messages built from it.

A template file has a ``version:`` line, then the sections ``=== system ===`` (optional),
``=== user ===``, ``=== retry ===``, ``=== note_frames ===`` and ``=== note_video_url ===``
(format and placeholders: the comment block of ``templates/pairwise_cot_v1.txt``). Loading checks
the placeholders, so a typo fails before the first request, not after 18k of them. Every record
stores the version and the file's hash.
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from datamodules.annotate.descriptors import margin_sentence, quality_levels, verdict_sentence
from datamodules.annotate.verify import TARGET_WORDS

__all__ = ["DEFAULT_TEMPLATE", "INPUTS", "InputMode", "PromptTemplate", "load_template", "build_messages"]

InputMode = Literal["frames", "video_url"]
#: How videos are shown to the annotator (:mod:`datamodules.annotate.media`); each has a note.
INPUTS: tuple[str, ...] = ("frames", "video_url")

DEFAULT_TEMPLATE = Path(__file__).resolve().parent / "templates" / "pairwise_cot_v1.txt"
_FIELDS = {
    "system": set(),
    "user": {"video_note", "level_a", "level_b", "comparison", "verdict", "min_words", "max_words"},
    "retry": {"reason", "detail"},
    "note_frames": {"num_frames"},
    "note_video_url": set(),
}
_REQUIRED = {"user": {"verdict", "video_note"}, "retry": {"reason"}}
_SECTION = re.compile(r"^=== (\w+) ===\s*$", re.MULTILINE)


@dataclass(frozen=True)
class PromptTemplate:
    """A loaded template.

    Attributes:
        version: the file's ``version:`` value (recorded with every rationale).
        sha: first 12 hex digits of the file's SHA-256 (catches edits without a version bump).
        system: system message text ("" for none).
        user: user message text with placeholders.
        retry: text appended after a rejected reply, with ``{reason}`` / ``{detail}``.
        notes: how the videos are shown, per input mode (``frames``, ``video_url``).
        path: the file.
    """

    version: str
    sha: str
    system: str
    user: str
    retry: str
    notes: tuple[tuple[str, str], ...]
    path: str

    def render(self, mos_a: float, mos_b: float, mode: InputMode = "frames", num_frames: int = 8) -> str:
        """The user prompt of a pair (MOS on [1, 5]; only words reach the text).

        Raises:
            ValueError: unknown ``mode`` (the allowed values are listed).
        """
        notes = dict(self.notes)
        if mode not in notes:
            raise ValueError(f"unknown input mode {mode!r}; allowed: {sorted(notes)}")
        margin = mos_a - mos_b
        level_a, level_b = quality_levels(mos_a, mos_b)
        return self.user.format(
            video_note=notes[mode].format(num_frames=num_frames),
            level_a=level_a,
            level_b=level_b,
            comparison=margin_sentence(margin),
            verdict=verdict_sentence(margin),
            min_words=TARGET_WORDS[0],
            max_words=TARGET_WORDS[1],
        )


def _check_fields(path: Path, name: str, text: str) -> None:
    used = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    unknown, missing = used - _FIELDS[name], _REQUIRED.get(name, set()) - used
    if unknown or missing:
        raise ValueError(
            f"{path}: section {name!r}: unknown placeholders {sorted(unknown)}, "
            f"missing {sorted(missing)}; allowed: {sorted(_FIELDS[name])}"
        )


@lru_cache(maxsize=8)
def load_template(path: str | Path = DEFAULT_TEMPLATE) -> PromptTemplate:
    """Read and check a template file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: no ``version:`` line, a missing/unknown section or placeholder (file named).
    """
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    head, *rest = _SECTION.split(raw)
    version = re.search(r"^version:\s*(\S+)\s*$", head, re.MULTILINE)
    if version is None:
        raise ValueError(f"{path}: no 'version: <name>' line before the first section")
    sections = {name: body.strip() for name, body in zip(rest[::2], rest[1::2])}
    unknown = set(sections) - set(_FIELDS)
    missing = set(_FIELDS) - {"system"} - set(sections)
    if unknown or missing:
        raise ValueError(
            f"{path}: unknown sections {sorted(unknown)}, missing {sorted(missing)}; sections are {sorted(_FIELDS)}"
        )
    for name, text in sections.items():
        _check_fields(path, name, text)
    notes = tuple((mode, sections[f"note_{mode}"]) for mode in INPUTS)
    return PromptTemplate(
        version.group(1),
        hashlib.sha256(raw.encode()).hexdigest()[:12],
        sections.get("system", ""),
        sections["user"],
        sections["retry"],
        notes,
        str(path),
    )


def build_messages(
    template: PromptTemplate,
    mos_a: float,
    mos_b: float,
    parts_a: list[dict],
    parts_b: list[dict],
    mode: InputMode = "frames",
    num_frames: int = 8,
    rejection: tuple[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The chat messages of one request: videos A then B, the prompt, the rejection if retrying.

    Args:
        template: the prompt template.
        mos_a: MOS of Video A on [1, 5].
        mos_b: MOS of Video B on [1, 5].
        parts_a: content parts showing Video A (:func:`datamodules.annotate.media.video_parts`).
        parts_b: the same for Video B.
        mode: how the videos are shown (``frames`` or ``video_url``: picks the template's note).
        num_frames: frames per video in ``frames`` mode (named in the note).
        rejection: ``(reason, detail)`` of the previous reply when this is a retry.
    """
    content = [
        {"type": "text", "text": "Video A:"},
        *parts_a,
        {"type": "text", "text": "Video B:"},
        *parts_b,
        {"type": "text", "text": template.render(mos_a, mos_b, mode, num_frames)},
    ]
    if rejection is not None:
        content.append({"type": "text", "text": template.retry.format(reason=rejection[0], detail=rejection[1])})
    messages = [{"role": "system", "content": template.system}] if template.system else []
    return [*messages, {"role": "user", "content": content}]
