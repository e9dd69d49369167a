"""Is quality in a synthetic set learnable from pixels, and by which of the tiny model's encoders?

Each probe is trained *pointwise* on the set's training split to regress the latent quality ``q``
(the generator's ground truth, free of the rating sources' calibration) and scored by SRCC against
``q`` on every split. The probes, side by side on the same decoded clips:

* ``hand``: ridge on 13 hand-made statistics (Laplacian energy, gradients, temporal difference,
  saturation, exposure, clipping) of the frames -- how far global low-level statistics go;
* ``cnn``: a 4-layer 2D CNN on one frame plus its temporal difference, random crops and flips --
  what a small convolutional network learns from the pixels in the budget;
* ``tower``: the tiny Qwen3-VL vision tower (the embedded default's, trainable) with a linear head
  on its mean merged token -- what the model's own visual path learns alone;
* ``slowfast``: the tiny SlowFast of the motion path (frozen in the model), here *trained*, with a
  linear head on its mean fast-pathway feature -- whether a trainable motion encoder would carry it;
* ``layers``: no training; a ridge on the mean- and std-pooled activations of each stage of the
  tiny tower at initialisation (patch embedding, each block, merger) -- where the signal is lost.

``--patch-init dct`` gives the tower (``tower``, ``layers``) a structured patch embedding: luma 2D-DCT
basis filters (low frequencies damped, high ones amplified), three temporal-difference and two
chroma filters, and a constant reference channel.

A set on which ``cnn`` ranks but ``tower`` does not points at the vision tower, not at the data;
one on which nothing ranks points at the data (issue 12, docs/learning.md)::

    python benchmarks/learnability_probe.py --data data/synthetic --steps 900

Writes ``benchmarks/results/learnability_probe.json`` (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from datamodules.pair_datasets import DecodeSettings  # noqa: E402
from lightning_modules.motion_pretrain import ridge  # noqa: E402

PROBES = ("hand", "cnn", "tower", "slowfast", "layers")
SPLITS = ("train", "test", "ood_content", "ood_distortion", "ood_calibration")


def hand_features(frames: torch.Tensor) -> list[float]:
    """13 global statistics of ``(T, 3, H, W)`` float frames in [0, 1]."""
    y = 0.299 * frames[:, 0] + 0.587 * frames[:, 1] + 0.114 * frames[:, 2]  # (T, H, W)
    lap = 4 * y[:, 1:-1, 1:-1] - y[:, :-2, 1:-1] - y[:, 2:, 1:-1] - y[:, 1:-1, :-2] - y[:, 1:-1, 2:]
    gx, gy = (y[:, :, 1:] - y[:, :, :-1]).abs(), (y[:, 1:] - y[:, :-1]).abs()
    td = (y[1:] - y[:-1]).abs().mean((1, 2))
    sat = frames.max(1).values - frames.min(1).values
    ratio = lap.abs() / (gx[:, 1:-1, 1:] + gy[:, 1:, 1:-1] + 1e-3)
    stats = [lap.abs().mean(), lap.abs().median(), lap.pow(2).mean().sqrt(), gx.mean() + gy.mean(), td.mean()]
    stats += [(td < 0.002).float().mean(), td.std(), sat.mean(), y.mean(), y.std()]
    stats += [(y > 0.97).float().mean(), (y < 0.03).float().mean(), ratio.mean()]
    return [float(v) for v in stats]


def _dct_basis(n: int) -> torch.Tensor:
    """Orthonormal DCT-II basis ``(n, n)``: row ``u`` is frequency ``u`` over ``n`` samples."""
    k = torch.arange(n, dtype=torch.float32)
    basis = torch.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * np.sqrt(2 / n)
    basis[0] /= np.sqrt(2)
    return basis


def dct_patch_init(vision: nn.Module, reference: float = 1.0) -> int:
    """Structured patch embedding of the tiny tower (see the module docstring); returns channels set."""
    conv = vision.patch_embed.proj
    weight = torch.zeros_like(conv.weight)  # (D, 3, T, P, P)
    width, _, frames, patch, _ = weight.shape
    basis = _dct_basis(patch)
    luma, diff = torch.ones(3) / 3, torch.tensor([-1.0, 1.0])
    high = [(2, 2), (0, 3), (3, 0), (4, 4), (2, 6), (6, 2), (4, 0), (0, 4), (8, 8), (4, 10), (10, 4), (12, 12)]
    high += [(15, 15), (8, 14), (14, 8), (6, 11), (11, 6), (13, 3), (3, 13), (8, 0), (0, 8), (7, 9), (9, 7), (5, 5)]
    channels = [("luma", 0, 0, 0.25), ("luma", 0, 1, 0.5), ("luma", 1, 0, 0.5)]
    channels += [("luma", u, v, 3.0) for u, v in high]
    channels += [("time", 0, 0, 1.0), ("time", 1, 1, 2.0), ("time", 8, 8, 3.0)]
    channels += [("rb", 0, 0, 0.5), ("g", 0, 0, 0.5)]
    channels = channels[: width - 1]
    colour = {"luma": luma, "time": luma, "rb": torch.tensor([1.0, 0.0, -1.0]), "g": torch.tensor([-0.5, 1.0, -0.5])}
    for i, (kind, u, v, gain) in enumerate(channels):
        spatial = basis[u][:, None] * basis[v][None, :] * gain  # (P, P)
        temporal = diff if kind == "time" else torch.full((frames,), 1.0 / frames)
        weight[i] = colour[kind][:, None, None, None] * temporal[None, :, None, None] * spatial[None, None]
    with torch.no_grad():
        conv.weight.copy_(weight)
        if conv.bias is not None:
            conv.bias.zero_()
            conv.bias[width - 1] = reference
    return len(channels)


def scale_preserving_norms(vision: nn.Module, reference: float, channel: int = -1) -> int:
    """Set the tower's LayerNorms so that, with a dominant reference channel, they pass magnitudes.

    With one channel (``channel``) at ``reference`` and the rest small, a LayerNorm's mean and std
    are ~``R k/n`` and ``R sqrt(k/n - (k/n)^2)`` (``k`` reference entries among ``n``, ``k = n/32``
    for the post-shuffle DeepStack norm); gain = that std and bias = that mean on the other channels,
    gain 0 on the reference, make ``LN(x) ~ x``: the patch energy the blocks need is no longer
    normalised away. Returns the number of LayerNorms set.
    """
    width = vision.patch_embed.proj.weight.shape[0]
    count = 0
    with torch.no_grad():
        for module in vision.modules():
            if not isinstance(module, nn.LayerNorm):
                continue
            n = module.normalized_shape[0]
            k = n // width
            frac = k / n
            mean, std = reference * frac, reference * np.sqrt(frac - frac**2)
            module.weight.fill_(std)
            module.bias.fill_(mean)
            ref = torch.arange(n) % width == (channel % width)
            module.weight[ref] = 0.0
            module.bias[ref] = 0.0
            count += 1
    return count


ENERGY_BANDS = {1: range(3, 11), 2: range(11, 27), 30: range(27, 30)}  # target channel -> DCT channels


def energy_block_init(vision: nn.Module, gain: float = 3.0) -> int:
    """Block 0's MLP rectifies DCT channels into shared energy channels (after :func:`dct_patch_init`).

    Hidden units ``+g e_i`` and ``-g e_i`` per source channel ``i``; their GELUs sum to an
    even, energy-like function of ``x_i``, written to one residual channel per band (mid- and
    high-frequency luma, temporal difference: ``ENERGY_BANDS``), so every patch token carries its
    energy along the same direction. Other MLP weights are zeroed. Returns the hidden units used.
    """
    mlp = vision.blocks[0].mlp
    used = 0
    with torch.no_grad():
        mlp.linear_fc1.weight.zero_()
        mlp.linear_fc1.bias.zero_()
        mlp.linear_fc2.weight.zero_()
        mlp.linear_fc2.bias.zero_()
        for target, sources in ENERGY_BANDS.items():
            for i in sources:
                for sign in (1.0, -1.0):
                    mlp.linear_fc1.weight[used, i] = sign * gain
                    mlp.linear_fc2.weight[target, used] = 1.0 / (gain * len(sources))
                    used += 1
    return used


PATCH_INITS = ("random", "dct", "dct-ln", "dct-energy")


def init_tower(vision: nn.Module, patch_init: str, reference: float) -> None:
    """Apply a ``--patch-init`` mode: each later mode adds one step to the one before it."""
    if patch_init not in PATCH_INITS:
        raise ValueError(f"unknown patch init {patch_init!r}; allowed: {PATCH_INITS}")
    steps = PATCH_INITS.index(patch_init)
    if steps >= 1:
        dct_patch_init(vision, reference)
    if steps >= 2:
        scale_preserving_norms(vision, reference)
    if steps >= 3:
        energy_block_init(vision)


def layer_features(vision: nn.Module, processor: Any, clips: dict[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    """Mean- and std-pooled activations of each tower stage, per clip: stage -> path -> vector."""
    acts: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            out = out[0] if isinstance(out, tuple) else out
            acts[name] = out.detach()

        return hook

    stages = {"patch_embed": vision.patch_embed, **{f"block{i}": b for i, b in enumerate(vision.blocks)}}
    stages["merger"] = vision.merger
    handles = [module.register_forward_hook(keep(name)) for name, module in stages.items()]
    feats: dict[str, dict[str, np.ndarray]] = {name: {} for name in stages}
    try:
        with torch.no_grad():
            for path, clip in clips.items():
                out = processor(videos=[clip.frames], return_tensors="pt", do_sample_frames=False)
                vision(out["pixel_values_videos"], grid_thw=out["video_grid_thw"])
                for name in stages:
                    a = acts[name]
                    feats[name][path] = torch.cat([a.mean(0), a.std(0), a.abs().mean(0)]).numpy()
    finally:
        for h in handles:
            h.remove()
    return feats


class SmallCNN(nn.Module):
    """Frame + temporal difference (6 channels) -> quality, global average pooled."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(6, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class Probe:
    """One trainable encoder + head: ``embed(videos, train) -> (N,) prediction``."""

    def __init__(self, params: list[nn.Parameter], predict: Callable[[list[str], bool], torch.Tensor]):
        self.params, self.predict = params, predict


