"""Fixtures of the CLI tests: a tiny synthetic benchmark and a tiny SFT checkpoint, built once.

Every run writes under pytest's temporary folders (``default_root_dir`` and the TensorBoard
``save_dir`` are always overridden), never into the checkout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import run
from datamodules.synthetic import generate_benchmark
from lightning_modules.versusq import VersusQModule

#: The SFT checkpoint is trained with this temperature (a setting the test runs do not give).
CKPT_TEMPERATURE = 0.5


def conf(name: str) -> str:
    """Absolute path of ``conf/<name>`` (tests may run from any directory)."""
    return str(run.CONF / name)


def _sets(key: str, data: Path, split: str) -> str:
    """A list-valued data option (jsonargparse replaces lists whole; no per-index override)."""
    spec = {"name": f"syn_{split}", "label_file": str(data / "labels.csv"), "video_root": str(data), "split": split}
    return f"--data.init_args.{key}={json.dumps([spec])}"


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny synthetic benchmark (32 clips: 16 train, 4 per test / OOD split)."""
    data = tmp_path_factory.mktemp("cli") / "synthetic"
    generate_benchmark(data, seed=0, size="tiny", workers=1)
    return data


@pytest.fixture(scope="session")
def data_args(synthetic: Path) -> list[str]:
    """Overrides pointing train / val / test sets at :func:`synthetic`."""
    return [
        _sets("train_sets", synthetic, "train"),
        _sets("val_sets", synthetic, "test"),
        _sets("test_sets", synthetic, "ood_content"),
    ]


@pytest.fixture(scope="session")
def out_args() -> Callable[[Path], list[str]]:
    """``root -> [--trainer.default_root_dir root, --trainer.logger.init_args.save_dir root]``."""
    return lambda root: [f"--trainer.default_root_dir={root}", f"--trainer.logger.init_args.save_dir={root}"]


@pytest.fixture(scope="session")
def sft_ckpt(
    tmp_path_factory: pytest.TempPathFactory, data_args: list[str], out_args: Callable[[Path], list[str]]
) -> Path:
    """``last.ckpt`` of 2 tiny SFT steps, trained with an ``init_from`` file that is then deleted
    (so a run that tried to load it again would fail) and ``temperature`` 0.5."""
    root = tmp_path_factory.mktemp("sft")
    init = root / "init.ckpt"
    torch.save({"state_dict": VersusQModule(motion_frames=16, head_hidden=64).state_dict()}, init)
    run.main(
        [
            "fit",
            "--config",
            conf("sft.yaml"),
            "--config",
            conf("tiny.yaml"),
            "--trainer.max_steps=2",
            "--trainer.limit_val_batches=0",
            f"--model.init_args.init_from={init}",
            f"--model.init_args.temperature={CKPT_TEMPERATURE}",
            *out_args(root),
            *data_args,
        ]
    )
    init.unlink()
    return next(root.rglob("last.ckpt"))
