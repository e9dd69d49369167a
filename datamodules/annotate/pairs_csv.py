"""The pairs CSV between ``annotate pairs`` and ``annotate run``.

Columns ``video_a, video_b, mos_a, mos_b, margin, benchmark``: video names as in the label file
(relative to the video root), MOS on [1, 5] written at full precision, ``margin = mos_a - mos_b``.
A hand-made file needs the first four columns; ``margin`` is checked when present.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["COLUMNS", "PairRow", "read_pairs", "write_pairs"]

COLUMNS = ("video_a", "video_b", "mos_a", "mos_b", "margin", "benchmark")
_MARGIN_TOL = 1e-6


@dataclass(frozen=True)
class PairRow:
    """One pair to annotate; Video A is shown first, ``margin = mos_a - mos_b`` on [1, 5]."""

    video_a: str
    video_b: str
    mos_a: float
    mos_b: float
    benchmark: str = ""

    @property
    def margin(self) -> float:
        return self.mos_a - self.mos_b

    @property
    def key(self) -> tuple[str, str]:
        return self.video_a, self.video_b


def write_pairs(path: str | Path, pairs: Sequence[PairRow]) -> None:
    """Write ``pairs`` as a pairs CSV (``repr`` floats: reading back gives the same margins)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for p in pairs:
            writer.writerow([p.video_a, p.video_b, repr(p.mos_a), repr(p.mos_b), repr(p.margin), p.benchmark])


def _row(path: Path, line: int, rec: dict[str, str]) -> PairRow:
    where = f"{path}, row {line}"
    try:
        mos_a, mos_b = float(rec["mos_a"]), float(rec["mos_b"])
        margin = float(rec["margin"]) if (rec.get("margin") or "").strip() else mos_a - mos_b
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None
    for name, value in (("mos_a", mos_a), ("mos_b", mos_b)):
        if not (math.isfinite(value) and 1.0 <= value <= 5.0):
            raise ValueError(
                f"{where}: {name} = {value} is not a MOS on [1, 5] (map it first, e.g. with `annotate pairs`)"
            )
    if abs(margin - (mos_a - mos_b)) > _MARGIN_TOL:
        raise ValueError(f"{where}: margin {margin} is not mos_a - mos_b = {mos_a - mos_b}")
    if not rec["video_a"] or rec["video_a"] == rec["video_b"]:
        raise ValueError(f"{where}: video_a and video_b must be two different non-empty names")
    return PairRow(rec["video_a"], rec["video_b"], mos_a, mos_b, rec.get("benchmark") or "")


def read_pairs(path: str | Path) -> list[PairRow]:
    """Read a pairs CSV; every error names the file and row.

    Raises:
        FileNotFoundError: no such file.
        ValueError: missing columns, a bad number, MOS off [1, 5], a margin that is not
            ``mos_a - mos_b``, or a pair listed twice.
    """
    path = Path(path)
    rows: list[PairRow] = []
    first: dict[tuple[str, str], int] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = set(COLUMNS[:4]) - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)} (header: {reader.fieldnames})")
        for line, rec in enumerate(reader, start=2):
            row = _row(path, line, rec)
            if row.key in first:
                raise ValueError(f"{path}, row {line}: pair {row.key} already on row {first[row.key]}")
            first[row.key] = line
            rows.append(row)
    return rows
