"""Fixtures of the evaluation-side tests: a benchmark datamodule and a MOS-oracle model.

Both speak the real batch types: the datamodule hands out real :class:`datamodules.video.Clip`
objects (tiny tensors) and real ``VideoBatch``es for the encode pass, the callback builds real
``PairBatch``es, and the fake model reads the true MOS from the batch's benchmark and indices.
The model answers ``(mos_a - mos_b) + bias + small deterministic noise``, so every number the
evaluation reports is known in advance and the evaluation logic is tested alone.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from torch.utils.data import DataLoader

from callbacks.evaluation import ComparisonGraphEvaluation
from datamodules.benchmarks import VideoTable
from datamodules.pairwise import EvalSet, PairBatch, VideoBatch
from datamodules.video import Clip, VideoDecodeError

N = 40
REPO = Path(__file__).resolve().parents[2]
# another process holding a journal lock: argv = lock file, seconds to hold it
HOLDER = """import sys, time
from callbacks.journal import JournalLock
lock = JournalLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def make_clip(path: str) -> Clip:
    """A real ``Clip`` with one 2x2 frame (the fake model never looks at pixels)."""
    pixels = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)  # (T, 3, H, W)
    return Clip(
        path=path,
        key=path,
        frames=pixels,
        motion=pixels.clone(),
        fps=25.0,
        frame_count=1,
        duration=0.04,
        width=2,
        height=2,
        rotation=0,
        padded=False,
        backend="fake",
    )


class FakeDataModule(LightningDataModule):
    """Benchmarks of fake videos with known MOS.

    Args:
        sets: ``{name: (mos (N,), group)}``.
        decode_bad: rows that fail everywhere (encode pass and ``get_clip``).
        encode_bad: rows the encode pass reports as undecodable (``clip is None``).
        late_bad: rows that decode in the encode pass but fail in ``get_clip``.
        mos_raw: MOS on the user's scale (anchors at predict); default: ``mos``.
    """

    def __init__(
        self,
        sets: dict[str, tuple[np.ndarray, str]],
        decode_bad: Iterable[int] = (),
        encode_bad: Iterable[int] = (),
        late_bad: Iterable[int] = (),
        mos_raw: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.tables = {
            name: VideoTable(
                name,
                [f"{name}/v{i:03d}.mp4" for i in range(len(m))],
                [f"/videos/{name}/v{i:03d}.mp4" for i in range(len(m))],
                m,
                m.copy() if mos_raw is None else mos_raw,
                ["test"] * len(m),
            )
            for name, (m, _) in sets.items()
        }
        self.groups = {name: g for name, (_, g) in sets.items()}
        self.decode_bad, self.encode_bad = set(decode_bad), set(encode_bad)
        self.late_bad = set(late_bad)

    def truth(self) -> dict[str, np.ndarray]:
        """``{benchmark: (N,) MOS}`` for the fake model."""
        return {name: np.asarray(t.mos, dtype=float) for name, t in self.tables.items()}

    def eval_sets(self, stage: str) -> list[EvalSet]:
        return [EvalSet(n, t, self.groups[n]) for n, t in self.tables.items()]

    def get_clip(self, benchmark: str, index: int) -> Clip:
        if index in self.decode_bad | self.late_bad:
            raise VideoDecodeError(self.tables[benchmark].paths[index], "truncated file")
        return make_clip(self.tables[benchmark].paths[index])

    def _error(self, i: int) -> str | None:
        if i in self.decode_bad:
            return "truncated file"
        return "zero-length file" if i in self.encode_bad else None

    def _batches(self) -> list[VideoBatch]:
        out = []
        for name, t in self.tables.items():
            idx = list(range(len(t)))
            errors = [self._error(i) for i in idx]
            clips = [None if e else make_clip(t.paths[i]) for i, e in zip(idx, errors)]
            out.append(
                VideoBatch(
                    clips,
                    torch.tensor(idx),
                    [name] * len(idx),
                    list(t.names),
                    torch.tensor(t.mos, dtype=torch.float32),
                    errors,
                )
            )
        return out

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self._batches(), batch_size=None)

    predict_dataloader = val_dataloader = test_dataloader


