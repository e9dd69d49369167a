"""Where a benchmark's videos and labels are (:class:`BenchmarkSpec`), and reading them.

A spec names a label list and a video folder; :func:`read_spec` turns it into a
:class:`~datamodules.benchmarks.VideoTable` with absolute paths; :func:`table_from_videos` does the
same for the predict input (a folder of videos or a ``video[,mos]`` csv). :class:`EvalSet` is what
the comparison-graph callback evaluates. Used by :mod:`datamodules.pairwise` and the annotation CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.benchmarks import VideoTable, read_benchmark, read_label_csv
from datamodules.video import list_videos


@dataclass
class BenchmarkSpec:
    """One label list (+ video folder) as written in YAML.

    Attributes:
        name: display/log name (``test/<name>/lsq_srcc``); unique within the datamodule.
        benchmark: reader name for :func:`datamodules.benchmarks.read_benchmark` (``csv`` for the
            synthetic benchmark and users' own lists; ``synthetic`` is an alias of ``csv``).
        label_file: label file; ``None`` uses the list bundled with the package.
        video_root: folder the label file's video names are relative to (``csv``: default the
            label file's folder).
        split: keep only rows of this split (LSVQ lists, synthetic ``split`` column).
        group: ``in_domain`` or ``out_of_domain`` (averages in the result tables).
    """

    name: str
    benchmark: str = "csv"
    label_file: str | None = None
    video_root: str | None = None
    split: str | None = None
    group: str = "in_domain"


@dataclass
class EvalSet:
    """A benchmark evaluated by the comparison-graph callback."""

    name: str
    table: VideoTable
    group: str


def _as_spec(spec: BenchmarkSpec | dict[str, Any]) -> BenchmarkSpec:
    return spec if isinstance(spec, BenchmarkSpec) else BenchmarkSpec(**spec)


def read_spec(spec: BenchmarkSpec) -> VideoTable:
    """Read one :class:`BenchmarkSpec` into a :class:`VideoTable` named ``spec.name``."""
    reader = "csv" if spec.benchmark == "synthetic" else spec.benchmark
    root = spec.video_root
    if root is None and spec.label_file is not None and reader == "csv":
        root = str(Path(spec.label_file).parent)
    table = read_benchmark(reader, label_file=spec.label_file, video_root=root, split=spec.split)
    table.benchmark = spec.name
    return table


def _unscored(names: list[str], paths: list[str]) -> VideoTable:
    nan = np.full(len(names), np.nan)
    return VideoTable("predict", names, paths, nan, nan.copy(), ["predict"] * len(names), [], {})


def table_from_videos(videos: str) -> VideoTable:
    """Predict-time table: every video of a folder, or the rows of a ``video[,mos]`` csv.

    A csv's ``mos`` is optional (nan when absent or blank; nan too when it is not on 1–5 and the
    file gives no scale, the raw values staying in ``mos_raw``); names are relative to its folder.
    """
    path = Path(videos)
    if path.is_dir():
        files = list_videos(path)
        if not files:
            raise FileNotFoundError(f"no video files found in folder {path}")
        return _unscored([str(f.relative_to(path)) for f in files], [str(f) for f in files])
    if not path.is_file():
        raise FileNotFoundError(f"data.videos: {path} is neither a folder nor a csv file")
    table = read_label_csv(path, "predict", require_scale=False, require_mos=False)
    table.paths = [str(path.parent / n) for n in table.names]
    table.missing = [n for n, p in zip(table.names, table.paths) if not Path(p).is_file()]
    if len(table.missing) == len(table):
        raise FileNotFoundError(
            f"none of the {len(table)} videos listed in {path} exist (names are relative to {path.parent})"
        )
    return table
