"""Pre-train the tiny SlowFast (the embedded default's motion encoder) on a distortion pretext.

The paper's SlowFast R50 arrives pre-trained (Kinetics-400) and stays frozen; its fast-pathway
features already say something about how a video moves and looks. The embedded default's tiny
SlowFast is random, and a random frozen encoder says nothing (ridge on its features: train SRCC
0.09, ``docs/learning.md``). This script is the tiny model's stand-in for that pre-training: it
trains the tiny SlowFast, on a synthetic set generated **with another seed than the benchmark**
(so no benchmark clip is seen), to regress the severity of each distortion the set applies
(0 where absent) — a distortion-aware pretext in the spirit of CONTRIQUE / Re-IQA, not the
benchmark's quality: the latent quality ``q``, the masks and the rating sources that turn
severities into MOS are never shown to it; the VersusQ model has to learn those. The checkpoint
then loads as ``model.init_args.motion_weights`` and the encoder stays frozen, as in the paper::

    python -m datamodules.synthetic --out data/pretrain --seed 1 --size small --design crisp --train-clips 2000
    python -m lightning_modules.motion_pretrain --data data/pretrain --out outputs/motion/tiny_slowfast.pt

Prints and stores (``<out>.json``) the per-distortion SRCC of the predicted severities on the
pre-training set's held-out ``test`` split.
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

from datamodules.video import load_clip
from lightning_modules.motion import SlowFastMotionEncoder, resolve_weights


def read_pretext(
    label_file: str | Path, split: str, pretext: str = "severity"
) -> tuple[list[Path], list[dict[str, float]]]:
    """Video paths and targets of one split of a synthetic ``labels.csv``.

    ``pretext="severity"``: ``{distortion: severity}`` per clip; ``"quality"``: ``{"q": latent quality}``.

    Raises:
        ValueError: the file lacks the generator's ``distortions``/``severities`` columns, or a
            row's lists do not pair up (the message names the file and the row).
    """
    label_file = Path(label_file)
    videos, targets = [], []
    with open(label_file, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"video", "split", "distortions", "severities"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{label_file}: no {sorted(missing)} column(s); make it with python -m datamodules.synthetic"
            )
        for row_number, row in enumerate(reader, start=2):
            if row["split"] != split:
                continue
            names = [n for n in row["distortions"].split(";") if n]
            values = [v for v in row["severities"].split(";") if v]
            if len(names) != len(values):
                raise ValueError(
                    f"{label_file} row {row_number}: {len(names)} distortions but {len(values)} severities"
                )
            try:
                targets.append(
                    {n: float(v) for n, v in zip(names, values)} if pretext == "severity" else {"q": float(row["q"])}
                )
            except ValueError as err:
                raise ValueError(
                    f"{label_file} row {row_number}: bad {pretext} target {row.get('q') if pretext == 'quality' else row['severities']!r}"
                ) from err
            videos.append(label_file.parent / row["video"])
    if not videos:
        raise ValueError(f"{label_file}: no rows with split={split!r}")
    return videos, targets


def _features(encoder: SlowFastMotionEncoder, motion: torch.Tensor) -> torch.Tensor:
    """Clip features ``(N, C)``: the mean of the encoder's motion tokens, with gradients."""
    return encoder.encode(motion).mean(1)


def ridge(x_train: np.ndarray, y_train: np.ndarray, alpha: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    """Standardised ridge regression; returns the predictor."""
    mu, sd = x_train.mean(0), x_train.std(0) + 1e-9

    def design(x: np.ndarray) -> np.ndarray:
        return np.c_[(x - mu) / sd, np.ones(len(x))]

    a = design(x_train)
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ y_train)
    return lambda x: design(x) @ w