def build_probe(
    name: str,
    clips: dict[str, Any],
    size: int,
    seed: int,
    augment: bool = False,
    patch_init: str = "random",
    reference: float = 1.0,
) -> Probe:
    """The ``cnn``, ``tower`` or ``slowfast`` probe over decoded ``clips`` (path -> Clip).

    ``augment`` (tower): random flips, 90-degree turns and time reversal of the training clips
    (the cnn always trains on random crops and flips).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if name == "cnn":
        frames = {
            v: torch.nn.functional.interpolate(c.frames.float() / 255, size=(size, size), mode="bilinear")
            for v, c in clips.items()
        }
        net, crop = SmallCNN(), size * 3 // 4

        def predict_cnn(videos: list[str], train: bool) -> torch.Tensor:
            xs = []
            for v in videos:
                f = frames[v]
                t = int(rng.integers(0, len(f) - 1)) if train else len(f) // 2 - 1
                x = torch.cat([f[t], f[t + 1] - f[t]], 0)
                if train:
                    i, j = rng.integers(0, size - crop + 1, 2)
                    x = x[:, i : i + crop, j : j + crop]
                    x = x.flip(-1) if rng.random() < 0.5 else x
                xs.append(x)
            return net(torch.stack(xs))

        return Probe(list(net.parameters()), predict_cnn)
    if name == "tower":
        from lightning_modules.backbone import load_backbone

        parts = load_backbone("tiny", dtype="float32", freeze_vision=False, seed=seed)
        vision = parts.model.model.visual
        init_tower(vision, patch_init, reference)
        processor = parts.processor.video_processor
        merge = vision.config.spatial_merge_size**2
        head = nn.Linear(vision.config.out_hidden_size, 1)

        def tower_input(frames: torch.Tensor, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
            if train and augment:  # label-preserving: flips, 90-degree turns (square frames), time reversal
                frames = frames.flip(-1) if rng.random() < 0.5 else frames
                frames = frames.flip(0) if rng.random() < 0.5 else frames
                if frames.shape[-1] == frames.shape[-2]:
                    frames = frames.rot90(int(rng.integers(4)), dims=(-2, -1))
            out = processor(videos=[frames.contiguous()], return_tensors="pt", do_sample_frames=False)
            return out["pixel_values_videos"], out["video_grid_thw"]

        fixed = {v: tower_input(c.frames, False) for v, c in clips.items()}

        def predict_tower(videos: list[str], train: bool) -> torch.Tensor:
            inputs = [tower_input(clips[v].frames, True) if train and augment else fixed[v] for v in videos]
            pixels = torch.cat([i[0] for i in inputs])
            grid = torch.cat([i[1] for i in inputs])
            tokens = vision(pixels, grid_thw=grid).pooler_output
            pooled = torch.stack([t.mean(0) for t in torch.split(tokens, (grid.prod(-1) // merge).tolist())])
            return head(pooled).squeeze(-1)

        return Probe(list(vision.parameters()) + list(head.parameters()), predict_tower)
    if name == "slowfast":
        from lightning_modules.motion import SlowFastMotionEncoder

        encoder = SlowFastMotionEncoder("tiny", seed=seed)
        encoder.requires_grad_(True)
        head = nn.Linear(encoder.out_dim, 1)

        def predict_slowfast(videos: list[str], train: bool) -> torch.Tensor:
            nn.Module.train(encoder, train)  # BatchNorm on batch statistics while training (motion_pretrain)
            motion = torch.stack([clips[v].motion for v in videos])  # (N, T', 3, H, W) uint8
            return head(encoder.encode(motion).mean(1)).squeeze(-1)

        return Probe(list(encoder.parameters()) + list(head.parameters()), predict_slowfast)
    raise ValueError(f"unknown probe {name!r}; allowed: {PROBES}")


def srcc(pred: np.ndarray, q: np.ndarray) -> float:
    return float(spearmanr(pred, q).statistic) if len(q) > 2 and np.ptp(pred) > 0 else float("nan")


def train_probe(
    probe: Probe, rows: dict[str, list[dict]], steps: int, batch: int, lr: float, seed: int
) -> dict[str, float]:
    """AdamW on the MSE to ``q - mean(q)``; returns SRCC vs ``q`` per split at the end."""
    rng = np.random.default_rng(seed)
    train = rows["train"]
    videos, q = [r["path"] for r in train], torch.tensor([r["q"] for r in train], dtype=torch.float32)
    opt = torch.optim.AdamW(probe.params, lr=lr)
    for _ in range(steps):
        idx = rng.integers(0, len(train), batch)
        loss = ((probe.predict([videos[i] for i in idx], True) - (q[idx] - q.mean())) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = {}
    with torch.no_grad():
        for split, split_rows in rows.items():
            preds = torch.cat(
                [
                    probe.predict([r["path"] for r in split_rows[k : k + 32]], False)
                    for k in range(0, len(split_rows), 32)
                ]
            )
            out[split] = srcc(preds.numpy(), np.array([r["q"] for r in split_rows]))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/synthetic", help="synthetic benchmark folder (labels.csv with q)")
    parser.add_argument("--probes", default=",".join(PROBES), help=f"comma-separated subset of {PROBES}")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="frame size of the cnn/tower input")
    parser.add_argument("--motion-size", type=int, default=64, help="frame size of the slowfast input")
    parser.add_argument("--motion-crop", default="native", choices=("resize", "native"), help="data.motion_crop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", action="store_true", help="tower: flips, 90-degree turns, time reversal")
    parser.add_argument(
        "--patch-init",
        default="random",
        choices=list(PATCH_INITS),
        help="tower/layers patch embedding",
    )
    parser.add_argument("--patch-reference", type=float, default=1.0, help="dct: the reference channel's bias")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/learnability_probe.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    probes = [p for p in args.probes.split(",") if p]
    unknown = sorted(set(probes) - set(PROBES))
    if unknown:
        parser.error(f"unknown probes {unknown}; allowed: {list(PROBES)}")
    data = Path(args.data)
    labels = data / "labels.csv"
    if not labels.is_file():
        parser.error(f"{labels} not found; make one: python -m datamodules.synthetic --out {data}")
    with open(labels, newline="") as f:
        table = list(csv.DictReader(f))
    if "q" not in table[0]:
        parser.error(f"{labels} has no 'q' column: the probe needs the synthetic generator's latent quality")
    start = time.perf_counter()
    decode = DecodeSettings(args.frames, 16, args.size, args.motion_size, 4, "auto", 0, motion_crop=args.motion_crop)
    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    clips = {}
    for r in table:
        if r["split"] not in rows:
            continue
        path = str(data / r["video"])
        clips[path] = decode.load(path)
        rows[r["split"]].append({"path": path, "q": float(r["q"])})
    rows = {s: v for s, v in rows.items() if v}
    decode_s = time.perf_counter() - start
    results: dict[str, dict[str, Any]] = {}
    for name in probes:
        t0 = time.perf_counter()
        if name == "hand":
            feats = {p: hand_features(c.frames.float() / 255) for p, c in clips.items()}
            fit = ridge(np.array([feats[r["path"]] for r in rows["train"]]), np.array([r["q"] for r in rows["train"]]))
            scores = {
                s: srcc(fit(np.array([feats[r["path"]] for r in v])), np.array([r["q"] for r in v]))
                for s, v in rows.items()
            }
        elif name == "layers":
            from lightning_modules.backbone import load_backbone

            parts = load_backbone("tiny", dtype="float32", seed=args.seed)
            vision = parts.model.model.visual
            init_tower(vision, args.patch_init, args.patch_reference)
            stages = layer_features(vision, parts.processor.video_processor, clips)
            scores = {}
            for stage, feats in stages.items():
                fit = ridge(
                    np.array([feats[r["path"]] for r in rows["train"]]), np.array([r["q"] for r in rows["train"]]), 10.0
                )
                for s, v in rows.items():
                    scores[f"{stage}/{s}"] = srcc(
                        fit(np.array([feats[r["path"]] for r in v])), np.array([r["q"] for r in v])
                    )
            results[name] = {"srcc": scores, "seconds": round(time.perf_counter() - t0, 1)}
            for stage in stages:
                print(f"layers {stage}: " + " ".join(f"{s} {scores[f'{stage}/{s}']:+.2f}" for s in rows), flush=True)
            continue
        else:
            probe = build_probe(name, clips, args.size, args.seed, args.augment, args.patch_init, args.patch_reference)
            scores = train_probe(probe, rows, args.steps, args.batch, args.lr, args.seed)
        results[name] = {"srcc": scores, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{name}: " + " ".join(f"{s} {v:+.2f}" for s, v in scores.items()), flush=True)
    record = {
        "data": str(data),
        "benchmark": json.loads((data / "benchmark.json").read_text()) if (data / "benchmark.json").is_file() else None,
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "decode_seconds": round(decode_s, 1),
        "probes": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    header = "| probe | " + " | ".join(rows) + " | seconds |"
    print("\n" + header + "\n|" + "---|" * (len(rows) + 2))
    for name, res in results.items():
        labels = [k.split("/")[0] for k in res["srcc"] if k.endswith("/train")] if name == "layers" else [""]
        for label in labels:
            prefix = f"{label}/" if label else ""
            cells = " | ".join(f"{res['srcc'][prefix + s]:+.2f}" for s in rows)
            print(f"| {name}{' ' + label if label else ''} | {cells} | {res['seconds']} |")
    print(f"\n-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
