"""The tiny SlowFast's distortion pre-training: the pretext learns, the checkpoint loads as frozen weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from lightning_modules.motion import SlowFastMotionEncoder
from lightning_modules.motion_pretrain import _features, augment_clips, pretrain, read_pretext, save_checkpoint


def _noisy_clips(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat-colour 32-px clips with per-frame noise of a known level in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    level = torch.rand(n, generator=gen)
    base = torch.rand(n, 1, 3, 1, 1, generator=gen) * 160 + 48
    noise = torch.randn(n, 8, 3, 32, 32, generator=gen) * (40 * level).view(n, 1, 1, 1, 1)
    return (base + noise).clamp(0, 255).to(torch.uint8), level[:, None]


def test_pretext_learns_and_checkpoint_reloads_as_frozen_encoder(tmp_path: Path) -> None:
    train_x, train_y = _noisy_clips(256, 0)
    test_x, test_y = _noisy_clips(64, 1)
    encoder, head = pretrain(train_x, train_y, steps=60, batch_size=16, lr=3e-3, seed=0)
    with torch.no_grad():
        pred = head(_features(encoder, test_x))[:, 0]
    assert spearmanr(pred, test_y[:, 0]).statistic > 0.8  # a random encoder + fresh head: ~0

    path = tmp_path / "tiny_slowfast.pt"
    save_checkpoint(encoder, path, {"distortions": ["noise"]})
    loaded = SlowFastMotionEncoder("tiny", weights=str(path))
    random = SlowFastMotionEncoder("tiny")
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert torch.allclose(loaded(test_x), encoder(test_x))  # weights and BatchNorm statistics
    assert not torch.allclose(random(test_x), encoder(test_x))


def test_checkpoint_of_another_variant_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "wrong.pt"
    torch.save({"model_state": {"blocks.0.multipathway_blocks.0.conv.weight": torch.zeros(3, 3, 1, 1, 1)}}, path)
    with pytest.raises(ValueError, match="wrong.pt"):
        SlowFastMotionEncoder("tiny", weights=str(path))


def test_read_pretext_rows_and_errors(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "video,mos,split,distortions,severities\n"
        "train/0.mp4,3,train,blur;noise,0.5;0.25\n"
        "train/1.mp4,4,train,,\n"
        "test/0.mp4,2,test,compression,0.75\n"
    )
    videos, targets = read_pretext(labels, "train")
    assert [v.name for v in videos] == ["0.mp4", "1.mp4"] and videos[0].parent == tmp_path / "train"
    assert targets == [{"blur": 0.5, "noise": 0.25}, {}]
    labels.write_text("video,mos,split,distortions,severities\ntrain/0.mp4,3,train,blur;noise,0.5\n")
    with pytest.raises(ValueError, match="row 2"):
        read_pretext(labels, "train")
    labels.write_text("video,mos,split\ntrain/0.mp4,3,train\n")
    with pytest.raises(ValueError, match="severities"):
        read_pretext(labels, "train")


def test_relative_weights_resolve_against_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """conf/tiny.yaml's repo-relative motion_weights loads from any working directory."""
    from lightning_modules.motion import resolve_weights

    monkeypatch.chdir(tmp_path)
    assert (
        resolve_weights("lightning_modules/motion.py")
        == Path(__file__).resolve().parents[2] / "lightning_modules/motion.py"
    )
    with pytest.raises(FileNotFoundError, match="make motion-weights") as err:
        SlowFastMotionEncoder("tiny", weights="lightning_modules/weights/tiny_missing.pt")
    assert "tiny_missing.pt" in str(err.value)


def test_probe_only_reports_an_existing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from datamodules.synthetic import DESIGNS, generate_benchmark
    from lightning_modules.motion_pretrain import main

    bench = generate_benchmark(tmp_path / "b", seed=3, size="tiny", workers=1, progress=False, design=DESIGNS["crisp"])
    ckpt = tmp_path / "enc.pt"
    save_checkpoint(SlowFastMotionEncoder("tiny"), ckpt, {"test_srcc": {"noise": 0.5}})
    assert main(["--probe-only", "--out", str(ckpt), "--probe-benchmark", str(bench.parent)]) == 0
    out = capsys.readouterr().out
    assert "noise +0.50" in out and "ood_calibration: SRCC vs q" in out
    with pytest.raises(SystemExit):
        main(["--probe-only", "--out", str(ckpt)])  # no benchmark to probe


def test_augment_views_are_symmetries_of_each_clip() -> None:
    """``dihedral`` turns, flips and reverses each clip on its own; ``flip`` draws as before it existed."""
    clips = torch.arange(6 * 4 * 1 * 5 * 5, dtype=torch.float32).view(6, 4, 1, 5, 5)
    views = augment_clips(clips, "dihedral", np.random.default_rng(0))
    symmetries = lambda c: [  # noqa: E731 - the 16 views of one clip
        torch.rot90(t.flip(-1) if f else t, k, dims=(-2, -1)) for t in (c, c.flip(0)) for f in (0, 1) for k in range(4)
    ]
    for clip, view in zip(clips, views):
        assert any(torch.equal(view, s) for s in symmetries(clip))
    assert any(not torch.equal(v, c) for v, c in zip(views, clips))
    # a clip played backwards appears among the draws (time reversal is on)
    draws = augment_clips(clips.repeat(8, 1, 1, 1, 1), "dihedral", np.random.default_rng(1))
    assert any(torch.equal(d[0].sum(), c[-1].sum()) for d, c in zip(draws, clips.repeat(8, 1, 1, 1, 1)))
    # "flip" consumes the generator exactly as the committed encoder's training did
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    flip = torch.as_tensor(rng_b.random(6) < 0.5).view(-1, 1, 1, 1, 1)
    assert torch.equal(augment_clips(clips, "flip", rng_a), torch.where(flip, clips.flip(-1), clips))
    assert rng_a.random() == rng_b.random()
    with pytest.raises(ValueError, match="augment 'spin' not allowed"):
        augment_clips(clips, "spin", np.random.default_rng(0))
    with pytest.raises(ValueError, match="square frames"):
        augment_clips(clips[..., :4], "dihedral", np.random.default_rng(0))