def pretrain(
    train_motion: torch.Tensor,
    train_targets: torch.Tensor,
    steps: int,
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    log_every: int = 0,
    augment: str = "dihedral",
) -> tuple[SlowFastMotionEncoder, nn.Linear]:
    """AdamW on the severity MSE; BatchNorm on batch statistics while training, then frozen.

    Args:
        train_motion: ``(N, T', 3, H, W)`` uint8 motion clips.
        train_targets: ``(N, K)`` severities (0 where a distortion is absent).
        augment: label-preserving views of a clip (``augment_clips``): ``"flip"`` (horizontal
            flips) or ``"dihedral"`` (the 8 flips/rotations of a square frame x time reversal).

    Returns:
        The encoder (eval mode, frozen; running statistics from the training batches) and the head.
    """
    torch.manual_seed(seed)
    encoder = SlowFastMotionEncoder("tiny", seed=seed)
    encoder.requires_grad_(True)
    head = nn.Linear(encoder.out_dim, train_targets.shape[1])
    params = list(encoder.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    centre = train_targets.mean(0)
    nn.Module.train(encoder, True)  # the encoder's own train() keeps eval mode (frozen use)
    for step in range(1, steps + 1):
        idx = torch.as_tensor(rng.integers(0, len(train_motion), batch_size))
        clips = augment_clips(train_motion[idx], augment, rng)
        loss = ((head(_features(encoder, clips)) - (train_targets[idx] - centre)) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if log_every and step % log_every == 0:
            print(f"step {step:5d}  loss {loss.item():.4f}", flush=True)
    encoder.requires_grad_(False)
    encoder.eval()
    return encoder, head


AUGMENTS = ("flip", "dihedral")


def augment_clips(clips: torch.Tensor, augment: str, rng: np.random.Generator) -> torch.Tensor:
    """Random label-preserving views of ``(B, T, C, H, W)`` clips, one draw per clip.

    The synthetic distortions (blur, noise, the codec's 8x8 blocks, frame drops) cover the whole
    clip and have no orientation or time direction, so a flip, a quarter turn or playing the clip
    backwards leaves every severity unchanged. ``"flip"``: horizontal flips; ``"dihedral"``: any of
    the 8 symmetries of the square frame, and time reversal (16 views).
    """
    if augment not in AUGMENTS:
        raise ValueError(f"augment {augment!r} not allowed; choose from {list(AUGMENTS)}")
    flip = torch.as_tensor(rng.random(len(clips)) < 0.5).view(-1, 1, 1, 1, 1)
    clips = torch.where(flip, clips.flip(-1), clips)
    if augment == "flip":
        return clips
    if clips.shape[-1] != clips.shape[-2]:
        raise ValueError(f"augment 'dihedral' needs square frames, got {tuple(clips.shape[-2:])}")
    turns, backwards = rng.integers(0, 4, len(clips)), rng.random(len(clips)) < 0.5
    return torch.stack(
        [
            torch.rot90(clip.flip(0) if back else clip, int(k), dims=(-2, -1))
            for clip, k, back in zip(clips, turns, backwards)
        ]
    )


@torch.no_grad()
def score(
    encoder: SlowFastMotionEncoder, head: nn.Linear, motion: torch.Tensor, targets: torch.Tensor, names: Sequence[str]
) -> dict[str, float]:
    """SRCC of each predicted severity against the truth, over the clips where it is present or not."""
    preds = torch.cat([head(_features(encoder, motion[k : k + 32])) for k in range(0, len(motion), 32)])
    return {n: float(spearmanr(preds[:, i], targets[:, i]).statistic) for i, n in enumerate(names)}


@torch.no_grad()
def linear_probe(
    encoder: SlowFastMotionEncoder,
    label_file: str | Path,
    motion_size: int,
    motion_frames: int,
    alpha: float = 10.0,
    motion_crop: str = "resize",
) -> dict[str, dict[str, float]]:
    """What the frozen encoder's tokens carry: a ridge on them, fitted on a benchmark's train split.

    Features per clip: mean and std over the motion tokens (``encoder(clip)``, as the LLM gets
    them). Fitted to the latent quality ``q`` of the ``train`` rows; SRCC of the fit against ``q``
    and against the (normalised) MOS on every split. Reporting only -- nothing is trained on it.
    """
    from datamodules.benchmarks import read_label_csv

    label_file = Path(label_file)
    with open(label_file, newline="") as f:
        splits = list(dict.fromkeys(r["split"] for r in csv.DictReader(f)))
    feats, tables = {}, {}
    for split in splits:
        table = read_label_csv(label_file, split, split=split)
        if "q" not in table.extra:
            raise ValueError(f"{label_file}: no 'q' column (the synthetic generator's latent quality)")
        motion = _load([label_file.parent / n for n in table.names], motion_size, motion_frames, motion_crop)
        tokens = torch.cat([encoder(motion[k : k + 32]) for k in range(0, len(motion), 32)])  # (N, T', C)
        feats[split], tables[split] = torch.cat([tokens.mean(1), tokens.std(1)], 1).double().numpy(), table
    fit = ridge(feats["train"], np.asarray(tables["train"].extra["q"], dtype=float), alpha)
    out = {}
    for split, table in tables.items():
        pred = fit(feats[split])
        out[split] = {
            "srcc_q": float(spearmanr(pred, table.extra["q"]).statistic),
            "srcc_mos": float(spearmanr(pred, table.mos).statistic),
            "q_vs_mos": float(spearmanr(table.extra["q"], table.mos).statistic),  # the ceiling MOS allows
        }
    return out


def save_checkpoint(encoder: SlowFastMotionEncoder, path: str | Path, meta: dict[str, Any]) -> None:
    """Write the trunk as a ``create_slowfast`` state dict (``blocks.i.*``), as the R50 zoo file has it."""
    state = {f"blocks.{k}": v for k, v in encoder.trunk.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state": state, "variant": "tiny", "pretext": meta}, path)


def _load(videos: Sequence[Path], size: int, frames: int, crop: str = "resize") -> torch.Tensor:
    return torch.stack(
        [
            load_clip(v, num_frames=1, motion_frames=frames, size=32, motion_size=size, motion_crop=crop).motion
            for v in videos
        ]
    )


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="synthetic set made with another --seed than the benchmark (required to train)")
    ap.add_argument("--out", required=True, help="checkpoint path (.pt); <out>.json gets the held-out scores")
    ap.add_argument(
        "--pretext",
        default="severity",
        choices=("severity", "quality"),
        help="severity: each distortion's severity (default); quality: the generator's latent quality q",
    )
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--motion-size", type=int, default=64, help="must match data.motion_size of the runs")
    ap.add_argument(
        "--motion-crop", default="native", choices=("resize", "native"), help="must match data.motion_crop of the runs"
    )
    ap.add_argument("--motion-frames", type=int, default=16, help="model.motion_frames (held-out scores, probe)")
    ap.add_argument(
        "--train-frames",
        type=int,
        help="frames of the pre-training clips (default: --motion-frames; the encoder is convolutional in time)",
    )
    ap.add_argument(
        "--augment",
        default="dihedral",
        choices=AUGMENTS,
        help="dihedral (default): flips, quarter turns, time reversal (square crops); flip: horizontal flips only",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--probe-benchmark",
        help="synthetic benchmark folder: report a ridge on the frozen tokens (fit on its train split) per split",
    )
    ap.add_argument(
        "--probe-only", action="store_true", help="train nothing: load --out and report the --probe-benchmark ridge"
    )
    return ap


def _probe_only(args: argparse.Namespace) -> int:
    """``--probe-only``: the ridge probe of an existing checkpoint (make demo's shipped encoder)."""
    start = time.perf_counter()
    encoder = SlowFastMotionEncoder("tiny", weights=args.out)
    probe = linear_probe(
        encoder,
        Path(args.probe_benchmark) / "labels.csv",
        args.motion_size,
        args.motion_frames,
        motion_crop=args.motion_crop,
    )
    pretext = torch.load(resolve_weights(args.out), map_location="cpu", weights_only=False).get("pretext", {})
    record = {
        "test_srcc": pretext.get("test_srcc", {}),
        "linear_probe": {"benchmark": args.probe_benchmark, **probe},
        "seconds": {"total": round(time.perf_counter() - start, 1)},
    }
    _report(record, args.out)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Pre-train, score, save; 0 on success."""
    ap = _parser()
    args = ap.parse_args(argv)
    if args.probe_only:
        if not args.probe_benchmark:
            ap.error("--probe-only needs --probe-benchmark DIR")
        return _probe_only(args)
    if not args.data:
        ap.error("--data DIR is required to pre-train (or --probe-only with --probe-benchmark)")
    labels = Path(args.data) / "labels.csv"
    if not labels.is_file():
        ap.error(
            f"{labels} not found; make it: python -m datamodules.synthetic --out {args.data} --seed 1 --size small --design crisp"
        )
    start = time.perf_counter()
    train_videos, train_sev = read_pretext(labels, "train", args.pretext)
    test_videos, test_sev = read_pretext(labels, "test", args.pretext)
    names = sorted({n for s in train_sev for n in s})
    as_matrix = lambda rows: torch.tensor([[s.get(n, 0.0) for n in names] for s in rows], dtype=torch.float32)  # noqa: E731
    train_motion = _load(train_videos, args.motion_size, args.train_frames or args.motion_frames, args.motion_crop)
    test_motion = _load(test_videos, args.motion_size, args.motion_frames, args.motion_crop)
    decoded = time.perf_counter() - start
    encoder, head = pretrain(
        train_motion,
        as_matrix(train_sev),
        args.steps,
        args.batch_size,
        args.lr,
        args.seed,
        log_every=max(args.steps // 10, 1),
        augment=args.augment,
    )
    scores = score(encoder, head, test_motion, as_matrix(test_sev), names)
    meta = Path(args.data) / "benchmark.json"
    record = {
        "data": str(args.data),
        # the pre-training set's generator seed: a benchmark of the same seed would share clips
        "data_seed": json.loads(meta.read_text()).get("seed") if meta.is_file() else None,
        "settings": {k: v for k, v in vars(args).items() if k not in ("data", "out")},
        "distortions": names,
        "train_clips": len(train_videos),
        "test_srcc": scores,
        "seconds": {"decode": round(decoded, 1), "total": round(time.perf_counter() - start, 1)},
    }
    if args.probe_benchmark:
        record["linear_probe"] = {"benchmark": args.probe_benchmark}
        record["linear_probe"].update(
            linear_probe(
                encoder,
                Path(args.probe_benchmark) / "labels.csv",
                args.motion_size,
                args.motion_frames,
                motion_crop=args.motion_crop,
            )
        )
        record["seconds"]["total"] = round(time.perf_counter() - start, 1)
    save_checkpoint(encoder, args.out, record)
    Path(f"{args.out}.json").write_text(json.dumps(record, indent=2) + "\n")
    _report(record, args.out)
    return 0


def _report(record: dict[str, Any], out: str) -> None:
    if record["test_srcc"]:
        print("held-out severity SRCC: " + "  ".join(f"{n} {v:+.2f}" for n, v in record["test_srcc"].items()))
    for split, r in record.get("linear_probe", {}).items():
        if isinstance(r, dict):
            print(
                f"ridge on the frozen tokens, {split:>16}: SRCC vs q {r['srcc_q']:+.2f}, vs MOS {r['srcc_mos']:+.2f} "
                f"(q vs MOS {r['q_vs_mos']:+.2f})"
            )
    print(f"-> {out} ({record['seconds']['total']} s)")


if __name__ == "__main__":
    sys.exit(main())
