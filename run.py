"""VersusQ command-line entry point.

Usage::

    python run.py fit --config conf/sft.yaml
    python run.py fit --config conf/mcgrpo.yaml --model.init_from <sft.ckpt>
    python run.py test --config conf/eval.yaml --ckpt_path <ckpt>
    python run.py predict --config conf/predict.yaml --data.videos <folder or csv> --ckpt_path <ckpt>

Every setting lives in YAML under ``conf/`` (``class_path``/``init_args``), stacked with repeated
``--config``; ``conf/base.yaml`` and ``conf/model.yaml`` are loaded first by default and
``conf/tiny.yaml`` is the CPU overlay. See ``lightning_modules/cli.py`` for the links and how a
``--ckpt_path``'s saved settings combine with the given ones.
"""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import ArgsType

from lightning_modules.cli import VersusQCLI

CONF = Path(__file__).resolve().parent / "conf"


def main(args: ArgsType = None, run: bool = True) -> VersusQCLI:
    """Build the CLI (and run the subcommand unless ``run`` is False)."""
    return VersusQCLI(
        LightningModule,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        default_config_files=[str(CONF / "base.yaml"), str(CONF / "model.yaml")],
        save_config_kwargs={"overwrite": True},
    )


if __name__ == "__main__":
    main()
