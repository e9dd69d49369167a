"""VersusQ command-line entry point.

Usage::

    python run.py fit --config conf/sft.yaml
    python run.py fit --config conf/mcgrpo.yaml --model.init_from <sft.ckpt>
    python run.py test --config conf/eval.yaml --ckpt_path <ckpt>
    python run.py predict --config conf/predict.yaml --data.videos <folder or csv> --ckpt_path <ckpt>

Every setting lives in YAML under ``conf/`` (``class_path``/``init_args``), stacked with repeated
``--config``; ``conf/tiny.yaml`` is the CPU overlay.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import ArgsType, LightningCLI


def main(args: ArgsType = None, run: bool = True) -> LightningCLI:
    """Build the LightningCLI (and run the subcommand unless ``run`` is False)."""
    cli_kwargs: dict[str, Any] = {"save_config_kwargs": {"overwrite": True}}
    return LightningCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        **cli_kwargs,
    )


if __name__ == "__main__":
    main()
