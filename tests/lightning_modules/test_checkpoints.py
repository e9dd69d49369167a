"""Checkpoint paths: files, DeepSpeed checkpoint folders (consolidated), clear errors (issue 9, item 3)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning
import pytest
import torch

from lightning_modules import checkpoints as ck
from lightning_modules.versusq import VersusQModule

HPARAMS = {
    "motion_frames": 8,
    "head_hidden": 16,
    "max_new_tokens": 12,
    "_class_path": "lightning_modules.versusq.VersusQModule",
}
CLIENT = {"hyper_parameters": HPARAMS, "global_step": 3, "epoch": 0, "pytorch-lightning_version": lightning.__version__}


@pytest.fixture(scope="module")
def trained() -> VersusQModule:
    return VersusQModule(motion_frames=8, head_hidden=16, seed=5)


FolderMaker = Callable[..., Path]


def test_settings_readable_without_deepspeed(
    tmp_path: Path, trained: VersusQModule, deepspeed_folder: FolderMaker
) -> None:
    folder = deepspeed_folder(tmp_path, trained.state_dict(), CLIENT)
    assert ck.is_deepspeed_checkpoint(folder) and ck.load_hparams(folder) == HPARAMS


def test_weights_need_deepspeed_clear_error(
    tmp_path: Path, trained: VersusQModule, deepspeed_folder: FolderMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ck, "_DEEPSPEED", False)
    folder = deepspeed_folder(tmp_path, trained.state_dict(), CLIENT)
    with pytest.raises(ImportError, match=r"DeepSpeed \(ZeRO\) checkpoint folder.*pip install 'versusq\[deepspeed\]'"):
        ck.load_state_dict(folder)


def test_folder_consolidated_once_and_used_by_init_from(
    tmp_path: Path, trained: VersusQModule, deepspeed_folder: FolderMaker, fake_deepspeed: Callable[..., list[Path]]
) -> None:
    folder = deepspeed_folder(tmp_path, trained.state_dict(), CLIENT)
    consolidated = fake_deepspeed(trained.state_dict())
    module = VersusQModule(motion_frames=8, head_hidden=16, init_from=str(folder))
    assert module.comparison_identity()["weights"] == trained.comparison_identity()["weights"]  # float32 weights
    assert (folder / ck.CONSOLIDATED).is_file() and consolidated == [folder]
    saved = torch.load(folder / ck.CONSOLIDATED, weights_only=False)
    assert saved["hyper_parameters"] == HPARAMS and saved["global_step"] == 3  # Lightning client state kept
    ck.load_state_dict(folder)  # the reference policy reads it again: the file is reused
    assert consolidated == [folder]


def test_paths_that_are_not_checkpoints(tmp_path: Path, trained: VersusQModule, deepspeed_folder: FolderMaker) -> None:
    folder = deepspeed_folder(tmp_path, trained.state_dict(), CLIENT)
    with pytest.raises(ValueError, match=f"pass its folder {folder}"):
        ck.load_state_dict(folder / "checkpoint")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="not a DeepSpeed checkpoint"):
        ck.load_hparams(tmp_path / "plain")
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        ck.load_state_dict(tmp_path / "missing.ckpt")
