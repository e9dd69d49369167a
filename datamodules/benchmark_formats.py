"""Parsers for the verbatim label-file formats the public VQA benchmarks are distributed in.

Each parser returns ``(names, mos_raw)`` with names normalised the way the dataset's video folder
spells them (e.g. KoNViD-1k ``<flickr_id>.mp4``, LSVQ ``yfcc-batch1/747.mp4``). Formats:

* ``txt``  — the FAST-VQA/DOVER lists ``path, duration, fps, mos`` (``-1`` when unknown);
* ``csv``  — official metadata CSVs (KoNViD-1k attributes, VIDEVAL LIVE-VQC / YouTube-UGC, LSVQ
  ``LSVQ_whole_test*.csv`` with ``is_valid``, Waterloo-IVC-4K, CVD2014 ``;``-separated with decimal
  commas);
* ``json`` — VQAThinker ``{"annotations": [{"image_id", "score"}]}``;
* ``mat``  — LIVE-YT-Gaming (``video_list``, ``MOS``), LIVE-Qualcomm (``qualcommVideoData.vidNames``
  + ``qualcommSubjectiveData.unBiasedMOS``).

A normalised ``video,mos`` list returns ``(None, None)`` (the caller reads it as csv).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

__all__ = ["read_verbatim"]

_BASENAME = {"konvid1k", "live_vqc", "cvd2014", "live_qualcomm"}  # drop the dataset's sub-folders


class _Err(ValueError):
    pass


def _error(path: Path, line: int, msg: str) -> Exception:
    from datamodules.benchmarks import LabelFormatError

    return LabelFormatError(f"{path}:{line}: {msg}")


def _num(text: str, path: Path, line: int) -> float:
    try:
        return float(text.strip().replace(",", ".") if re.fullmatch(r"\s*-?\d+,\d+\s*", text) else text)
    except ValueError:
        raise _error(path, line, f"MOS is not a number: {text!r}") from None


def _norm(name: str, bench: str) -> str:
    name = name.strip()
    return name.rsplit("/", 1)[-1] if bench in _BASENAME else name


def _txt(path: Path, bench: str) -> tuple[list[str], list[float]]:
    names, mos = [], []
    with open(path, encoding="utf-8") as fh:
        for ln, line in enumerate(fh, 1):
            if not line.strip():
                continue
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 4:
                raise _error(path, ln, f"expected 'path, duration, fps, mos', got {line.strip()!r}")
            name = parts[0] if bench != "lsvq" else parts[0]
            names.append(_norm(name, bench))
            mos.append(_num(parts[3], path, ln))
    return names, mos


def _csv_rows(path: Path, delimiter: str = ",") -> tuple[list[str], list[tuple[int, dict]]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        rows = [(reader.line_num, r) for r in reader if any((v or "").strip() for v in r.values() if isinstance(v, str))]
        return list(reader.fieldnames or []), rows


def _pick(path: Path, rows, name_fn, mos_col: str) -> tuple[list[str], list[float]]:
    names, mos = [], []
    for ln, r in rows:
        if r.get(mos_col) in (None, ""):
            raise _error(path, ln, f"empty {mos_col!r}")
        names.append(name_fn(r))
        mos.append(_num(r[mos_col], path, ln))
    return names, mos


def _csv(path: Path, bench: str) -> tuple[list[str], list[float]] | tuple[None, None]:
    head = path.read_text(encoding="utf-8-sig").splitlines()[0]
    if ";" in head and "Realignment MOS" in head:  # CVD2014
        _, rows = _csv_rows(path, ";")
        rows = [(ln, r) for ln, r in rows if (r.get("File_name") or "").strip()]
        return _pick(path, rows, lambda r: r["File_name"].strip() + ".avi", "Realignment MOS")
    header, rows = _csv_rows(path)
    if header[:2] == ["video", "mos"]:
        return None, None
    if "flickr_id" in header:  # KoNViD-1k attributes
        return _pick(path, rows, lambda r: f"{r['flickr_id'].strip()}.mp4", "MOS")
    if "File" in header and "MOS" in header:  # VIDEVAL LIVE-VQC
        return _pick(path, rows, lambda r: r["File"].strip().replace("NEW.mp4", ".mp4"), "MOS")
    if "vid" in header and "MOSFull" in header:  # VIDEVAL YouTube-UGC
        return _pick(path, rows, lambda r: r["vid"].strip(), "MOSFull")
    if "is_valid" in header and "name" in header:  # official LSVQ test CSVs
        return _pick(path, rows, lambda r: r["name"].strip() + ".mp4", "mos")
    if "Encoder" in header and "path" in header:  # Waterloo-IVC-4K
        return _pick(path, rows, lambda r: r["path"].split("Waterloo_IVC_4K/")[-1], "MOS")
    raise _error(path, 1, f"unrecognised label csv header {header[:6]}")


def _json(path: Path, bench: str) -> tuple[list[str], list[float]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        anns = data["annotations"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise _error(path, 1, f"not an annotations json ({err})") from None
    names, mos = [], []
    for k, a in enumerate(anns):
        if "image_id" not in a or "score" not in a:
            raise _error(path, k + 1, f"annotation {k} lacks image_id/score")
        names.append(str(a["image_id"]))
        mos.append(_num(str(a["score"]), path, k + 1))
    return names, mos


def _mat(path: Path, bench: str) -> tuple[list[str], list[float]]:
    import scipy.io

    m = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    if "video_list" in m and "MOS" in m:  # LIVE-YT-Gaming
        return [f"{str(v)}.mp4" for v in m["video_list"]], [float(x) for x in m["MOS"]]
    if "qualcommSubjectiveData" in m and "qualcommVideoData" in m:
        names = [str(v) for v in m["qualcommVideoData"].vidNames]
        return names, [float(x) for x in m["qualcommSubjectiveData"].unBiasedMOS]
    raise _error(path, 1, f"unrecognised .mat variables {sorted(k for k in m if not k.startswith('__'))}")


def read_verbatim(name: str, path: Path) -> tuple[list[str], list[float]] | tuple[None, None]:
    """Parse any verbatim label file of benchmark ``name`` (format detected from the file).

    Returns ``(None, None)`` for a normalised ``video,mos`` csv.
    """
    suffix = path.suffix.lower()
    bench = "lsvq" if name.startswith("lsvq") else name
    if suffix == ".txt":
        return _txt(path, bench)
    if suffix == ".csv":
        return _csv(path, bench)
    if suffix == ".json":
        return _json(path, bench)
    if suffix == ".mat":
        return _mat(path, bench)
    raise _error(path, 1, f"unknown label file type {suffix!r} (expected .txt, .csv, .json, .mat)")
