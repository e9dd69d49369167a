"""Label readers: every verbatim file parses with the documented row counts; errors name file:line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from datamodules.benchmarks import BENCHMARKS, SCALES, LabelFormatError, read_benchmark, to_unit5

VERBATIM = [
    ("konvid1k", "KoNViD-1k/FAST-VQA__labels.txt", 1200),
    ("konvid1k", "KoNViD-1k/KoNViD_1k_attributes.csv", 1200),
    ("live_vqc", "LIVE-VQC/FAST-VQA__labels.txt", 585),
    ("live_vqc", "LIVE-VQC/VIDEVAL__LIVE_VQC_metadata.csv", 585),
    ("lsvq_train", "LSVQ/FAST-VQA__train_labels.txt", 28056),
    ("lsvq_test", "LSVQ/FAST-VQA__labels_test.txt", 7186),  # 7,182 + 4 appended extras (README)
    ("lsvq_1080p", "LSVQ/FAST-VQA__labels_1080p.txt", 3573),
    ("lsvq_test", "LSVQ/LSVQ_whole_test.csv", 7220),
    ("lsvq_1080p", "LSVQ/LSVQ_whole_test_1080p.csv", 3561),
    ("yt_gaming", "LIVE-YT-Gaming/MinimalisticVQA__LIVEYTGaming.mat", 600),
    ("yt_gaming", "LIVE-YT-Gaming/VQAThinker__LIVE-YT-Gaming_total_score.json", 600),
    ("waterloo_4k", "Waterloo-IVC-4K/ModularBVQA__waterloo_data.csv", 1200),
    ("waterloo_4k", "Waterloo-IVC-4K/VQAThinker__Waterloo_IVC_4K_total_score.json", 1200),
    ("vdpve", "VDPVE/Zoom-VQA__train_labels.txt", 728),
    ("vdpve", "VDPVE/Zoom-VQA__val_offline_labels.txt", 111),
    ("vdpve", "VDPVE/VQAThinker__VDPVE_train_score.json", 839),
    ("youtube_ugc", "YouTube-UGC/VIDEVAL__YOUTUBE_UGC_metadata.csv", 1380),
    ("youtube_ugc", "YouTube-UGC/FAST-VQA__labels.txt", 1147),
    ("cvd2014", "CVD2014/FAST-VQA__labels.txt", 234),
    ("cvd2014", "CVD2014/ModularBVQA__CVD2014_Realignment_MOS.csv", 234),
    ("live_qualcomm", "LIVE-Qualcomm/FAST-VQA__labels.txt", 208),
    ("live_qualcomm", "LIVE-Qualcomm/DOVER__mp4labels.txt", 208),
    ("live_qualcomm", "LIVE-Qualcomm/MinimalisticVQA__LIVE-Qualcomm_qualcommSubjectiveData.mat", 208),
]
BUNDLED = {
    "konvid1k": 1200,
    "live_vqc": 585,
    "lsvq_train": 28056,
    "lsvq_test": 7182,
    "lsvq_1080p": 3573,
    "yt_gaming": 600,
    "waterloo_4k": 1200,
    "vdpve": 839,
    "youtube_ugc": 1380,
    "cvd2014": 234,
    "live_qualcomm": 208,
}


# Verbatim names that are not in the normalised list (labels README): the official LSVQ test CSV
# has 46 rows outside the 7,186-line FAST-VQA list plus one of that list's 4 appended extras;
# the FAST-VQA test list's 4 appended extras are not in the normalised 7,182.
UNMATCHED = {"LSVQ/LSVQ_whole_test.csv": 47, "LSVQ/FAST-VQA__labels_test.txt": 4}


def _key(name: str, video: str) -> str:
    """A verbatim name spelt as in the normalised list (clip suffix, folder separators, .mp4)."""
    if name == "youtube_ugc":
        return video.replace("_crf_10_ss_00_t_20.0.mp4", "")
    if name == "waterloo_4k" and "/" not in video:
        return video.replace("_", "/", 2)
    if name == "live_qualcomm":
        return re.sub(r"\.mp4$", ".yuv", video)
    return video


def test_every_verbatim_file_is_covered(labels_dir: Path) -> None:
    files = {str(p.relative_to(labels_dir)) for p in labels_dir.glob("*/*") if p.is_file()}
    assert files == {f for _, f, _ in VERBATIM}


@pytest.mark.parametrize(("name", "rel", "rows"), VERBATIM)
def test_verbatim_rows_scale_and_agreement(labels_dir: Path, name: str, rel: str, rows: int) -> None:
    table = read_benchmark(name, str(labels_dir / rel))
    assert len(table) == rows and len(set(table.names)) == rows
    assert 1.0 <= table.mos.min() and table.mos.max() <= 5.0
    bundled = read_benchmark(name)
    normalised = dict(zip(bundled.names, bundled.mos))
    keys = [_key(name, v) for v in table.names]
    assert sum(k not in normalised for k in keys) == UNMATCHED.get(rel, 0)
    diffs = [abs(m - normalised[k]) for k, m in zip(keys, table.mos) if k in normalised]
    assert max(diffs) < 1e-4  # KoNViD-1k's FAST-VQA list differs by rounding (<= 5e-5 raw)


def test_lsvq_official_test_csv_keeps_is_valid(labels_dir: Path) -> None:
    table = read_benchmark("lsvq_test", str(labels_dir / "LSVQ/LSVQ_whole_test.csv"))
    assert len(table) == 7220 and table.extra["is_valid"].count(False) == 40
    assert table.names[0] == "yfcc-batch1/747.mp4"


def test_cvd2014_csv_decimal_commas_and_trailing_rows(labels_dir: Path) -> None:
    table = read_benchmark("cvd2014", str(labels_dir / "CVD2014/ModularBVQA__CVD2014_Realignment_MOS.csv"))
    assert table.names[0] == "Test01_City_D01.avi" and table.mos_raw[0] == 67.29
    assert table.extra["original_mos"][0] == 71.17 and table.mos.min() == 1.0  # lowest: -6.5


@pytest.mark.parametrize(("name", "rows"), sorted(BUNDLED.items()))
def test_bundled_lists_need_no_shared_folder(name: str, rows: int) -> None:
    table = read_benchmark(name)
    assert len(table) == rows and np.all((table.mos >= 1.0) & (table.mos <= 5.0))
    lo, hi = SCALES[name]
    assert np.allclose(table.mos, 1 + 4 * (table.mos_raw - lo) / (hi - lo))


def test_unknown_name_lists_allowed() -> None:
    with pytest.raises(ValueError, match="allowed"):
        read_benchmark("konvid")
    assert "csv" in BENCHMARKS


def test_malformed_rows_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "labels.txt"
    bad.write_text("a.mp4, 8, 30, 3.1\nb.mp4, 8, 30\n")
    with pytest.raises(LabelFormatError, match=r"labels.txt:2"):
        read_benchmark("konvid1k", str(bad))
    bad_csv = tmp_path / "mine.csv"
    bad_csv.write_text("video,mos\nx.mp4,2.0\ny.mp4,abc\n")
    with pytest.raises(LabelFormatError, match=r"mine.csv:3"):
        read_benchmark("csv", str(bad_csv))


def test_generic_csv_scale_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"x")
    lst = tmp_path / "list.csv"
    lst.write_text("video,mos,note\na.mp4,0\nb.mp4,100\n")
    with pytest.raises(LabelFormatError, match="scale"):
        read_benchmark("csv", str(lst))
    table = read_benchmark("csv", str(lst), video_root=str(tmp_path), scale=(0, 100))
    assert table.mos.tolist() == [1.0, 5.0] and table.missing == ["b.mp4"]
    assert table.extra["note"] == ["", ""]
    with pytest.raises(FileNotFoundError, match="none of the 2 videos"):
        read_benchmark("csv", str(lst), video_root=str(tmp_path / "nowhere"), scale=(0, 100))


def test_per_row_scales_and_split_filter(tmp_path: Path) -> None:
    lst = tmp_path / "labels.csv"
    lst.write_text(
        "video,mos,source,split,scale_lo,scale_hi\n"
        "t/0.mp4,50,s100,train,0,100\nt/1.mp4,3,s5,train,1,5\nx/2.mp4,0.5,s1,test,0,1\n"
    )
    train = read_benchmark("csv", str(lst), split="train")
    assert train.mos.tolist() == [3.0, 3.0] and train.extra["source"] == ["s100", "s5"]
    assert len(train.subset([1])) == 1 and train.subset([1]).names == ["t/1.mp4"]
    assert to_unit5(np.array([0.5]), 0, 1).tolist() == [3.0]


def test_generic_csv_scale_column_and_one_to_five_default(tmp_path: Path) -> None:
    lst = tmp_path / "mine.csv"
    lst.write_text("video,mos,scale\na.mp4,5,0-10\nb.mp4,-1,-1:1\n")
    assert read_benchmark("csv", str(lst)).mos.tolist() == [3.0, 1.0]
    acr = tmp_path / "acr.csv"
    acr.write_text("video,mos\na.mp4,1.5\nb.mp4,4.5\n")
    table = read_benchmark("csv", str(acr))  # every value on 1-5: taken as the 1-5 scale
    assert table.mos.tolist() == [1.5, 4.5] and table.split == ["all", "all"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("video,mos,scale\na.mp4,5,0..10\nb.mp4,50,0..10\n", r"bad.csv:3: MOS 50 lies outside"),
        ("video,mos,scale\na.mp4,5,ten\n", r"bad.csv:2: column 'scale'"),
        ("video,mos,scale_lo,scale_hi\na.mp4,5,10,0\n", r"bad.csv:2: scale must satisfy"),
        ("video,mos\na.mp4,2\na.mp4,3\n", r"bad.csv:3: video 'a.mp4' already listed on line 2"),
        ("video,mos\n,2\n", r"bad.csv:2: empty 'video'"),
        ("video,mos\na.mp4,nan\n", r"bad.csv:2: column 'mos' is not finite"),
        ("name,mos\na.mp4,2\n", r"bad.csv:1: missing column 'video'"),
        ("", r"bad.csv:1: empty label file"),
    ],
)
def test_generic_csv_errors_name_file_and_line(tmp_path: Path, text: str, match: str) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    with pytest.raises(LabelFormatError, match=match):
        read_benchmark("csv", str(bad))


def test_split_needs_a_split_column_and_verbatim_errors(tmp_path: Path) -> None:
    lst = tmp_path / "nosplit.csv"
    lst.write_text("video,mos\na.mp4,2\n")
    with pytest.raises(LabelFormatError, match="no 'split' column"):
        read_benchmark("csv", str(lst), split="test")
    with pytest.raises(ValueError, match="needs a label_file"):
        read_benchmark("csv")
    odd = tmp_path / "labels.xlsx"
    odd.write_text("x")
    with pytest.raises(LabelFormatError, match="unknown label file type"):
        read_benchmark("konvid1k", str(odd))
    head = tmp_path / "meta.csv"
    head.write_text("foo,bar\n1,2\n")
    with pytest.raises(LabelFormatError, match="unrecognised label csv header"):
        read_benchmark("live_vqc", str(head))
    with pytest.raises(FileNotFoundError):
        read_benchmark("konvid1k", str(tmp_path / "absent.txt"))


def test_synthetic_labels_layout(tmp_path: Path) -> None:
    """The synthetic benchmark's labels.csv: per-row scales, split filter, extras kept."""
    lst = tmp_path / "labels.csv"
    lst.write_text(
        "video,mos,source,split,content,distortions,severities,q,scale_lo,scale_hi\n"
        "train/0.mp4,4.1,acr5,train,scene,noise,0.681,0.70,1,5\n"
        "train/1.mp4,76.1298,slider100,train,zoom_noise,downscale;stutter,0.5;0.3,0.66,0,100\n"
        "test/2.mp4,3.0,acr5,test,shapes,,,0.5,1,5\n"
    )
    table = read_benchmark("csv", str(lst), split="train")
    assert table.mos == pytest.approx([4.1, 1 + 4 * 0.761298]) and table.split == ["train", "train"]
    assert table.extra["distortions"] == ["noise", "downscale;stutter"]
    assert set(table.extra) == {"source", "content", "distortions", "severities", "q", "scale_lo", "scale_hi"}


def test_label_modules_import_in_one_direction_only() -> None:
    """benchmarks -> benchmark_formats, never back (not even from inside a function)."""
    import ast

    import datamodules.benchmark_formats as formats
    import datamodules.benchmarks as benchmarks

    tree = ast.parse(Path(formats.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and m.startswith("datamodules.") for m in imported), imported
    assert benchmarks.LabelFormatError is formats.LabelFormatError


def test_missing_synthetic_labels_name_the_command_that_makes_them(tmp_path: Path) -> None:
    from datamodules.benchmarks import read_benchmark

    with pytest.raises(FileNotFoundError, match=r"python -m datamodules\.synthetic --out .*synthetic --seed 0"):
        read_benchmark("csv", label_file=str(tmp_path / "synthetic" / "labels.csv"))
    with pytest.raises(FileNotFoundError) as info:  # other lists: no generator to suggest
        read_benchmark("csv", label_file=str(tmp_path / "lsvq" / "labels.csv"))
    assert "datamodules.synthetic" not in str(info.value)
