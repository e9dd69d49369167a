"""Label readers: every verbatim file parses with the documented row counts; errors name file:line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.benchmarks import BENCHMARKS, LabelFormatError, read_benchmark, to_unit5

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
BUNDLED = {"konvid1k": 1200, "live_vqc": 585, "lsvq_train": 28056, "lsvq_test": 7182,
           "lsvq_1080p": 3573, "yt_gaming": 600, "waterloo_4k": 1200, "vdpve": 839,
           "youtube_ugc": 1380, "cvd2014": 234, "live_qualcomm": 208}


def test_every_verbatim_file_is_covered(labels_dir: Path) -> None:
    files = {str(p.relative_to(labels_dir)) for p in labels_dir.glob("*/*") if p.is_file()}
    assert files == {f for _, f, _ in VERBATIM}


@pytest.mark.parametrize(("name", "rel", "rows"), VERBATIM)
def test_verbatim_rows_and_scale(labels_dir: Path, name: str, rel: str, rows: int) -> None:
    table = read_benchmark(name, str(labels_dir / rel))
    assert len(table) == rows
    lo = 0.7 if name == "cvd2014" else 1.0  # CVD2014's realigned MOS dips below its nominal 0
    assert lo <= table.mos.min() and table.mos.max() <= 5.0
    assert len(set(table.names)) == rows


@pytest.mark.parametrize(("name", "rows"), sorted(BUNDLED.items()))
def test_bundled_lists_need_no_shared_folder(name: str, rows: int) -> None:
    table = read_benchmark(name)
    assert len(table) == rows and np.all(np.isfinite(table.mos))


def test_verbatim_and_normalised_agree(labels_dir: Path) -> None:
    for name, rel, _ in VERBATIM:
        verbatim = read_benchmark(name, str(labels_dir / rel))
        bundled = dict(zip(read_benchmark(name).names, read_benchmark(name).mos))
        shared = [(n, m) for n, m in zip(verbatim.names, verbatim.mos) if n in bundled]
        if name in ("lsvq_train", "lsvq_test", "lsvq_1080p", "konvid1k", "live_vqc", "yt_gaming"):
            assert len(shared) >= 0.98 * min(len(verbatim), len(bundled)), rel
        for n, m in shared:
            assert abs(m - bundled[n]) < 1e-3, (rel, n)


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
    lst.write_text("video,mos,source,split,scale_lo,scale_hi\n"
                   "t/0.mp4,50,s100,train,0,100\nt/1.mp4,3,s5,train,1,5\nx/2.mp4,0.5,s1,test,0,1\n")
    train = read_benchmark("csv", str(lst), split="train")
    assert train.mos.tolist() == [3.0, 3.0] and train.extra["source"] == ["s100", "s5"]
    assert len(train.subset([1])) == 1 and train.subset([1]).names == ["t/1.mp4"]
    assert to_unit5(np.array([0.5]), 0, 1).tolist() == [3.0]
