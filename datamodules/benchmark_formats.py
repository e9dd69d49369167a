"""Parsers for the verbatim label-file formats the public VQA benchmarks are distributed in.

Each parser returns a :class:`Parsed` (names, raw MOS, extra per-row columns) with names spelt the
way the dataset's video folder spells them (KoNViD-1k ``<flickr_id>.mp4``, LSVQ
``yfcc-batch1/747.mp4``, LIVE-VQC ``A012.mp4`` without VIDEVAL's ``NEW`` suffix). The format is
detected from the file (extension, then header / variable names):

* ``.txt``  — FAST-VQA/DOVER/Zoom-VQA lists ``path, duration, fps, mos`` (``-1`` when unknown);
* ``.csv``  — official metadata CSVs: KoNViD-1k attributes, VIDEVAL LIVE-VQC / YouTube-UGC, LSVQ
  ``LSVQ_whole_test*.csv`` (their ``is_valid`` flag is kept in ``extra``), Waterloo-IVC-4K, CVD2014
  (``;``-separated, decimal commas, trailing empty rows); a normalised ``video,mos`` list returns
  ``None`` (the caller reads it with the generic reader);
* ``.json`` — VQAThinker ``{"annotations": [{"image_id", "score"}]}``;
* ``.mat``  — LIVE-YT-Gaming (``video_list``, ``MOS``), LIVE-Qualcomm (``qualcommVideoData.vidNames``
  + ``qualcommSubjectiveData.unBiasedMOS``).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LabelFormatError", "Parsed", "read_verbatim"]

# Benchmarks whose lists carry a local sub-folder (``Video/``, ``Test3/City/``, ``Focus/``) that is
# not part of the dataset's file name; LSVQ's sub-folder *is* part of its path and is kept.
_BASENAME = {"konvid1k", "live_vqc", "cvd2014", "live_qualcomm"}
_DECIMAL_COMMA = re.compile(r"\s*-?\d+,\d+\s*")

Row = tuple[int, dict[str, str]]


class LabelFormatError(ValueError):
    """A malformed label file; the message names the file and the line.

    Defined here, the lower layer, so that :mod:`datamodules.benchmarks` imports this module and
    never the other way round (it re-exports the class for its callers).
    """


@dataclass
class Parsed:
    """Rows of one verbatim label file."""

    names: list[str]
    mos: list[float]
    extra: dict[str, list] = field(default_factory=dict)


def _error(path: Path, line: int, msg: str) -> LabelFormatError:
    return LabelFormatError(f"{path}:{line}: {msg}")


def _num(text: str | None, path: Path, line: int, column: str = "mos") -> float:
    """A number as written in a label file (a decimal comma is accepted)."""
    text = "" if text is None else str(text)
    try:
        return float(text.replace(",", ".") if _DECIMAL_COMMA.fullmatch(text) else text)
    except ValueError:
        raise _error(path, line, f"column {column!r} is not a number: {text!r}") from None


def _norm(name: str, bench: str) -> str:
    name = name.strip()
    return name.rsplit("/", 1)[-1] if bench in _BASENAME else name


def _txt(path: Path, bench: str) -> Parsed:
    out = Parsed([], [])
    with open(path, encoding="utf-8") as fh:
        for ln, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = line.rsplit(",", 3)  # a file name may itself contain a comma
            if len(parts) != 4:
                raise _error(path, ln, f"expected 'path, duration, fps, mos', got {line.strip()!r}")
            out.names.append(_norm(parts[0], bench))
            out.mos.append(_num(parts[3].strip(), path, ln))
    return out


def _csv_rows(path: Path, delimiter: str = ",") -> tuple[list[str], list[Row]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        rows = [(reader.line_num, r) for r in reader if any(isinstance(v, str) and v.strip() for v in r.values())]
        return list(reader.fieldnames or []), rows


def _pick(path: Path, rows: list[Row], name_fn: Callable[[dict], str], mos_col: str) -> Parsed:
    out = Parsed([], [])
    for ln, r in rows:
        if not (r.get(mos_col) or "").strip():
            raise _error(path, ln, f"empty {mos_col!r}")
        out.names.append(name_fn(r))
        out.mos.append(_num(r[mos_col], path, ln, mos_col))
    return out


def _flag(text: str | None) -> bool | None:
    """``True``/``False`` as written in LSVQ's CSVs (``None`` when blank)."""
    value = (text or "").strip().lower()
    return {"true": True, "false": False}.get(value)