class MosOracle(LightningModule):
    """``predict_margin`` = ``mos_a - mos_b + bias + noise``; records every asked pair.

    ``comparison_identity()`` mirrors the real module's: a content hash of the weights plus the
    settings that change an answer. ``forced_every = k`` marks pairs with ``(a + b) % k == 0``
    as forced (a third returned element); ``fail_after`` raises after that many model calls.
    """

    def __init__(
        self,
        truth: dict[str, np.ndarray],
        bias: float = 0.0,
        noise: float = 0.05,
        fail_after: int | None = None,
        target: str = "pairwise",
        checkpoint: str = "ckpt:fake:0",
        max_new_tokens: int = 64,
        readout: str = "head",
        forced_every: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["truth"])
        self.truth, self.checkpoint_id = truth, checkpoint
        self.asked: list[tuple[int, int]] = []
        self.calls = 0
        self.layer = torch.nn.Linear(1, 1)
        torch.nn.init.constant_(self.layer.weight, 0.5)  # same "checkpoint" -> same weights

    def comparison_identity(self) -> dict[str, Any]:
        weights = hashlib.sha256(self.layer.weight.detach().numpy().tobytes()).hexdigest()[:16]
        hp = self.hparams
        return {
            "weights": weights,
            "max_new_tokens": hp.max_new_tokens,
            "readout": hp.readout,
            "target": hp.target,
            "template": 1,
        }

    def _noise(self, a: int, b: int) -> float:
        return self.hparams.noise * math.sin(12.9898 * a + 78.233 * b)

    def _tag(self) -> str:
        return f"tokens={self.hparams.max_new_tokens} readout={self.hparams.readout}"

    def predict_margin(self, batch: PairBatch) -> tuple[torch.Tensor, ...]:
        assert isinstance(batch, PairBatch) and batch.margin is None
        self.calls += 1
        if self.hparams.fail_after is not None and self.calls > self.hparams.fail_after:
            raise RuntimeError("simulated kill")
        mos = self.truth[batch.benchmark[0]]
        pairs = list(zip(batch.index_a.tolist(), batch.index_b.tolist()))
        self.asked += pairs
        margins = torch.tensor([mos[a] - mos[b] + self.hparams.bias + self._noise(a, b) for a, b in pairs])  # (B,)
        texts = [f"A={a} B={b} {self._tag()}" for a, b in pairs]
        k = self.hparams.forced_every
        if not k:
            return margins, texts
        return margins, texts, torch.tensor([(a + b) % k == 0 for a, b in pairs])  # (B,) bool

    def predict_score(self, batch: VideoBatch) -> tuple[torch.Tensor, list[str]]:
        assert isinstance(batch, VideoBatch)
        mos = self.truth[batch.benchmark[0]] if len(batch) else np.zeros(0)
        scores = [
            np.nan if c is None else mos[i] + self._noise(i, 0) for c, i in zip(batch.clips, batch.index.tolist())
        ]
        return torch.tensor(scores, dtype=torch.float32), ["pointwise" for _ in batch.clips]

    def test_step(self, batch: VideoBatch, batch_idx: int) -> int:
        return len(batch)

    def predict_step(self, batch: VideoBatch, batch_idx: int, dataloader_idx: int = 0) -> int:
        return len(batch)


class NoIdentityOracle(MosOracle):
    """A model without ``comparison_identity`` (the journal falls back to ``checkpoint_id``)."""

    comparison_identity = None  # type: ignore[assignment]


def mos_values(n: int = N, seed: int = 0) -> np.ndarray:
    """``n`` MOS values uniform in [1, 5]."""
    return np.random.default_rng(seed).uniform(1, 5, n)


@pytest.fixture
def fakes() -> Any:
    """The fake classes and helpers (tests cannot import this conftest under importlib)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        DataModule=FakeDataModule, Oracle=MosOracle, NoIdentityOracle=NoIdentityOracle, mos=mos_values, N=N
    )


@pytest.fixture
def run_eval() -> Callable[..., ComparisonGraphEvaluation]:
    """``run_eval(root, model, dm, stage="test", logger=False, **callback_kwargs)``.

    Runs ``trainer.<stage>`` with ``default_root_dir=root`` and results under ``root/out``
    (unless ``output_dir`` is given); tests pass ``callback=`` to use a prepared callback.
    """

    def run(
        root: Path,
        model: LightningModule,
        dm: LightningDataModule,
        stage: str = "test",
        logger: Any = False,
        callback: ComparisonGraphEvaluation | None = None,
        **kwargs: Any,
    ) -> ComparisonGraphEvaluation:
        cb = callback or ComparisonGraphEvaluation(
            **{"batch_size": 16, "progress": False, "convergence_steps": 0, "output_dir": str(root / "out"), **kwargs}
        )
        trainer = Trainer(
            accelerator="cpu",
            devices=1,
            logger=logger,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[cb],
            default_root_dir=str(root),
        )
        getattr(trainer, stage)(model, datamodule=dm)
        cb.trainer = trainer  # type: ignore[attr-defined]
        return cb

    return run


@pytest.fixture
def hold_lock() -> Iterator[Callable[..., subprocess.Popen]]:
    """``hold_lock(lock_file, seconds=600)``: a real second process holding the lock (it has
    the lock when this returns); killed at teardown."""
    procs: list[subprocess.Popen] = []

    def start(lock_file: Path, seconds: float = 600.0) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(lock_file), str(seconds)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()
