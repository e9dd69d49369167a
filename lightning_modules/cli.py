"""``VersusQCLI``: the LightningCLI of ``run.py`` -- defaults, links, and checkpoint settings.

* **Defaults.** ``default_config_files`` (``conf/base.yaml``: trainer, logger, checkpointing;
  ``conf/model.yaml``: the shared model and data blocks) are loaded before every ``--config``,
  so a phase file holds only what the phase changes. Giving one of them (or any file) twice is
  an error: ``trainer.callbacks+:`` appends, so a second load would duplicate callbacks.
* **Links** (a value needed twice is given once): the model's ``motion_frames`` and
  ``reasoning`` are the datamodule's; ``target: pointwise`` makes the data pointwise.
* **Checkpoint settings** (``--ckpt_path``). Settings given on the command line or in a
  ``--config`` win; settings not given come from the checkpoint's saved hyperparameters; for
  :data:`~lightning_modules.versusq.ARCHITECTURE_KEYS` a given value that contradicts the
  checkpoint is an error naming the key and both values. ``test`` / ``predict`` / ``validate``
  take the weights from the checkpoint, so its ``init_from`` is not loaded again. A DeepSpeed
  checkpoint folder is consolidated to a float32 file unless the run uses the DeepSpeed strategy
  (``lightning_modules/checkpoints.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

from lightning_modules.checkpoints import consolidate, is_deepspeed_checkpoint, load_hparams
from lightning_modules.versusq import ARCHITECTURE_KEYS

#: Subcommands whose weights come from ``--ckpt_path`` alone (``fit`` resumes and still needs
#: ``init_from`` for the KL reference).
_WEIGHTS_FROM_CKPT = ("validate", "test", "predict")
_LIGHTNING_CKPT_NAMES = ("last", "best", "hpc")
#: Model setting -> the datamodule setting it decides (given once, on the model).
LINKS = {"motion_frames": "motion_frames", "reasoning": "reasoning", "target": "mode"}


def merge_checkpoint_settings(
    given: dict[str, Any], saved: dict[str, Any], architecture: tuple[str, ...] = ARCHITECTURE_KEYS
) -> dict[str, Any]:
    """The model settings of a run with a checkpoint: given ones win, missing ones come from it.

    Args:
        given: settings given on the command line or in a ``--config`` (not defaults).
        saved: the checkpoint's saved hyperparameters.
        architecture: keys whose given value must equal the saved one.

    Returns:
        ``saved`` updated with ``given`` (only keys the caller should set).

    Raises:
        ValueError: a given architecture setting contradicts the checkpoint, naming the key and
            both values.

    >>> merge_checkpoint_settings({"max_new_tokens": 200}, {"max_new_tokens": 64, "readout": "head"})
    {'max_new_tokens': 200, 'readout': 'head'}
    >>> merge_checkpoint_settings({"head_hidden": 32}, {"head_hidden": 64})
    Traceback (most recent call last):
    ...
    ValueError: model.head_hidden=32 was given but the checkpoint was trained with head_hidden=64 (a setting that defines the architecture); drop it to use the checkpoint's
    """
    for key in architecture:
        if key in given and key in saved and given[key] != saved[key]:
            raise ValueError(
                f"model.{key}={given[key]!r} was given but the checkpoint was trained with "
                f"{key}={saved[key]!r} (a setting that defines the architecture); drop it "
                "to use the checkpoint's"
            )
    return {**saved, **given}


def config_files(args: list[str]) -> list[str]:
    """The ``--config`` / ``-c`` files of a command line, in order.

    >>> config_files(["fit", "--config", "a.yaml", "-c=b.yaml", "--config=c.yaml", "--x", "1"])
    ['a.yaml', 'b.yaml', 'c.yaml']
    """
    files = []
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in ("--config", "-c"):
            files.append(value if eq else args[i + 1] if i + 1 < len(args) else "")
    return files


class VersusQCLI(LightningCLI):
    """``LightningCLI`` with VersusQ's default configs, links and checkpoint-settings rule.

    Args:
        default_config_files: YAML files loaded before every ``--config`` (run.py passes
            ``conf/base.yaml`` and ``conf/model.yaml``).
        args, run, **kwargs: as for ``LightningCLI``.
    """

    def __init__(
        self, *cli_args: Any, default_config_files: list[str] | None = None, args: ArgsType = None, **kwargs: Any
    ) -> None:
        self.default_files = [str(Path(f).resolve()) for f in default_config_files or []]
        self._raw_args = list(sys.argv[1:] if args is None else args) if not isinstance(args, dict) else []
        self._check_config_files()
        parser_kwargs = kwargs.pop("parser_kwargs", {}) or {}
        if kwargs.get("run", True):
            for sub in self.subcommands():
                parser_kwargs.setdefault(sub, {}).setdefault("default_config_files", self.default_files)
        else:  # no subcommands: the defaults go to the one parser
            parser_kwargs.setdefault("default_config_files", self.default_files)
        super().__init__(*cli_args, args=args, parser_kwargs=parser_kwargs, **kwargs)

    def _check_config_files(self) -> None:
        seen = set(self.default_files)
        for file in config_files(self._raw_args):
            path = str(Path(file).resolve())
            if path in seen:
                why = "is loaded by default" if path in self.default_files else "is given twice"
                raise ValueError(
                    f"--config {file} {why}: loading a file twice appends its "
                    "`trainer.callbacks+:` again; give it once (or leave it out)"
                )
            seen.add(path)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link what model and data must agree on (given once, on the model)."""
        for source, target in LINKS.items():
            parser.link_arguments(f"model.init_args.{source}", f"data.init_args.{target}")

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parse, then note what was given; a given link target is an error (it would be ignored)."""
        super().parse_arguments(parser, args)
        self._given = self._given_settings()
        clash = [k for k in LINKS.values() if k in self._given["data"]]
        if clash:
            sources = [s for s, t in LINKS.items() if t in clash]
            raise ValueError(
                f"data.{clash[0]} is set from the model: give model.init_args.{sources[0]} "
                f"instead (data {clash} follow model {sources})"
            )

    def _parse_ckpt_path(self) -> None:
        """Merge the checkpoint's saved settings by :func:`merge_checkpoint_settings`."""
        sub = self.config.get("subcommand")
        ckpt_path = self.config[sub].get("ckpt_path") if sub else None
        if not ckpt_path or (str(ckpt_path) in _LIGHTNING_CKPT_NAMES and not Path(ckpt_path).exists()):
            return  # Lightning resolves "last" / "best" / "hpc" itself
        if is_deepspeed_checkpoint(ckpt_path) and "deepspeed" not in str(self.config[sub].trainer.strategy).lower():
            # only the DeepSpeed strategy reads the folder itself; the others get the float32 file
            self.config[sub].ckpt_path = ckpt_path = str(consolidate(ckpt_path))
        saved = load_hparams(ckpt_path)
        saved.pop("_instantiator", None)
        class_path = saved.pop("_class_path", None)
        if not saved:
            return
        model = self.config[sub].model
        if class_path and class_path != model.class_path:
            raise ValueError(f"--ckpt_path {ckpt_path} holds a {class_path}, the config builds a {model.class_path}")
        given = self._given["model"]
        if sub in _WEIGHTS_FROM_CKPT and "init_from" not in given:
            saved["init_from"] = None  # the weights come from the checkpoint itself
        accepted = set(vars(model.init_args))
        merged = merge_checkpoint_settings(given, {k: v for k, v in saved.items() if k in accepted})
        # parse_object re-applies the links, so the data follows the checkpoint's motion_frames
        self.config = self.parser.parse_object(
            {sub: {"model": {"class_path": model.class_path, "init_args": merged}}}, self.config
        )

    def _section(self, config: Namespace) -> Namespace:
        sub = config.get("subcommand")
        return config[sub] if sub else config

    def _given_settings(self) -> dict[str, dict[str, Any]]:
        """``model`` / ``data`` init args given on the command line or in a ``--config``."""
        # parsing without defaults (default_config_files included) yields only what was given;
        # seeding every class_path of the full parse lets `--x.key value` resolve against its
        # class even where the class itself came from a default file
        seed = Namespace()
        for key, value in self.config.items():
            if key.endswith(".class_path") and isinstance(value, str):
                seed[key] = value
        given = self._section(
            self.parser.parse_args(self._raw_args, namespace=seed, defaults=False, _skip_validation=True)
        )
        out = {}
        for key in ("model", "data"):
            init_args = (given.get(key) or Namespace()).get("init_args") or Namespace()
            out[key] = init_args.as_dict() if isinstance(init_args, Namespace) else dict(init_args)
        return out