def _cvd2014(path: Path) -> Parsed:
    _, rows = _csv_rows(path, ";")
    rows = [(ln, r) for ln, r in rows if (r.get("File_name") or "").strip()]
    parsed = _pick(path, rows, lambda r: r["File_name"].strip() + ".avi", "Realignment MOS")
    parsed.extra["original_mos"] = [_num(r["Original MOS"], path, ln, "Original MOS") for ln, r in rows]
    return parsed


def _csv(path: Path, bench: str) -> Parsed | None:
    with open(path, encoding="utf-8-sig") as fh:
        head = fh.readline()
    if ";" in head and "Realignment MOS" in head:
        return _cvd2014(path)
    if [h.strip() for h in next(csv.reader([head]), [])][:2] == ["video", "mos"]:
        return None  # normalised list: read by the generic reader
    header, rows = _csv_rows(path)
    if "flickr_id" in header:  # KoNViD-1k attributes
        return _pick(path, rows, lambda r: f"{r['flickr_id'].strip()}.mp4", "MOS")
    if "File" in header and "MOS" in header:  # VIDEVAL LIVE-VQC
        return _pick(path, rows, lambda r: r["File"].strip().replace("NEW.mp4", ".mp4"), "MOS")
    if "vid" in header and "MOSFull" in header:  # VIDEVAL YouTube-UGC
        return _pick(path, rows, lambda r: r["vid"].strip(), "MOSFull")
    if "is_valid" in header and "name" in header:  # official LSVQ test CSVs
        parsed = _pick(path, rows, lambda r: r["name"].strip() + ".mp4", "mos")
        parsed.extra["is_valid"] = [_flag(r.get("is_valid")) for _, r in rows]
        return parsed
    if "Encoder" in header and "path" in header:  # Waterloo-IVC-4K
        return _pick(path, rows, lambda r: r["path"].strip().split("Waterloo_IVC_4K/")[-1], "MOS")
    raise _error(path, 1, f"unrecognised label csv header {header[:6]}")


def _json(path: Path) -> Parsed:
    try:
        anns = json.loads(path.read_text(encoding="utf-8"))["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise _error(path, 1, f"not a VQAThinker annotations json ({err})") from None
    out = Parsed([], [])
    for k, a in enumerate(anns):
        if not isinstance(a, dict) or "image_id" not in a or "score" not in a:
            raise _error(path, k + 1, f"annotation {k} lacks 'image_id'/'score'")
        out.names.append(str(a["image_id"]))
        out.mos.append(_num(str(a["score"]), path, k + 1, "score"))
    return out


def _mat(path: Path) -> Parsed:
    import scipy.io

    m = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    if "video_list" in m and "MOS" in m:  # LIVE-YT-Gaming
        return Parsed([f"{v}.mp4" for v in m["video_list"]], [float(x) for x in m["MOS"]])
    if "qualcommSubjectiveData" in m and "qualcommVideoData" in m:  # LIVE-Qualcomm
        names = [str(v) for v in m["qualcommVideoData"].vidNames]
        return Parsed(names, [float(x) for x in m["qualcommSubjectiveData"].unBiasedMOS])
    found = sorted(k for k in m if not k.startswith("__"))
    raise _error(path, 1, f"unrecognised .mat variables {found}")


def read_verbatim(name: str, path: Path) -> Parsed | None:
    """Parse any verbatim label file of benchmark ``name`` (format detected from the file).

    Returns:
        The parsed rows, or ``None`` for a normalised ``video,mos`` csv.

    Raises:
        LabelFormatError: unknown format or malformed row (file and line named).
    """
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return _txt(path, name)
    if suffix == ".csv":
        return _csv(path, name)
    if suffix == ".json":
        return _json(path)
    if suffix == ".mat":
        return _mat(path)
    raise _error(path, 1, f"unknown label file type {suffix!r} (expected .txt, .csv, .json, .mat)")
