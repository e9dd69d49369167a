"""PairwiseVideoDataModule on six tiny libx264 clips written into tmp (synthetic labels layout)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from datamodules.annotate import verdict_sentence
from datamodules.pairwise import (
    BenchmarkSpec,
    EvalSet,
    PairBatch,
    PairwiseVideoDataModule,
    VideoBatch,
)
from datamodules.video import Clip, VideoDecodeError, load_clip

#   video,           mos,  source, split, scale  -> mos on [1, 5]
ROWS = [
    ("train/0.mp4", 2.0, "acr5", "train", 1, 5),
    ("train/1.mp4", 4.5, "acr5", "train", 1, 5),
    ("train/2.mp4", 3.0, "acr5", "train", 1, 5),
    ("train/3.mp4", 25.0, "slider", "train", 0, 100),
    ("train/4.mp4", 90.0, "slider", "train", 0, 100),
    ("train/5.mp4", 60.0, "slider", "train", 0, 100),
    ("test/6.mp4", 3.5, "acr5", "test", 1, 5),
    ("test/7.mp4", 1.5, "acr5", "test", 1, 5),
]


def _write_clip(path: Path, level: int, frames: int = 16) -> None:
    """A 64x48 moving gradient with noise ``level``, encoded with libx264."""
    rng = np.random.default_rng(level)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        ramp = np.linspace(0, 200, 64, dtype=np.float32)[None, :, None]
        for t in range(frames):
            img = np.roll(ramp, 2 * t, axis=1) + rng.normal(0, 8 * level, (48, 64, 3))
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tinybench")
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["video", "mos", "source", "split", "content", "distortions", "severities", "q", "scale_lo", "scale_hi"]
        )
        for k, (video, mos, source, split, lo, hi) in enumerate(ROWS):
            _write_clip(root / video, k % 4)
            writer.writerow([video, mos, source, split, "shapes", "noise;blur", "0.5;0.2", 0.5, lo, hi])
    return root / "labels.csv"


def _spec(labels: Path, name: str, split: str, group: str = "in_domain") -> BenchmarkSpec:
    return BenchmarkSpec(name=name, benchmark="synthetic", label_file=str(labels), split=split, group=group)


def _dm(labels: Path, **kw) -> PairwiseVideoDataModule:
    args = dict(
        train_sets=[_spec(labels, "syn", "train")],
        val_sets=[_spec(labels, "syn_test", "test")],
        test_sets=[_spec(labels, "syn_test", "test"), _spec(labels, "syn_ood", "test", "out_of_domain")],
        num_train_pairs=6,
        num_val_pairs=1,
        batch_size=3,
        num_frames=4,
        motion_frames=8,
        frame_size=32,
        motion_size=32,
        clip_cache_size=16,
    )
    args.update(kw)
    return PairwiseVideoDataModule(**args)


def test_motion_crop_reaches_the_decoded_clips(bench: Path) -> None:
    """``motion_crop="native"`` (conf/tiny.yaml) is what the datasets decode with, and in the cache key."""
    dm = _dm(bench, motion_crop="native")
    dm.setup("fit")
    clip = next(iter(dm.train_dataloader())).clips_a[0]
    native = load_clip(clip.path, num_frames=4, motion_frames=8, size=32, motion_size=32, motion_crop="native")
    resized = load_clip(clip.path, num_frames=4, motion_frames=8, size=32, motion_size=32)
    assert torch.equal(clip.motion, native.motion) and clip.key == native.key != resized.key


def test_train_batches_are_pairs_within_one_source(bench: Path) -> None:
    dm = _dm(bench)
    dm.setup("fit")
    first = dm._datasets["train"]
    dm.setup("fit")  # idempotent: same dataset object, tables read once
    assert dm._datasets["train"] is first
    batches = list(dm.train_dataloader())
    assert [len(b) for b in batches] == [3, 3]
    batch = batches[0]
    assert isinstance(batch, PairBatch) and isinstance(batch.clips_a[0], Clip)
    assert batch.clips_a[0].frames.shape == (4, 3, 32, 43) and batch.clips_a[0].frames.dtype == torch.uint8
    assert batch.clips_b[0].motion.shape[0] == 8
    assert batch.margin.dtype == torch.float32 and batch.index_a.dtype == torch.long
    assert all(isinstance(r, str) and "Video A" in r for r in batch.rationale)
    table = dm._tables["syn"]
    assert table.mos.tolist() == [2.0, 4.5, 3.0, 2.0, 4.6, 3.4]  # per-row scales mapped to [1, 5]
    ia = torch.cat([b.index_a for b in batches]).numpy()
    ib = torch.cat([b.index_b for b in batches]).numpy()
    source = np.asarray(table.extra["source"])
    assert np.all(source[ia] == source[ib])  # 3 + 3 videos per source: all 6 pairs
    assert np.allclose(torch.cat([b.margin for b in batches]).numpy(), table.mos[ia] - table.mos[ib])
    counts = np.bincount(ia, minlength=6) - np.bincount(ib, minlength=6)
    assert np.all(counts == 0)  # every video first exactly as often as second


def test_pairs_are_deterministic_and_reasoning_off_gives_empty_rationales(bench: Path) -> None:
    a, b = _dm(bench, reasoning=False), _dm(bench, reasoning=False)
    a.setup("fit")
    b.setup("fit")
    pa, pb = a._datasets["train"].datasets[0].pairs, b._datasets["train"].datasets[0].pairs
    assert np.array_equal(pa.index_a, pb.index_a) and np.array_equal(pa.index_b, pb.index_b)
    batch = next(iter(a.train_dataloader()))
    assert batch.rationale == ["", "", ""]


def _note(a: str, b: str, margin: float, status: str = "accepted", **kw: object) -> str:
    return (
        json.dumps(
            {"video_a": a, "video_b": b, "status": status, "rationale": f"{a} vs {b}. {verdict_sentence(margin)}", **kw}
        )
        + "\n"
    )


def test_rationale_file_supplies_the_training_pairs_and_reports_coverage(bench: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jsonl"
    notes.write_text(
        _note("train/1.mp4", "train/0.mp4", 2.5)
        + _note("train/4.mp4", "train/5.mp4", 4.6 - 3.4)
        + _note("train/2.mp4", "train/1.mp4", -1.5, "rejected", reason="score_leak")
        + _note("train/3.mp4", "train/5.mp4", -1.4, "failed", reason="timeout")
        + _note("train/0.mp4", "train/2.mp4", 1.0)
    )  # verdict disagrees: B is better
    dm = _dm(bench, rationale_file=str(notes), batch_size=4)
    batch = next(iter(dm.train_dataloader()))
    got = sorted(zip(batch.rationale, batch.margin.tolist()))
    assert [r.split(" Overall")[0] for r, _ in got] == ["train/1.mp4 vs train/0.mp4.", "train/4.mp4 vs train/5.mp4."]
    assert [m for _, m in got] == [pytest.approx(2.5), pytest.approx(1.2)]
    (cov,) = dm.rationale_coverage
    assert (cov.listed, cov.used, cov.disagree) == (5, 2, 1)
    assert dict(cov.rejected) == {"score_leak": 1} and dict(cov.failed) == {"timeout": 1}
    plain = _dm(bench, rationale_file=str(notes), batch_size=4, reasoning=False)
    batch = next(iter(plain.train_dataloader()))  # the same pairs, no text (the ablation's data)
    assert batch.rationale == ["", ""] and sorted(batch.margin.tolist()) == [pytest.approx(1.2), pytest.approx(2.5)]


def test_rationale_file_without_usable_pairs_is_an_error(bench: Path, tmp_path: Path) -> None:
    notes = tmp_path / "bad.jsonl"
    notes.write_text(_note("train/2.mp4", "train/1.mp4", -1.5, "rejected", reason="no_verdict"))
    with pytest.raises(ValueError, match=r"bad\.jsonl: no usable rationale.*'syn'.*no_verdict 1"):
        _dm(bench, rationale_file=str(notes)).setup("fit")
    with pytest.raises(FileNotFoundError, match="absent.jsonl"):
        _dm(bench, rationale_file=str(tmp_path / "absent.jsonl")).setup("fit")


def test_eval_items_are_single_videos_and_sets_grouped(bench: Path) -> None:
    dm = _dm(bench, eval_batch_size=3)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert isinstance(batch, VideoBatch) and batch.benchmark == ["syn_test", "syn_test", "syn_ood"]
    assert batch.index.tolist() == [0, 1, 0] and batch.error == [None, None, None]
    assert batch.mos.tolist() == [3.5, 1.5, 3.5]
    sets = dm.eval_sets("test")
    assert all(isinstance(s, EvalSet) for s in sets)
    assert [(s.name, s.group, len(s.table)) for s in sets] == [
        ("syn_test", "in_domain", 2),
        ("syn_ood", "out_of_domain", 2),
    ]
    clip = dm.get_clip("syn_ood", 1)
    assert dm.get_clip("syn_ood", 1) is clip  # LRU-cached decode
    with pytest.raises(KeyError, match="known"):
        dm.get_clip("nope", 0)
    with pytest.raises(ValueError, match="allowed|one of"):
        dm.eval_sets("train")


def test_no_split_leakage_is_enforced(bench: Path) -> None:
    dm = _dm(bench, val_sets=[_spec(bench, "same", "train")])
    with pytest.raises(ValueError, match="also in the training sets"):
        dm.setup("fit")


def test_bad_video_skipped_in_training_and_reported_in_eval(bench: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(bench.parent, root)
    victim = root / "train" / "4.mp4"
    victim.write_bytes(b"not a video")
    labels = root / "labels.csv"
    dm = _dm(labels)
    dm.setup("fit")
    train = dm._datasets["train"]
    with pytest.warns(UserWarning, match=r"undecodable video .*4\.mp4"):
        items = [train[k] for k in range(len(train))]
    assert all(it["clip_a"] is not None and 4 not in (it["index_a"], it["index_b"]) for it in items)
    assert list(dm.bad_videos()) == [str(victim)]
    strict = _dm(labels, skip_bad_videos=False)
    strict.setup("fit")
    with pytest.raises(VideoDecodeError, match="4.mp4"):
        [strict._datasets["train"][k] for k in range(len(strict._datasets["train"]))]
    with pytest.raises(VideoDecodeError, match="4.mp4"):
        dm.get_clip("syn", 4)


def test_predict_from_folder_marks_corrupt_files(bench: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    for f in sorted((bench.parent / "train").glob("*.mp4"))[:3]:
        shutil.copy(f, folder / f.name)
    (folder / "broken.mp4").write_bytes(b"\x00" * 64)
    dm = PairwiseVideoDataModule(
        videos=str(folder), num_frames=4, motion_frames=8, frame_size=32, motion_size=32, eval_batch_size=8
    )
    with pytest.warns(UserWarning, match="broken.mp4"):
        batch = next(iter(dm.predict_dataloader()))
    k = batch.name.index("broken.mp4")
    assert len(batch) == 4 and batch.clips[k] is None and "broken.mp4" in batch.error[k]
    assert sum(c is None for c in batch.clips) == 1 and torch.isnan(batch.mos).all()
    assert dm.eval_sets("predict")[0].table.names == ["0.mp4", "1.mp4", "2.mp4", "broken.mp4"]


def test_predict_from_csv_with_optional_mos_and_anchors(bench: Path) -> None:
    lst = bench.parent / "mine.csv"
    lst.write_text("video,mos\ntrain/0.mp4,80\ntrain/1.mp4,\n")
    anchors = bench.parent / "anchors.csv"
    anchors.write_text("video,mos\ntrain/2.mp4,70\n")
    dm = PairwiseVideoDataModule(
        videos=str(lst), anchors=str(anchors), num_frames=4, motion_frames=8, frame_size=32, motion_size=32
    )
    table = dm.eval_sets("predict")[0].table
    assert np.isnan(table.mos).all() and table.mos_raw[0] == 80.0 and np.isnan(table.mos_raw[1])
    assert dm.anchor_table().mos_raw.tolist() == [70.0]


def test_pointwise_mode_and_bad_option(bench: Path) -> None:
    dm = _dm(bench, mode="pointwise", batch_size=6)
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, VideoBatch) and len(batch) == 6
    assert sorted(batch.mos.tolist()) == pytest.approx([2.0, 2.0, 3.0, 3.4, 4.5, 4.6])
    # pointwise SFT with reasoning: one truthful single-video rationale per video, its own level
    assert batch.rationale is not None and len(batch.rationale) == 6
    for mos, text in zip(batch.mos.tolist(), batch.rationale):
        assert "noise" in text and "blur" in text and "Video B" not in text
        assert ("excellent" in text) == (mos >= 4.5) and ("poor" in text) == (1.5 <= mos < 2.5), (mos, text)
    plain = next(iter(_dm(bench, mode="pointwise", batch_size=6, reasoning=False).train_dataloader()))
    assert plain.rationale == [""] * 6
    with pytest.raises(ValueError, match="pairwise"):
        _dm(bench, mode="listwise")


def test_videos_absent_from_disk_are_left_out_of_training_pairs(bench: Path, tmp_path: Path) -> None:
    root = tmp_path / "partial"
    shutil.copytree(bench.parent, root)
    (root / "train" / "1.mp4").unlink()
    dm = _dm(root / "labels.csv", num_train_pairs=4)
    with pytest.warns(UserWarning, match="1 of 6 listed videos are not on disk"):
        dm.setup("fit")
    pairs = dm._datasets["train"].datasets[0].pairs
    assert dm._tables["syn"].missing == ["train/1.mp4"] and len(pairs) == 4
    assert 1 not in set(pairs.index_a.tolist()) | set(pairs.index_b.tolist())
    table = dm._tables["syn"]
    assert np.allclose(pairs.margin, table.mos[pairs.index_a] - table.mos[pairs.index_b])
