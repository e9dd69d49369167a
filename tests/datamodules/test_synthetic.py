"""Tests for the synthetic benchmark generator (tiny preset, generated once per module)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest
from scipy.stats import spearmanr

from datamodules.synthetic import (
    HELD_OUT_FAMILIES,
    LABEL_COLUMNS,
    PRESETS,
    SPLITS,
    Design,
    encode_mp4,
    generate_benchmark,
    make_clip,
)
from datamodules.synthetic_distort import (
    HELD_OUT_DISTORTIONS,
    HELD_OUT_SOURCES,
    SOURCES,
    TRAIN_SOURCES,
    latent_quality,
)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny benchmark made with 2 worker processes."""
    return generate_benchmark(tmp_path_factory.mktemp("syn_a"), seed=3, size="tiny", workers=2, progress=False)


@pytest.fixture(scope="module")
def rows(bench: Path) -> list[dict]:
    with open(bench, newline="") as f:
        return list(csv.DictReader(f))


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])  # (T, H, W, 3)


def test_labels_columns_splits_and_counts(bench: Path, rows: list[dict]) -> None:
    header = bench.read_text().splitlines()[0].split(",")
    assert tuple(header) == LABEL_COLUMNS
    meta = json.loads((bench.parent / "benchmark.json").read_text())
    assert meta["splits"] == PRESETS["tiny"].counts and set(meta["splits"]) == set(SPLITS)
    assert len(rows) == meta["clips"] == sum(PRESETS["tiny"].counts.values())
    for r in rows:
        assert r["video"].startswith(r["split"] + "/")
        assert len(r["distortions"].split(";")) == len(r["severities"].split(";")) in (1, 2, 3)
        assert 0.0 <= float(r["q"]) <= 1.0
        assert float(r["scale_lo"]) <= float(r["mos"]) <= float(r["scale_hi"])


def test_clips_are_decodable_mp4_with_expected_shape(bench: Path, rows: list[dict]) -> None:
    preset = PRESETS["tiny"]
    for r in rows:
        frames = _frames(bench.parent / r["video"])
        size = preset.alt_size if SPLITS[r["split"]].alt_resolution else preset.size
        assert frames.shape == (preset.frames, *size, 3), r["video"]
        assert frames.std() > 1.0  # real content, not a blank clip


def test_same_seed_is_identical_and_regeneration_is_skipped(bench: Path, rows: list[dict], tmp_path: Path) -> None:
    other = generate_benchmark(tmp_path, seed=3, size="tiny", workers=1, progress=False)
    assert other.read_bytes() == bench.read_bytes()
    video = rows[5]["video"]
    np.testing.assert_array_equal(_frames(other.parent / video), _frames(bench.parent / video))
    stamp = other.stat().st_mtime_ns
    assert generate_benchmark(tmp_path, seed=3, size="tiny", progress=False) == other
    assert other.stat().st_mtime_ns == stamp  # complete benchmark reused, not regenerated


def test_alt_resolution_clip_encodes_byte_identically(tmp_path: Path) -> None:
    # an ood_calibration clip of the default preset (144x192, CRF 38): libx264's mb-tree rate
    # control gave a different bitstream on every encode of it
    names = [make_clip(tmp_path / name, 0, 285, "ood_calibration", "default")["video"] for name in ("a", "b")]
    assert (tmp_path / "a" / names[0]).read_bytes() == (tmp_path / "b" / names[1]).read_bytes()


def test_different_seeds_differ(tmp_path: Path) -> None:
    row_a = make_clip(tmp_path / "a", seed=0, index=0, split="train", size="tiny")
    row_b = make_clip(tmp_path / "b", seed=1, index=0, split="train", size="tiny")
    frames_a = _frames(tmp_path / "a" / row_a["video"])
    frames_b = _frames(tmp_path / "b" / row_b["video"])
    assert not np.array_equal(frames_a, frames_b)
    assert row_a["mos"] != row_b["mos"]


