"""benchmarks/learnability_probe.py: pointwise probes of a synthetic set's learnability."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks import learnability_probe as lp
from datamodules.synthetic import generate_benchmark


def test_ridge_recovers_a_linear_target() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = x @ np.array([1.0, -2.0, 0.0, 0.5, 0.0]) + 3.0
    fit = lp.ridge(x[:150], y[:150], alpha=1e-6)
    assert np.abs(fit(x[150:]) - y[150:]).max() < 1e-3


def test_hand_features_see_noise_and_blur() -> None:
    rng = np.random.default_rng(0)
    clean = torch.tensor(rng.uniform(0.3, 0.7, (4, 3, 32, 32)), dtype=torch.float32)
    smooth = torch.nn.functional.avg_pool2d(clean, 5, 1, 2)
    lap_clean, lap_smooth = lp.hand_features(clean)[0], lp.hand_features(smooth)[0]
    assert lap_smooth < 0.5 * lap_clean  # Laplacian energy falls with blur


@pytest.mark.parametrize("probe", ["cnn", "tower", "slowfast"])
def test_probe_trains_and_scores_every_split(tmp_path: Path, probe: str) -> None:
    data = generate_benchmark(tmp_path / "syn", seed=0, size="tiny", workers=1, progress=False).parent
    out = tmp_path / "probe.json"
    args = ["--data", str(data), "--probes", f"hand,{probe}", "--steps", "2", "--batch", "4", "--out", str(out)]
    assert lp.main(args + (["--augment"] if probe == "tower" else [])) == 0
    record = json.loads(out.read_text())
    assert set(record["probes"]) == {"hand", probe}
    for res in record["probes"].values():
        assert set(res["srcc"]) == {"train", "test", "ood_content", "ood_distortion", "ood_calibration"}
        assert all(v is None or -1.0 <= v <= 1.0 or np.isnan(v) for v in res["srcc"].values())


def test_missing_labels_and_unknown_probe_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        lp.main(["--data", str(tmp_path / "none")])
    assert "python -m datamodules.synthetic" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        lp.main(["--data", str(tmp_path), "--probes", "resnet"])
    assert "resnet" in capsys.readouterr().err


def test_dct_patch_init_sets_orthogonal_frequency_filters() -> None:
    from lightning_modules.backbone import load_backbone

    vision = load_backbone("tiny", dtype="float32").model.model.visual
    set_channels = lp.dct_patch_init(vision, reference=5.0)
    conv = vision.patch_embed.proj
    width = conv.weight.shape[0]
    assert set_channels == width - 1 and conv.bias[-1].item() == 5.0 and not conv.bias[:-1].any()
    # a flat grey patch excites only the DC (and reference) channel; a checkerboard only high frequencies
    patch = conv.weight.shape[-1]
    flat = torch.full((1, 3, 2, patch, patch), 0.5)
    checker = (torch.arange(patch)[:, None] + torch.arange(patch)[None, :]) % 2 * 2.0 - 1.0
    fine = checker.expand(1, 3, 2, patch, patch)
    out_flat = conv(flat).flatten()[:-1]
    out_fine = conv(fine).flatten()[:-1]
    assert out_flat[0].abs() > 0.1 and out_flat[1:].abs().max() < 1e-5
    assert out_fine[:3].abs().max() < 1e-5 and out_fine.abs().max() > 0.1


def test_layers_probe_scores_every_stage(tmp_path: Path) -> None:
    data = generate_benchmark(tmp_path / "syn", seed=0, size="tiny", workers=1, progress=False).parent
    out = tmp_path / "layers.json"
    assert lp.main(["--data", str(data), "--probes", "layers", "--patch-init", "dct", "--out", str(out)]) == 0
    scores = json.loads(out.read_text())["probes"]["layers"]["srcc"]
    stages = {k.split("/")[0] for k in scores}
    assert stages == {"patch_embed", "block0", "block1", "merger"}
    assert len(scores) == 4 * 5


def test_scale_preserving_norms_pass_magnitudes_next_to_a_reference_channel() -> None:
    from lightning_modules.backbone import load_backbone

    vision = load_backbone("tiny", dtype="float32").model.model.visual
    assert lp.scale_preserving_norms(vision, reference=50.0) == 6  # 2 blocks x 2, merger, DeepStack merger
    x = torch.zeros(3, 32)
    x[:, :-1] = torch.randn(3, 31) * 0.5
    x[:, -1] = 50.0
    centred = lambda t: t - t.mean(-1, keepdim=True)  # noqa: E731  (LN still removes the vector's mean)
    out = vision.blocks[0].norm1(x)
    assert torch.allclose(centred(out[:, :-1]), centred(x[:, :-1]), atol=0.05) and out[:, -1].abs().max() < 1e-6
    wide = x.repeat(1, 4)  # the post-shuffle DeepStack norm sees 4 patches (4 reference entries)
    out = vision.deepstack_merger_list[0].norm(wide)
    keep = torch.arange(128) % 32 != 31
    assert torch.allclose(centred(out[:, keep]), centred(wide[:, keep]), atol=0.05)


def test_energy_block_writes_an_even_function_of_each_band() -> None:
    from lightning_modules.backbone import load_backbone

    vision = load_backbone("tiny", dtype="float32").model.model.visual
    assert lp.energy_block_init(vision) == 2 * sum(len(v) for v in lp.ENERGY_BANDS.values())
    mlp = vision.blocks[0].mlp
    x = torch.zeros(2, 32)
    x[0, 12], x[1, 12] = 1.5, -1.5  # one high-frequency coefficient, both signs
    out = mlp(x)
    assert torch.allclose(out[0], out[1], atol=1e-6)  # even in the coefficient's sign
    assert out[0, 2] > 0.05 and out[0, 1].abs() < 1e-6 and out[0, 30].abs() < 1e-6  # only its band's channel
