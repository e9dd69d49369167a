"""Every ``python run.py`` command the README shows parses: the README cannot drift from the CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

import run

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
#: the README's placeholders -> values the parser accepts (nothing is loaded by --print_config)
PLACEHOLDERS = {
    "<ckpt>": "x.ckpt",
    "<sft ckpt>": "sft.ckpt",
    "<warm-up ckpt>": "warm.ckpt",
    "<folder or csv>": "folder",
}


def readme_commands(text: str) -> list[str]:
    """``python run.py …`` commands of the README's bash blocks and inline code, one line each."""
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", text, re.S)).replace("\\\n", " ")
    lines = [line.split(" #")[0].strip() for line in blocks.splitlines()]
    inline = re.findall(r"`(python run\.py [^`]+)`", text)
    return [c for c in lines + inline if c.startswith("python run.py ")]


def overlay_files(text: str) -> dict[str, str]:
    """The README's example overlays (a yaml block whose first line is ``# name.yaml``)."""
    return dict(re.findall(r"```yaml\n# (\S+\.yaml)\n(.*?)```", text, re.S))


def test_readme_shows_the_commands_it_should() -> None:
    commands = readme_commands(README)
    assert len(commands) >= 9 and not any("conf/base.yaml" in c for c in commands)


@pytest.mark.parametrize("command", readme_commands(README))
def test_readme_command_parses(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, body in overlay_files(README).items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    for key, value in PLACEHOLDERS.items():
        command = command.replace(key, value)
    args = [str(tmp_path / a) if (tmp_path / a).exists() else a for a in shlex.split(command)[2:]]
    monkeypatch.chdir(ROOT)  # conf/... paths are relative to the checkout
    with pytest.raises(SystemExit) as stop:
        run.main([*args, "--print_config"])
    assert stop.value.code in (0, None), command