def test_mos_monotone_in_q_within_source(rows: list[dict]) -> None:
    by_source: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append((float(r["q"]), float(r["mos"])))
    checked = 0
    for source, pts in by_source.items():
        if len(pts) >= 6:  # fewer points: one noise swap already drops rho below 0.9
            q, mos = np.array(pts).T
            assert spearmanr(q, mos).statistic > 0.9, source
            checked += 1
        q, mos = np.array(pts).T
        dq, dmos = q[:, None] - q[None, :], mos[:, None] - mos[None, :]
        assert not np.any((dq > 0.15) & (dmos < 0)), source  # clear q gaps are never inverted
    assert checked >= 3
    rng = np.random.default_rng(0)
    q = rng.uniform(0, 1, 200)
    for source in SOURCES.values():  # the rating model itself, on many clips
        mos = [source.rate(v, rng) for v in q]
        assert spearmanr(q, mos).statistic > 0.9, source.name


def test_sources_calibrate_differently() -> None:
    grid = np.linspace(0, 1, 11)
    curves = {name: (s.used[0] + (s.used[1] - s.used[0]) * s.curve_value(grid)) for name, s in SOURCES.items()}
    names = list(curves)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.abs(curves[a] - curves[b]).max() > 0.1, (a, b)


def test_heavier_compression_bigger_cost_smaller_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = np.clip(np.cumsum(rng.integers(-20, 21, (8, 64, 64, 3)), axis=2) + 128, 0, 255).astype(np.uint8)
    encode_mp4(frames, tmp_path / "light.mp4", crf=20)
    encode_mp4(frames, tmp_path / "heavy.mp4", crf=45)
    assert (tmp_path / "light.mp4").stat().st_size > 2 * (tmp_path / "heavy.mp4").stat().st_size
    qs = [latent_quality({"compression": s}, texture=0.5, motion=0.5) for s in (0.1, 0.5, 0.9)]
    assert qs[0] > qs[1] > qs[2]


def test_ood_splits_hold_unseen_factors(rows: list[dict]) -> None:
    train = [r for r in rows if r["split"] in ("train", "test")]
    train_content = {r["content"] for r in train}
    train_distortions = {d for r in train for d in r["distortions"].split(";")}
    assert {r["content"] for r in rows if r["split"] == "ood_content"} <= set(HELD_OUT_FAMILIES)
    assert not train_content & set(HELD_OUT_FAMILIES)
    assert not train_distortions & set(HELD_OUT_DISTORTIONS)
    for r in rows:
        if r["split"] == "ood_distortion":
            assert set(r["distortions"].split(";")) & set(HELD_OUT_DISTORTIONS), r["video"]
    assert {r["source"] for r in train} <= set(TRAIN_SOURCES)
    assert {r["source"] for r in rows if r["split"] == "ood_calibration"} <= set(HELD_OUT_SOURCES)


def test_bad_size_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tiny"):
        generate_benchmark(tmp_path, size="huge")


