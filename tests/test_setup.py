"""setup.cfg's floors and extras agree with what the code checks and uses (issue 9, item 10)."""

from __future__ import annotations

import configparser
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

from callbacks.vllm_engine import VLLM_REQUIREMENT
from lightning_modules.checkpoints import _DEEPSPEED

SETUP = configparser.ConfigParser()
SETUP.read(Path(__file__).resolve().parents[1] / "setup.cfg")


def _requirements(section: str, key: str) -> dict[str, Requirement]:
    lines = [x.strip() for x in SETUP[section][key].splitlines() if x.strip() and not x.strip().startswith("#")]
    return {Requirement(x).name: Requirement(x) for x in lines}


def test_extras_match_the_runtime_checks() -> None:
    extras = SETUP["options.extras_require"]
    assert _requirements("options.extras_require", "vllm")["vllm"] == Requirement(VLLM_REQUIREMENT)
    assert str(_requirements("options.extras_require", "deepspeed")["deepspeed"]) == _DEEPSPEED.requirement
    assert "vllm" in extras and "deepspeed" in extras


def test_installed_versions_meet_the_floors() -> None:
    """The floors are what the code needs (mm_encoder_outputs: transformers 5.18; peft's
    trainable_token_indices: 0.15); the environment the tests run in must satisfy them."""
    required = _requirements("options", "install_requires")
    for name in ("torch", "transformers", "peft", "lightning", "tokenizers"):
        assert required[name].specifier.contains(version(name).split("+")[0], prereleases=True), name
    assert str(required["transformers"].specifier) == ">=5.18" and str(required["peft"].specifier) == ">=0.15"


def test_vllm_extra_resolves_against_the_wheels_pins() -> None:
    """vLLM 0.33 pins torch / torchvision / transformers / tokenizers (its METADATA, recorded in
    tests/callbacks/vllm033_api.json): each pin must leave a release the project's own floors
    accept, and the project's Python range must include vLLM's, or ``pip install
    'versusq[vllm]'`` cannot resolve."""
    import json

    from packaging.specifiers import SpecifierSet

    pins = json.loads((Path(__file__).parent / "callbacks" / "vllm033_api.json").read_text())["requires"]
    required = _requirements("options", "install_requires")
    candidates = {"torch": "2.14.0", "torchvision": "0.29.0", "transformers": "5.20.2", "tokenizers": "0.23.3"}
    for name, release in candidates.items():  # a published release inside both ranges
        assert release in SpecifierSet(pins[name]) and release in required[name].specifier, (name, pins[name])
    assert "3.11" in SpecifierSet(pins["python"]) and "3.11" in SpecifierSet(SETUP["options"]["python_requires"])
