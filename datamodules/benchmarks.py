"""Label readers: benchmark label files → :class:`VideoTable` with MOS on one [1, 5] scale.

MOS is oriented higher = better and mapped linearly to [1, 5] from each benchmark's documented
scale (``SCALES``), so margins, the reward's α and the 0.2 draw threshold mean the same everywhere.

``read_benchmark(name, label_file=None, video_root=None, split=None)`` is the one entry point.
``label_file=None`` reads the normalised ``video,mos[,split]`` list bundled in
``datamodules/labels/`` (copied from the public label lists, see its README).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["VideoTable", "LabelFormatError", "SCALES", "BENCHMARKS", "read_benchmark", "to_unit5"]

LABELS_DIR = Path(__file__).resolve().parent / "labels"

#: Documented MOS scale (lo, hi) of each benchmark; all are MOS with higher = better.
SCALES: dict[str, tuple[float, float]] = {
    "konvid1k": (1.0, 5.0), "live_vqc": (0.0, 100.0), "lsvq_train": (0.0, 100.0),
    "lsvq_test": (0.0, 100.0), "lsvq_1080p": (0.0, 100.0), "yt_gaming": (0.0, 100.0),
    "waterloo_4k": (0.0, 100.0), "vdpve": (0.0, 100.0), "youtube_ugc": (1.0, 5.0),
    "cvd2014": (0.0, 100.0), "live_qualcomm": (0.0, 100.0),
}
#: Bundled normalised list and (for LSVQ) split of each named benchmark.
_BUNDLED: dict[str, tuple[str, str | None]] = {
    "konvid1k": ("KoNViD-1k.csv", None), "live_vqc": ("LIVE-VQC.csv", None),
    "lsvq_train": ("LSVQ.csv", "train"), "lsvq_test": ("LSVQ.csv", "test"),
    "lsvq_1080p": ("LSVQ.csv", "test_1080p"), "yt_gaming": ("LIVE-YT-Gaming.csv", None),
    "waterloo_4k": ("Waterloo-IVC-4K.csv", None), "vdpve": ("VDPVE.csv", None),
    "youtube_ugc": ("YouTube-UGC.csv", None), "cvd2014": ("CVD2014.csv", None),
    "live_qualcomm": ("LIVE-Qualcomm.csv", None),
}
BENCHMARKS = sorted([*SCALES, "csv"])


class LabelFormatError(ValueError):
    """A malformed label file; the message names the file and the line."""


@dataclass
class VideoTable:
    """Videos of one benchmark with their MOS (mapped to [1, 5]).

    Attributes:
        benchmark: benchmark (or display) name.
        names: video ids as written in the label file.
        paths: ``video_root / name`` when a root is given, else the name.
        mos: ``(N,)`` float64, higher = better, on [1, 5].
        mos_raw: ``(N,)`` the value as in the label file.
        split: per-row split name.
        missing: names whose file is absent under ``video_root``.
        extra: optional per-row columns (e.g. the synthetic benchmark's source, distortions, q).
    """

    benchmark: str
    names: list[str]
    paths: list[str]
    mos: np.ndarray
    mos_raw: np.ndarray
    split: list[str]
    missing: list[str] = field(default_factory=list)
    extra: dict[str, list] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, idx: Any) -> VideoTable:
        """Rows ``idx`` (indices or boolean mask) as a new table."""
        keep = np.arange(len(self))[np.asarray(idx)]
        pick = [int(k) for k in keep]
        missing = set(self.missing)
        return VideoTable(self.benchmark, [self.names[k] for k in pick],
                          [self.paths[k] for k in pick], self.mos[keep], self.mos_raw[keep],
                          [self.split[k] for k in pick],
                          [self.names[k] for k in pick if self.names[k] in missing],
                          {c: [v[k] for k in pick] for c, v in self.extra.items()})


def to_unit5(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``values`` linearly from ``[lo, hi]`` to ``[1, 5]``.

    >>> to_unit5(np.array([0.0, 50.0, 100.0]), 0, 100).tolist()
    [1.0, 3.0, 5.0]
    """
    if not hi > lo:
        raise ValueError(f"scale must satisfy hi > lo, got ({lo}, {hi})")
    return 1.0 + 4.0 * (np.asarray(values, dtype=np.float64) - lo) / (hi - lo)


def _float(text: str, path: Path, line: int, column: str) -> float:
    try:
        value = float(str(text).replace(",", ".") if str(text).count(",") == 1 and "." not in str(text) else text)
    except (TypeError, ValueError):
        raise LabelFormatError(f"{path}:{line}: column {column!r} is not a number: {text!r}") from None
    if not np.isfinite(value):
        raise LabelFormatError(f"{path}:{line}: column {column!r} is not finite: {text!r}")
    return value


def _read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise LabelFormatError(f"{path}:1: empty label file (no header)")
        rows = [(reader.line_num, row) for row in reader if any((v or "").strip() for v in row.values())]
    return list(reader.fieldnames), rows


def _generic_csv(path: Path, split: str | None, scale: tuple[float, float] | None,
                 name: str) -> VideoTable:
    """``video,mos`` csv; extra columns kept; ``scale_lo/scale_hi`` columns give per-row scales."""
    header, rows = _read_csv_rows(path)
    for col in ("video", "mos"):
        if col not in header:
            raise LabelFormatError(f"{path}:1: missing column {col!r} (header: {header})")
    if split is not None and "split" in header:
        rows = [(ln, r) for ln, r in rows if r.get("split") == split]
        if not rows:
            raise LabelFormatError(f"{path}: no row has split {split!r}")
    names, raw, lo, hi = [], [], [], []
    for ln, row in rows:
        if not (row.get("video") or "").strip():
            raise LabelFormatError(f"{path}:{ln}: empty 'video' field")
        names.append(row["video"].strip())
        raw.append(_float(row["mos"], path, ln, "mos"))
        if "scale_lo" in header and "scale_hi" in header:
            lo.append(_float(row["scale_lo"], path, ln, "scale_lo"))
            hi.append(_float(row["scale_hi"], path, ln, "scale_hi"))
    mos_raw = np.asarray(raw, dtype=np.float64)
    if lo:
        mos = 1.0 + 4.0 * (mos_raw - np.asarray(lo)) / (np.asarray(hi) - np.asarray(lo))
    elif scale is not None:
        mos = to_unit5(mos_raw, *scale)
    elif mos_raw.size and mos_raw.min() >= 1.0 and mos_raw.max() <= 5.0:
        mos = mos_raw.copy()  # documented default: a list already on 1-5
    else:
        raise LabelFormatError(f"{path}: MOS outside [1, 5] and no scale given; pass scale=(lo, hi) "
                               "or add scale_lo/scale_hi columns")
    skip = {"video", "mos", "split"}
    extra = {c: [r.get(c) or "" for _, r in rows] for c in header if c not in skip}
    splits = [r.get("split") or (split or name) for _, r in rows]
    return VideoTable(name, names, list(names), mos, mos_raw, splits, [], extra)


def _attach_root(table: VideoTable, video_root: str | None) -> VideoTable:
    if video_root is None:
        return table
    root = Path(video_root)
    table.paths = [str(root / n) for n in table.names]
    table.missing = [n for n, p in zip(table.names, table.paths) if not Path(p).is_file()]
    if table.names and len(table.missing) == len(table.names):
        raise FileNotFoundError(f"none of the {len(table.names)} videos of {table.benchmark!r} exist "
                                f"under {root} (e.g. {table.paths[0]})")
    return table


def read_benchmark(name: str, label_file: str | None = None, video_root: str | None = None,
                   split: str | None = None, scale: tuple[float, float] | None = None) -> VideoTable:
    """Read a benchmark's labels as a :class:`VideoTable` (MOS mapped to [1, 5]).

    Args:
        name: one of ``BENCHMARKS``.
        label_file: label file; ``None`` reads the normalised list bundled with the package.
        video_root: folder holding the videos; missing files are listed in ``table.missing``.
        split: keep only this split (LSVQ's bundled list, csv files with a ``split`` column).
        scale: ``(lo, hi)`` MOS scale of a ``csv`` list (default: its ``scale_lo/scale_hi``
            columns, or 1–5 when all values lie there).

    Raises:
        ValueError: unknown ``name`` (the message lists the allowed names).
        LabelFormatError: malformed row (file and line named).
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; allowed: {BENCHMARKS}")
    if name == "csv":
        if label_file is None:
            raise ValueError("benchmark 'csv' needs a label_file")
        table = _generic_csv(Path(label_file), split, scale, "csv")
    else:
        table = _named(name, label_file, split)
    return _attach_root(table, video_root)


def _named(name: str, label_file: str | None, split: str | None) -> VideoTable:
    from datamodules import benchmark_formats as formats

    bundled, bundled_split = _BUNDLED[name]
    path = Path(label_file) if label_file is not None else LABELS_DIR / bundled
    if not path.is_file():
        raise FileNotFoundError(f"label file for {name!r} not found: {path}")
    names, raw = formats.read_verbatim(name, path)
    if names is None:  # normalised list
        t = _generic_csv(path, split or bundled_split, SCALES[name], name)
        t.mos = to_unit5(t.mos_raw, *SCALES[name])
        return t
    mos_raw = np.asarray(raw, dtype=np.float64)
    return VideoTable(name, names, list(names), to_unit5(mos_raw, *SCALES[name]), mos_raw,
                      [split or bundled_split or "all"] * len(names), [], {})