def test_design_variant_draws_only_what_it_names(tmp_path: Path) -> None:
    design = Design(families=("shapes",), distortions=("blur", "noise"), max_distortions=1, scene_bank=2, train_clips=5)
    labels = generate_benchmark(tmp_path / "v", seed=0, size="tiny", workers=1, progress=False, design=design)
    with open(labels, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sum(r["split"] == "train" for r in rows) == 5
    in_domain = [r for r in rows if r["split"] != "ood_content"]
    assert {r["content"] for r in in_domain} == {"shapes"}
    assert {r["content"] for r in rows if r["split"] == "ood_content"} <= set(HELD_OUT_FAMILIES)
    for r in rows:
        names = r["distortions"].split(";")
        if r["split"] == "ood_distortion":  # one pool distortion may be replaced by a held-out one
            assert len(names) == 1 and set(names) <= set(HELD_OUT_DISTORTIONS)
        else:
            assert len(names) == 1 and set(names) <= {"blur", "noise"}
    meta = json.loads((labels.parent / "benchmark.json").read_text())
    assert meta["design"]["families"] == ["shapes"] and meta["design"]["scene_bank"] == 2
    # the default design regenerates (different settings) rather than reusing the variant
    assert generate_benchmark(tmp_path / "v", seed=0, size="tiny", workers=1, progress=False) == labels
    meta = json.loads((labels.parent / "benchmark.json").read_text())
    assert meta["design"]["families"] is None


def test_scene_bank_repeats_clean_content(tmp_path: Path) -> None:
    design = Design(families=("scene",), distortions=("stutter",), max_distortions=1, scene_bank=1)
    a = make_clip(tmp_path, 0, 0, "train", "tiny", design)
    b = make_clip(tmp_path, 0, 1, "train", "tiny", design)
    assert a["content"] == b["content"] == "scene"
    # stutter only repeats frames: every frame of either clip is a frame of the same clean scene
    fa, fb = _frames(tmp_path / a["video"]), _frames(tmp_path / b["video"])
    assert np.abs(fa[0].astype(int) - fb[0].astype(int)).mean() < 3.0
    other = make_clip(tmp_path / "new", 0, 1, "train", "tiny", Design(families=("scene",), distortions=("stutter",)))
    assert np.abs(fa[0].astype(int) - _frames(tmp_path / "new" / other["video"])[0].astype(int)).mean() > 3.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"families": ("ripples",)}, "ripples"),
        ({"distortions": ("flicker",)}, "flicker"),
        ({"max_distortions": 4}, "max_distortions"),
        ({"scene_bank": -1}, "scene_bank"),
        ({"train_clips": 0}, "train_clips"),
        ({"eval_source": "unit_steep"}, "eval_source"),
    ],
)
def test_bad_design_names_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Design(**kwargs)


def test_cli_named_design_with_an_override(tmp_path: Path) -> None:
    """``--design crisp`` (the demo's) applies its fields; a per-field flag overrides one of them."""
    from datamodules.synthetic import main

    assert (
        main(
            [
                "--out",
                str(tmp_path / "c"),
                "--size",
                "tiny",
                "--design",
                "crisp",
                "--train-clips",
                "3",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    meta = json.loads((tmp_path / "c" / "benchmark.json").read_text())
    assert meta["design"]["families"] == ["shapes"] and meta["design"]["max_distortions"] == 1
    assert meta["design"]["train_clips"] == 3 and meta["splits"]["train"] == 3
    with open(tmp_path / "c" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    in_domain = [r for r in rows if r["split"] in ("train", "val", "test")]
    assert {r["split"] for r in in_domain} == {"train", "val", "test"}
    assert {r["content"] for r in in_domain} == {"shapes"}
    assert all(len(r["distortions"].split(";")) <= 1 for r in in_domain)
    assert {d for r in in_domain for d in r["distortions"].split(";") if d} <= {"blur", "noise", "compression"}
    # crisp: one study rates each test split; the unseen distortion comes on top of a seen one
    assert {r["source"] for r in rows if r["split"] in ("val", "test", "ood_content", "ood_distortion")} == {"acr5"}
    assert {r["source"] for r in rows if r["split"] == "ood_calibration"} == {"unit_steep"}
    assert len({r["source"] for r in rows if r["split"] == "train"}) > 1
    for r in (r for r in rows if r["split"] == "ood_distortion"):
        names = r["distortions"].split(";")
        assert len(names) == 2 and len(set(names) & set(HELD_OUT_DISTORTIONS)) == 1, names
    assert (
        main(
            [
                "--out",
                str(tmp_path / "m"),
                "--size",
                "tiny",
                "--design",
                "crisp",
                "--no-held-out-on-top",
                "--eval-source",
                "expert10",
                "--train-clips",
                "2",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    with open(tmp_path / "m" / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["source"] for r in rows if r["split"] == "test"} == {"expert10"}
    assert all(len(r["distortions"].split(";")) == 1 for r in rows if r["split"] == "ood_distortion")
