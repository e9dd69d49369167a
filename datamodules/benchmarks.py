"""Label readers: benchmark label files → :class:`VideoTable` with MOS on one [1, 5] scale.

MOS is oriented higher = better and mapped linearly to [1, 5] from each benchmark's documented
scale (:data:`SCALES`), so margins, the reward's α and the 0.2 draw threshold mean the same
everywhere. Every saved benchmark list is MOS (none is DMOS), so no orientation flip is needed.

``read_benchmark(name, label_file=None, video_root=None, split=None)`` is the one entry point.
``label_file=None`` reads the normalised ``video,mos[,split]`` list bundled in
``datamodules/labels/`` (copied from public label lists, see its README); otherwise the format of
the file is detected (:mod:`datamodules.benchmark_formats`), so each name accepts each of its
verbatim files as well as a normalised list.

The generic ``csv`` reader (users' own lists and the synthetic benchmark) reads ``video,mos`` plus
any extra columns (kept in ``VideoTable.extra``). Its MOS scale comes from, in this order:

1. ``scale_lo`` / ``scale_hi`` columns (per row; the synthetic benchmark's rating sources);
2. a ``scale`` column written ``lo-hi``, ``lo:hi`` or ``lo..hi`` (per row);
3. the ``scale=(lo, hi)`` argument;
4. 1–5 when **every** value lies in [1, 5] (the common ACR scale);

otherwise it is an error: a scale is never guessed from the data. A value outside its declared
scale is an error too (wrong scale).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.benchmark_formats import LabelFormatError, read_verbatim

__all__ = ["VideoTable", "LabelFormatError", "SCALES", "BENCHMARKS", "read_benchmark", "read_label_csv", "to_unit5"]

LABELS_DIR = Path(__file__).resolve().parent / "labels"

#: Documented MOS scale ``(lo, hi)`` of each benchmark (labels README); all are MOS, higher = better.
#: CVD2014's *realigned* MOS extends its nominal 0–100 scale below 0 (lowest: −6.5), so its lower
#: bound is −6.5: the map stays linear (correlations equal those on the raw MOS) and inside [1, 5].
SCALES: dict[str, tuple[float, float]] = {
    "konvid1k": (1.0, 5.0),
    "live_vqc": (0.0, 100.0),
    "lsvq_train": (0.0, 100.0),
    "lsvq_test": (0.0, 100.0),
    "lsvq_1080p": (0.0, 100.0),
    "yt_gaming": (0.0, 100.0),
    "waterloo_4k": (0.0, 100.0),
    "vdpve": (0.0, 100.0),
    "youtube_ugc": (1.0, 5.0),
    "cvd2014": (-6.5, 100.0),
    "live_qualcomm": (0.0, 100.0),
}
#: Bundled normalised list and (for LSVQ) split of each named benchmark.
_BUNDLED: dict[str, tuple[str, str | None]] = {
    "konvid1k": ("KoNViD-1k.csv", None),
    "live_vqc": ("LIVE-VQC.csv", None),
    "lsvq_train": ("LSVQ.csv", "train"),
    "lsvq_test": ("LSVQ.csv", "test"),
    "lsvq_1080p": ("LSVQ.csv", "test_1080p"),
    "yt_gaming": ("LIVE-YT-Gaming.csv", None),
    "waterloo_4k": ("Waterloo-IVC-4K.csv", None),
    "vdpve": ("VDPVE.csv", None),
    "youtube_ugc": ("YouTube-UGC.csv", None),
    "cvd2014": ("CVD2014.csv", None),
    "live_qualcomm": ("LIVE-Qualcomm.csv", None),
}
BENCHMARKS: list[str] = sorted([*SCALES, "csv"])
_SCALE_TEXT = re.compile(r"\s*(-?\d+(?:\.\d*)?)\s*(?:-|:|\.\.|–)\s*(-?\d+(?:\.\d*)?)\s*")
_TOL = 1e-6


@dataclass
class VideoTable:
    """Videos of one benchmark with their MOS (mapped to [1, 5]).

    Attributes:
        benchmark: benchmark (or display) name.
        names: video ids as written in the label file.
        paths: ``video_root / name`` when a root is given, else the name.
        mos: ``(N,)`` float64, higher = better, on [1, 5] (nan where unknown, predict only).
        mos_raw: ``(N,)`` the value as in the label file.
        split: per-row split name.
        missing: names whose file is absent under ``video_root``.
        extra: optional per-row columns (e.g. the synthetic benchmark's source, distortions, q;
            LSVQ's official ``is_valid`` flag).
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
        pick = [int(k) for k in np.arange(len(self))[np.asarray(idx)]]
        missing = set(self.missing)
        return VideoTable(
            self.benchmark,
            [self.names[k] for k in pick],
            [self.paths[k] for k in pick],
            self.mos[pick],
            self.mos_raw[pick],
            [self.split[k] for k in pick],
            [self.names[k] for k in pick if self.names[k] in missing],
            {c: [v[k] for k in pick] for c, v in self.extra.items()},
        )


def to_unit5(values: np.ndarray, lo: float | np.ndarray, hi: float | np.ndarray) -> np.ndarray:
    """Map ``values`` linearly from ``[lo, hi]`` to ``[1, 5]`` (``lo``/``hi`` may be per value).

    >>> to_unit5(np.array([0.0, 50.0, 100.0]), 0, 100).tolist()
    [1.0, 3.0, 5.0]
    """
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    if not np.all(hi > lo):
        raise ValueError(f"a scale must satisfy hi > lo, got ({lo}, {hi})")
    return 1.0 + 4.0 * (np.asarray(values, dtype=np.float64) - lo) / (hi - lo)


def _float(text: str | None, path: Path, line: int, column: str) -> float:
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LabelFormatError(f"{path}:{line}: column {column!r} is not a number: {text!r}") from None
    if not np.isfinite(value):
        raise LabelFormatError(f"{path}:{line}: column {column!r} is not finite: {text!r}")
    return value


def missing_labels_hint(path: Path) -> str:
    """What makes a missing label file: the synthetic generator for a synthetic set, else nothing.

    >>> missing_labels_hint(Path("data/synthetic/labels.csv"))
    '; the synthetic benchmark is generated: python -m datamodules.synthetic --out data/synthetic --seed 0 --size small --design crisp (make demo runs it)'
    >>> missing_labels_hint(Path("lsvq/labels_test.csv"))
    ''
    """
    if "synthetic" not in Path(path).parent.name:
        return ""
    return (
        f"; the synthetic benchmark is generated: python -m datamodules.synthetic --out "
        f"{Path(path).parent.as_posix()} --seed 0 --size small --design crisp (make demo runs it)"
    )


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and non-empty rows (with their line numbers) of a comma-separated file."""
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}{missing_labels_hint(path)}")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise LabelFormatError(f"{path}:1: empty label file (no header)")
        rows = [(reader.line_num, r) for r in reader if any(isinstance(v, str) and v.strip() for v in r.values())]
        header = [h.strip() for h in reader.fieldnames]
    return header, [(ln, {k.strip(): (v or "").strip() for k, v in r.items() if k}) for ln, r in rows]


def _row_scales(
    path: Path, header: list[str], rows: list[tuple[int, dict[str, str]]]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-row ``(lo, hi)`` from ``scale_lo/scale_hi`` or ``scale`` columns (None: no columns)."""
    if "scale_lo" in header and "scale_hi" in header:
        lo = [_float(r["scale_lo"], path, ln, "scale_lo") for ln, r in rows]
        hi = [_float(r["scale_hi"], path, ln, "scale_hi") for ln, r in rows]
    elif "scale" in header:
        lo, hi = [], []
        for ln, r in rows:
            m = _SCALE_TEXT.fullmatch(r["scale"])
            if m is None:
                raise LabelFormatError(
                    f"{path}:{ln}: column 'scale' must read 'lo-hi', 'lo:hi' or 'lo..hi', got {r['scale']!r}"
                )
            lo.append(float(m.group(1)))
            hi.append(float(m.group(2)))
    else:
        return None
    for ln, a, b in zip((ln for ln, _ in rows), lo, hi):
        if not b > a:
            raise LabelFormatError(f"{path}:{ln}: scale must satisfy hi > lo, got ({a}, {b})")
    return np.asarray(lo), np.asarray(hi)


def _map_mos(
    path: Path,
    lines: list[int] | None,
    raw: np.ndarray,
    scales: tuple | None,
    scale: tuple[float, float] | None,
    require_scale: bool,
) -> np.ndarray:
    """Raw MOS → [1, 5] from the scale rules of the module docstring."""
    known = np.isfinite(raw)
    if scales is None and scale is None:
        if not known.any() or (raw[known].min() >= 1.0 and raw[known].max() <= 5.0):
            scale = (1.0, 5.0)
        elif require_scale:
            raise LabelFormatError(
                f"{path}: MOS spans [{raw[known].min():g}, {raw[known].max():g}], outside 1-5, and no "
                "scale is given: pass scale=(lo, hi) or add scale_lo/scale_hi (or 'scale') columns"
            )
        else:
            return np.full_like(raw, np.nan)
    lo, hi = scales if scales is not None else scale  # type: ignore[misc]
    mos = to_unit5(raw, lo, hi)
    bad = np.flatnonzero(known & ((mos < 1.0 - _TOL) | (mos > 5.0 + _TOL)))
    if bad.size:
        k = int(bad[0])
        span = (np.broadcast_to(lo, raw.shape)[k], np.broadcast_to(hi, raw.shape)[k])
        where = f":{lines[k]}" if lines is not None else f": row {k + 1}"
        raise LabelFormatError(f"{path}{where}: MOS {raw[k]:g} lies outside its scale {span}")
    return np.clip(mos, 1.0, 5.0)


def _check_names(path: Path, rows: list[tuple[int, dict[str, str]]]) -> list[str]:
    names: list[str] = []
    first: dict[str, int] = {}
    for ln, r in rows:
        name = r.get("video", "")
        if not name:
            raise LabelFormatError(f"{path}:{ln}: empty 'video' field")
        if name in first:
            raise LabelFormatError(f"{path}:{ln}: video {name!r} already listed on line {first[name]}")
        first[name] = ln
        names.append(name)
    return names


def read_label_csv(
    path: str | Path,
    name: str = "csv",
    split: str | None = None,
    scale: tuple[float, float] | None = None,
    require_scale: bool = True,
    require_mos: bool = True,
) -> VideoTable:
    """Read a ``video,mos[,split][,...]`` csv (extra columns go to ``extra``).

    Args:
        path: the csv file.
        name: benchmark name stored in the table.
        split: keep only rows whose ``split`` column equals it (error if the file has no such
            column or no such row).
        scale: ``(lo, hi)`` of the ``mos`` column when the file has no scale columns.
        require_scale: when no scale is known and values leave [1, 5], raise (default) or return
            ``mos`` as nan (predict lists: the raw values are kept in ``mos_raw``).
        require_mos: if False, the ``mos`` column may be absent or blank (nan).

    Raises:
        LabelFormatError: malformed file or row (file and line named).
    """
    path = Path(path)
    header, rows = _read_rows(path)
    needed = ("video", "mos") if require_mos else ("video",)
    for col in needed:
        if col not in header:
            raise LabelFormatError(f"{path}:1: missing column {col!r} (header: {header})")
    if split is not None:
        if "split" not in header:
            raise LabelFormatError(f"{path}:1: split={split!r} asked but the file has no 'split' column")
        rows = [(ln, r) for ln, r in rows if r.get("split") == split]
        if not rows:
            raise LabelFormatError(f"{path}: no row has split {split!r}")
    names = _check_names(path, rows)
    raw = np.asarray(
        [_float(r["mos"], path, ln, "mos") if r.get("mos") or require_mos else np.nan for ln, r in rows],
        dtype=np.float64,
    )
    mos = _map_mos(path, [ln for ln, _ in rows], raw, _row_scales(path, header, rows), scale, require_scale)
    extra = {c: [r.get(c, "") for _, r in rows] for c in header if c not in ("video", "mos", "split")}
    splits = [r.get("split") or split or "all" for _, r in rows]
    return VideoTable(name, names, list(names), mos, raw, splits, [], extra)


def _attach_root(table: VideoTable, video_root: str | None) -> VideoTable:
    if video_root is None:
        return table
    root = Path(video_root)
    table.paths = [str(root / n) for n in table.names]
    table.missing = [n for n, p in zip(table.names, table.paths) if not Path(p).is_file()]
    if table.names and len(table.missing) == len(table.names):
        raise FileNotFoundError(
            f"none of the {len(table.names)} videos of {table.benchmark!r} exist "
            f"under {root} (e.g. {table.paths[0]}); check video_root"
        )
    return table


def read_benchmark(
    name: str,
    label_file: str | None = None,
    video_root: str | None = None,
    split: str | None = None,
    scale: tuple[float, float] | None = None,
) -> VideoTable:
    """Read a benchmark's labels as a :class:`VideoTable` (MOS mapped to [1, 5]).

    Args:
        name: one of :data:`BENCHMARKS`.
        label_file: label file (verbatim format or normalised list); ``None`` reads the list
            bundled with the package (``csv`` needs a file).
        video_root: folder holding the videos; absent files are listed in ``table.missing`` (an
            error only when *all* are absent). ``None``: ``paths`` are the names.
        split: a bundled/normalised list with a ``split`` column keeps only those rows (LSVQ's
            default is the split its name says); a verbatim file is one split and takes it as label.
        scale: ``(lo, hi)`` MOS scale of a ``csv`` list (see the module docstring).

    Raises:
        ValueError: unknown ``name`` (the message lists the allowed names).
        LabelFormatError: malformed file or row (file and line named).
        FileNotFoundError: label file absent, or no video found under ``video_root``.
    """
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; allowed: {BENCHMARKS}")
    if name == "csv":
        if label_file is None:
            raise ValueError("benchmark 'csv' needs a label_file")
        table = read_label_csv(label_file, "csv", split, scale)
    else:
        table = _named(name, label_file, split)
    return _attach_root(table, video_root)


def _named(name: str, label_file: str | None, split: str | None) -> VideoTable:
    bundled, bundled_split = _BUNDLED[name]
    path = Path(label_file) if label_file is not None else LABELS_DIR / bundled
    if not path.is_file():
        raise FileNotFoundError(f"label file for {name!r} not found: {path}{missing_labels_hint(path)}")
    parsed = read_verbatim(name, path)
    if parsed is None:  # normalised video,mos[,split] list
        with open(path, newline="", encoding="utf-8-sig") as fh:
            header = [h.strip() for h in next(csv.reader(fh), [])]
        wanted = (split or bundled_split) if "split" in header else None
        table = read_label_csv(path, name, wanted, SCALES[name])
        if wanted is None and split is not None:
            table.split = [split] * len(table)
        return table
    raw = np.asarray(parsed.mos, dtype=np.float64)
    mos = _map_mos(path, None, raw, None, SCALES[name], True)
    return VideoTable(
        name, parsed.names, list(parsed.names), mos, raw, [split or bundled_split or "all"] * len(raw), [], parsed.extra
    )
