"""PairwiseVideoDataModule on a tiny synthetic benchmark generated into tmp."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from datamodules.pairwise import BenchmarkSpec, PairBatch, PairwiseVideoDataModule, VideoBatch
from datamodules.synthetic import generate_benchmark


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    return generate_benchmark(out, seed=0, size="tiny", workers=1, progress=False)


def _dm(labels: Path, **kw) -> PairwiseVideoDataModule:
    spec = {"benchmark": "csv", "label_file": str(labels)}
    args = dict(train_sets=[BenchmarkSpec(name="syn", split="train", **spec)],
                val_sets=[BenchmarkSpec(name="syn_test", split="test", **spec)],
                test_sets=[BenchmarkSpec(name="syn_test", split="test", **spec),
                           BenchmarkSpec(name="syn_ood", split="ood_content", group="out_of_domain", **spec)],
                num_train_pairs=12, num_val_pairs=4, batch_size=3, num_frames=4, motion_frames=8,
                size=32, motion_size=32)
    args.update(kw)
    return PairwiseVideoDataModule(**args)


def test_train_batches_are_pairs_with_rationales(bench: Path) -> None:
    dm = _dm(bench)
    dm.setup("fit")
    first = dm._datasets["train"]
    dm.setup("fit")  # idempotent: same dataset object
    assert dm._datasets["train"] is first
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, PairBatch) and len(batch) == 3
    assert batch.clips_a[0].frames.shape[0] == 4 and batch.clips_a[0].frames.dtype == torch.uint8
    assert batch.margin.shape == (3,) and all(isinstance(r, str) and r for r in batch.rationale)
    table = dm._tables["syn"]
    expected = table.mos[batch.index_a.numpy()] - table.mos[batch.index_b.numpy()]
    assert torch.allclose(batch.margin, torch.tensor(expected, dtype=torch.float32))


def test_eval_items_are_single_videos_and_sets_grouped(bench: Path) -> None:
    dm = _dm(bench)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert isinstance(batch, VideoBatch) and batch.benchmark[0] == "syn_test"
    sets = dm.eval_sets("test")
    assert [s.group for s in sets] == ["in_domain", "out_of_domain"]
    clip = dm.get_clip("syn_ood", 0)
    assert dm.get_clip("syn_ood", 0) is clip  # LRU-cached decode


def test_no_split_leakage_is_enforced(bench: Path) -> None:
    spec = BenchmarkSpec(name="syn", benchmark="csv", label_file=str(bench), split="train")
    dm = _dm(bench, val_sets=[BenchmarkSpec(name="same", benchmark="csv", label_file=str(bench),
                                             split="train")], train_sets=[spec])
    with pytest.raises(ValueError, match="also in the training sets"):
        dm.setup("fit")


def test_bad_video_skipped_in_training_and_reported_in_eval(bench: Path, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(bench.parent, root)
    victim = sorted((root / "train").glob("*.mp4"))[0]
    victim.write_bytes(b"not a video")
    labels = root / bench.name
    dm = _dm(labels, num_train_pairs=40)
    dm.setup("fit")
    with pytest.warns(UserWarning, match="undecodable"):
        items = [dm._datasets["train"][k] for k in range(len(dm._datasets["train"]))]
    assert all(it["clip_a"] is not None for it in items)
    assert str(victim) in dm.bad_videos()
    strict = _dm(labels, num_train_pairs=40, skip_bad_videos=False)
    strict.setup("fit")
    with pytest.raises(Exception, match=victim.name):
        [strict._datasets["train"][k] for k in range(len(strict._datasets["train"]))]


def test_predict_from_folder_marks_corrupt_files(bench: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    for f in sorted((bench.parent / "test").glob("*.mp4"))[:3]:
        shutil.copy(f, folder / f.name)
    (folder / "broken.mp4").write_bytes(b"\x00" * 64)
    dm = PairwiseVideoDataModule(videos=str(folder), num_frames=4, motion_frames=8, size=32,
                                 motion_size=32, eval_batch_size=8)
    with pytest.warns(UserWarning):
        batch = next(iter(dm.predict_dataloader()))
    k = batch.name.index("broken.mp4")
    assert len(batch) == 4 and batch.clips[k] is None and "broken.mp4" in batch.error[k]
    assert sum(c is None for c in batch.clips) == 1 and torch.isnan(batch.mos).all()
    assert "broken.mp4" in dm.eval_sets("predict")[0].table.names


def test_pointwise_mode_and_bad_option(bench: Path) -> None:
    dm = _dm(bench, mode="pointwise")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, VideoBatch) and not torch.isnan(batch.mos).any()
    with pytest.raises(ValueError, match="pairwise"):
        _dm(bench, mode="listwise")
