"""ComparisonGraphEvaluation with a MOS-oracle fake model and a fake datamodule (no real model).

The fake model answers ``predict_margin`` with ``(mos_a - mos_b) + bias + small noise`` read from
fake clips, so every number below is known in advance and the evaluation logic is tested alone.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from callbacks.evaluation import ComparisonGraphEvaluation, _cli, compact_graph
from callbacks.journal import read_journal
from datamodules.benchmarks import VideoTable
from datamodules.pairwise import EvalSet, VideoBatch
from datamodules.video import VideoDecodeError

N = 40


class FakeDataModule(LightningDataModule):
    """Benchmarks of fake clips (``clip.mos``); ``decode_bad`` rows raise, ``encode_bad`` are None."""

    def __init__(self, sets: dict[str, tuple[np.ndarray, str]], decode_bad: set[int] = frozenset(),
                 encode_bad: set[int] = frozenset(), mos_raw: np.ndarray | None = None) -> None:
        super().__init__()
        self.tables = {name: VideoTable(name, [f"{name}/v{i:03d}.mp4" for i in range(len(m))],
                                        [f"/videos/{name}/v{i:03d}.mp4" for i in range(len(m))],
                                        m, m.copy() if mos_raw is None else mos_raw,
                                        ["test"] * len(m))
                       for name, (m, _) in sets.items()}
        self.groups = {name: g for name, (_, g) in sets.items()}
        self.decode_bad, self.encode_bad = set(decode_bad), set(encode_bad)

    def eval_sets(self, stage: str) -> list[EvalSet]:
        return [EvalSet(n, t, self.groups[n]) for n, t in self.tables.items()]

    def get_clip(self, benchmark: str, index: int) -> Any:
        if index in self.decode_bad:
            raise VideoDecodeError(self.tables[benchmark].paths[index], "truncated file")
        return SimpleNamespace(path=self.tables[benchmark].paths[index], index=index,
                               mos=float(self.tables[benchmark].mos[index]))

    def _batches(self) -> list[VideoBatch]:
        out = []
        for name, t in self.tables.items():
            idx = list(range(len(t)))
            errors = ["truncated file" if i in self.decode_bad else "zero-length file"
                      if i in self.encode_bad else None for i in idx]
            clips = [None if e else self.get_clip(name, i) for i, e in zip(idx, errors)]
            out.append(VideoBatch(clips, torch.tensor(idx), [name] * len(idx), t.names,
                                  torch.tensor(t.mos, dtype=torch.float32), errors))
        return out

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._batches(), batch_size=None)

    predict_dataloader = val_dataloader = test_dataloader


class MosOracle(LightningModule):
    """``predict_margin`` = ``mos_a - mos_b + bias + noise``; counts every asked pair."""

    def __init__(self, bias: float = 0.0, noise: float = 0.05, fail_after: int | None = None,
                 target: str = "pairwise", checkpoint: str = "ckpt:fake:0") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.checkpoint_id = checkpoint
        self.asked: list[tuple[int, int]] = []
        self.calls = 0
        self.layer = torch.nn.Linear(1, 1)

    def _noise(self, a: int, b: int) -> float:
        return self.hparams.noise * math.sin(12.9898 * a + 78.233 * b)

    def predict_margin(self, batch: Any) -> tuple[torch.Tensor, list[str]]:
        self.calls += 1
        if self.hparams.fail_after is not None and self.calls > self.hparams.fail_after:
            raise RuntimeError("simulated kill")
        out = []
        for a, b in zip(batch.clips_a, batch.clips_b):
            self.asked.append((a.index, b.index))
            out.append(a.mos - b.mos + self.hparams.bias + self._noise(a.index, b.index))
        return torch.tensor(out), [f"A={a.index} B={b.index}" for a, b in
                                   zip(batch.clips_a, batch.clips_b)]

    def predict_score(self, batch: Any) -> tuple[torch.Tensor, list[str]]:
        scores = [np.nan if c is None else c.mos + self._noise(c.index, 0) for c in batch.clips]
        return torch.tensor(scores), ["pointwise" for _ in batch.clips]

    def test_step(self, batch: Any, batch_idx: int) -> int:
        return len(batch)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> int:
        return len(batch)


def _mos(n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1, 5, n)


def _run(tmp_path: Path, model: MosOracle, dm: FakeDataModule, stage: str = "test",
         logger: Any = False, **kwargs: Any) -> ComparisonGraphEvaluation:
    cb = ComparisonGraphEvaluation(**{"batch_size": 16, "progress": False, "convergence_steps": 0,
                                      "output_dir": str(tmp_path / "out"), **kwargs})
    trainer = Trainer(accelerator="cpu", devices=1, logger=logger, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[cb],
                      default_root_dir=str(tmp_path))
    getattr(trainer, stage)(model, datamodule=dm)
    cb.trainer = trainer
    return cb


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_mos_oracle_recovers_ranking_and_writes_tables(tmp_path: Path) -> None:
    dm = FakeDataModule({"lsvq_test": (_mos(), "in_domain"), "konvid": (_mos(seed=1), "ood")})
    cb = _run(tmp_path, MosOracle(), dm)
    metrics = cb.trainer.callback_metrics
    assert metrics["test/lsvq_test/lsq_srcc"] > 0.95
    assert metrics["test/konvid/lsq_plcc"] > 0.95
    assert metrics["test/konvid/elo_srcc"] > 0.8
    assert "test/avg_in_domain/lsq_srcc" in metrics and "test/avg_out_of_domain/bt_srcc" in metrics
    rows = _rows(tmp_path / "out" / "results.csv")
    assert {r["aggregator"] for r in rows} == {"lsq", "elo", "winrate", "bt"}
    assert all(int(r["n_pairs"]) == 5 * N for r in rows)  # the 5N budget
    table1 = (tmp_path / "out" / "table1.md").read_text()
    header = table1.splitlines()[2]
    assert header.split("|")[2:6] == [" LSVQ-Test ", " Avg. ", " KoNViD ", " Avg. "]
    assert table1.index("**SRCC**") < table1.index("**PLCC**")
    t2 = (tmp_path / "out" / "table2_recovery.md").read_text()
    assert [t2.index(x) < t2.index(y) for x, y in [("Win-rate", "Elo"), ("Elo", "Least-squares")]]\
        == [True, True]
    assert (tmp_path / "out" / "journal_lsvq_test.jsonl").is_file()
    assert json.loads((tmp_path / "out" / "run_info.json").read_text())["checkpoint_id"] == \
        "ckpt:fake:0"


def test_bad_videos_are_listed_and_run_completes(tmp_path: Path) -> None:
    dm = FakeDataModule({"konvid": (_mos(), "out_of_domain")}, decode_bad={7}, encode_bad={11})
    model = MosOracle()
    cb = _run(tmp_path, model, dm)
    bad = {int(r["index"]): r["reason"] for r in _rows(tmp_path / "out" / "bad_videos.csv")}
    assert set(bad) == {7, 11} and "truncated file" in bad[7] and "zero-length" in bad[11]
    assert not {7, 11} & {i for pair in model.asked for i in pair}  # never sent to the model
    outcome = cb.outcomes["konvid"]
    assert not outcome.valid[[7, 11]].any() and outcome.valid.sum() == N - 2
    assert cb.trainer.callback_metrics["test/konvid/lsq_srcc"] > 0.95


def test_decode_failure_inside_the_graph_is_dropped(tmp_path: Path) -> None:
    dm = FakeDataModule({"konvid": (_mos(), "out_of_domain")}, decode_bad={3})
    dm._batches = lambda: [VideoBatch([None], torch.tensor([0]), ["x"], ["x"],  # type: ignore
                                      torch.tensor([1.0]), ["not listed"])][:0] or \
        FakeDataModule({"konvid": (_mos(), "o")})._batches()  # encode pass sees no failure
    cb = _run(tmp_path, MosOracle(), dm)
    outcome = cb.outcomes["konvid"]
    assert 3 in outcome.bad and "truncated" in outcome.bad[3]
    later = outcome.pairs[np.isfinite(outcome.margins)]
    assert 3 not in later  # no usable comparison involves the bad video
    _, records = read_journal(next((tmp_path / "journals").rglob("*.jsonl")))
    assert any(r["type"] == "bad" and r["index"] == 3 for r in records)


def test_resume_after_kill_repeats_no_pair_and_matches_uninterrupted(tmp_path: Path) -> None:
    dm = FakeDataModule({"konvid": (_mos(), "out_of_domain")})
    first = MosOracle(fail_after=5)
    with pytest.raises(RuntimeError, match="simulated kill"):
        _run(tmp_path / "run", first, dm)
    journal = next((tmp_path / "run" / "journals").rglob("*.jsonl"))
    with open(journal, "a") as f:
        f.write('{"type": "pair", "i": 1')  # torn line of the kill
    second = MosOracle()
    with pytest.warns(RuntimeWarning, match="torn"):
        cb = _run(tmp_path / "run", second, dm)
    assert len(first.asked) == 5 * 16 and not set(first.asked) & set(second.asked)
    assert len(first.asked) + len(second.asked) == 5 * N + cb.antisymmetry_pairs
    fresh = _run(tmp_path / "fresh", MosOracle(), dm)
    np.testing.assert_allclose(cb.outcomes["konvid"].scores["lsq"],
                               fresh.outcomes["konvid"].scores["lsq"])


@pytest.mark.parametrize(("bias", "expected"), [(0.0, 0.0), (0.3, 0.6)])
def test_antisymmetry_metric(tmp_path: Path, bias: float, expected: float) -> None:
    dm = FakeDataModule({"konvid": (_mos(), "out_of_domain")})
    cb = _run(tmp_path, MosOracle(bias=bias, noise=0.0), dm, antisymmetry_pairs=10)
    assert cb.trainer.callback_metrics["test/konvid/antisymmetry"] == pytest.approx(expected,
                                                                                    abs=1e-6)


def test_symmetrize_removes_position_bias(tmp_path: Path) -> None:
    dm = FakeDataModule({"konvid": (_mos(), "out_of_domain")})
    cb = _run(tmp_path, MosOracle(bias=0.5, noise=0.0), dm, symmetrize=True)
    o = cb.outcomes["konvid"]
    truth = dm.tables["konvid"].mos
    np.testing.assert_allclose(o.margins, truth[o.pairs[:, 0]] - truth[o.pairs[:, 1]], atol=1e-5)
    assert o.antisymmetry == pytest.approx(1.0, abs=1e-5)


def test_pointwise_model_correlates_scores_directly(tmp_path: Path) -> None:
    dm = FakeDataModule({"konvid": (_mos(), "out_of_domain")}, decode_bad={2})
    cb = _run(tmp_path, MosOracle(target="pointwise"), dm)
    assert cb.trainer.callback_metrics["test/konvid/direct_srcc"] > 0.95
    assert {r["aggregator"] for r in _rows(tmp_path / "out" / "results.csv")} == {"direct"}
    assert 2 in cb.outcomes["konvid"].bad


def test_foreign_journal_is_refused(tmp_path: Path) -> None:
    dm = FakeDataModule({"konvid": (_mos(), "out_of_domain")})
    _run(tmp_path, MosOracle(), dm, journal_dir=str(tmp_path / "j"))
    with pytest.raises(ValueError, match="ckpt:other:1") as err:
        _run(tmp_path, MosOracle(checkpoint="ckpt:other:1"), dm, journal_dir=str(tmp_path / "j"))
    assert "ckpt:fake:0" in str(err.value) and str(tmp_path / "j") in str(err.value)


def test_predict_writes_leaderboard_with_anchor_mapping(tmp_path: Path) -> None:
    mos = _mos(12)
    raw = np.full(12, np.nan)
    raw[:4] = 20.0 * mos[:4] + 3.0  # four anchors on the user's 0-100-like scale
    dm = FakeDataModule({"predict": (mos, "predict")}, decode_bad={5}, mos_raw=raw)
    with pytest.warns(UserWarning, match="no --ckpt_path"):
        _run(tmp_path, MosOracle(noise=0.0), dm, stage="predict")
    rows = _rows(tmp_path / "out" / "leaderboard.csv")
    assert list(rows[0])[:7] == ["rank", "video", "score", "stderr", "ci_low", "ci_high",
                                 "n_comparisons"]
    assert len(rows) == 11 and [int(r["rank"]) for r in rows] == list(range(1, 12))
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    mapped = {r["video"]: float(r["score_mapped"]) for r in rows}
    names = dm.tables["predict"].names
    for i in (0, 6, 11):  # anchors and non-anchors land on the user's scale
        assert mapped[names[i]] == pytest.approx(20.0 * mos[i] + 3.0, abs=1e-3)
    assert [r["video"] for r in _rows(tmp_path / "out" / "bad_videos.csv")] == [names[5]]
    _, records = read_journal(tmp_path / "out" / "comparisons.jsonl")
    assert all({"name_i", "name_j", "margin", "rationale"} <= set(r) for r in records
               if r["type"] == "pair")


def test_tensorboard_figures_and_convergence(tmp_path: Path) -> None:
    dm = FakeDataModule({"konvid": (_mos(), "out_of_domain")})
    logger = TensorBoardLogger(str(tmp_path), name="tb")
    _run(tmp_path, MosOracle(), dm, logger=logger, convergence_steps=5)
    curves = json.loads((tmp_path / "out" / "convergence.json").read_text())["konvid"]
    assert set(curves["curves"]) == {"lsq", "elo", "winrate", "bt"} and len(curves["edges"]) == 5
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(logger.log_dir)), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"test/konvid/convergence", "test/konvid/scatter"} <= set(tags["images"])
    assert any("rationales" in t for t in tags["tensors"])


def test_compact_graph_and_collation_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    p, _, ok = compact_graph(np.array([[0, 3], [3, 4]]), np.array([1.0, np.nan]), 5)
    assert p.tolist() == [[0, 1]] and ok.tolist() == [True, False, False, True, False]
    dm = FakeDataModule({"konvid": (_mos(), "out_of_domain")})
    _run(tmp_path, MosOracle(), dm)
    assert _cli(["tables", str(tmp_path / "out"), "--names", "mine",
                 "--out", str(tmp_path / "t2.md")]) == 0
    assert "| mine |" in capsys.readouterr().out and (tmp_path / "t2.md").is_file()
