"""Tests for the synthetic benchmark's rationales (pairwise and single-video)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from datamodules.annotate.descriptors import ACR_LEVELS
from datamodules.synthetic_rationale import (
    DISTORTION_KEYWORDS,
    make_rationale,
    make_single_rationale,
    rationale_for_table,
    single_rationale_for_table,
)

INFO_A = {"content": "scene", "distortions": ["noise", "compression"], "severities": [0.2, 0.8]}
INFO_B = {"content": "ripples", "distortions": ["blur", "stutter", "flicker"], "severities": [0.5, 0.9, 0.1]}


@pytest.mark.parametrize("margin", [1.5, 0.8, 0.3, 0.1, -0.05, -0.4, -0.9, -2.5])
def test_rationale_is_truthful(margin: float) -> None:
    for seed in range(5):
        text = make_rationale(INFO_A, INFO_B, margin, np.random.default_rng(seed))
        assert 25 <= len(text.split()) <= 60, text
        evidence_a, evidence_b = text.split("Video B")[0], text.split("Video B")[1]
        for d in INFO_A["distortions"]:
            assert DISTORTION_KEYWORDS[d] in evidence_a
        for d in INFO_B["distortions"]:
            assert DISTORTION_KEYWORDS[d] in evidence_b
        assert "<think>" not in text
        if abs(margin) < 0.2:
            assert "about the same" in text
        else:
            better = "A" if margin > 0 else "B"
            assert (
                f"Video {better} is" in text or f"Video {better} looks" in text or f"favours Video {better}" in text
            ), text
            assert "about the same" not in text


def test_rationale_for_table_reads_extra_columns() -> None:
    # pandas parses single-valued cells as float: both forms must work
    table = SimpleNamespace(
        benchmark="synthetic",
        extra={
            "content": ["shapes", "zoom_noise"],
            "distortions": ["downscale;color", "noise"],
            "severities": ["0.700;0.100", 0.25],
        },
    )
    text = rationale_for_table(table, 0, 1, margin=-0.9)
    assert "resolution" in text and "colour" in text and "noise" in text
    assert "Video B is clearly better" in text or "favours Video B" in text or "Video B looks" in text
    assert text == rationale_for_table(table, 0, 1, margin=-0.9)  # deterministic per pair
    with pytest.raises(KeyError, match="content"):
        rationale_for_table(SimpleNamespace(benchmark="x", extra={}), 0, 1, 0.5)


@pytest.mark.parametrize("mos", [1.0, 1.6, 2.9, 3.7, 5.0])
def test_single_rationale_is_truthful(mos: float) -> None:
    for seed in range(5):
        text = make_single_rationale(INFO_B, mos, np.random.default_rng(seed))
        assert 12 <= len(text.split()) <= 45, text
        for d in INFO_B["distortions"]:
            assert DISTORTION_KEYWORDS[d] in text
        level = ACR_LEVELS[min(5, int(mos + 0.5)) - 1]
        assert [w for w in ACR_LEVELS if f" {w}" in text] == [level], text  # its level, no other
        assert "Video B" not in text and "<think>" not in text and not any(c.isdigit() for c in text)


def test_single_rationale_for_table_reads_row() -> None:
    table = SimpleNamespace(
        benchmark="synthetic",
        mos=np.array([4.6, 1.2]),
        extra={"content": ["shapes", "zoom_noise"], "distortions": ["", "noise;blur"], "severities": ["", "0.9;0.2"]},
    )
    clean, noisy = single_rationale_for_table(table, 0), single_rationale_for_table(table, 1)
    assert "without visible artefacts" in clean and "excellent" in clean
    assert "noise" in noisy and "blur" in noisy and "bad" in noisy
    assert noisy.index("noise") < noisy.index("blur")  # most severe first
    assert noisy == single_rationale_for_table(table, 1)  # deterministic per video
    with pytest.raises(KeyError, match="severities"):
        single_rationale_for_table(
            SimpleNamespace(benchmark="x", mos=[3.0], extra={"content": ["a"], "distortions": [""]}), 0
        )
