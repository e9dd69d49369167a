"""Journal: durable append, resume, torn last line, refusal of a foreign journal."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from callbacks.journal import (
    Journal,
    JournalHeader,
    JournalMismatchError,
    read_journal,
    used_margin,
)

NAMES = [f"v{i}.mp4" for i in range(5)]


def _header(**kw: object) -> JournalHeader:
    base = dict(checkpoint_id="ckpt:a:0", benchmark="konvid", num_items=5, sampler="paper",
                seed=0, budget=25, items_digest="abc")
    return JournalHeader(**{**base, **kw})  # type: ignore[arg-type]


def test_append_then_resume_restores_every_record(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path, _header())
    j.append([j.pair_record(0, 1, NAMES, 0.5, "A sharper"),
              j.pair_record(2, 3, NAMES, float("nan"), "skipped"),
              {"type": "bad", "index": 4, "name": NAMES[4], "reason": "truncated"}])
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["type"] == "header" and len(lines) == 4
    assert json.loads(lines[2])["margin"] is None  # NaN is written as null (valid JSON)
    again = Journal(path, _header())
    assert list(again.state.pairs) == [(0, 1), (2, 3)] and again.state.bad == {4: "truncated"}
    assert again.state.pairs[(0, 1)]["name_j"] == "v1.mp4"
    assert math.isnan(used_margin(again.state.pairs[(2, 3)], False))


def test_torn_last_line_is_ignored_and_next_append_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    j = Journal(path, _header())
    j.append([j.pair_record(0, 1, NAMES, 0.5, "x")])
    with open(path, "a") as f:
        f.write('{"type": "pair", "i": 2, "j"')
    with pytest.warns(RuntimeWarning, match="torn last line"):
        resumed = Journal(path, _header())
    assert list(resumed.state.pairs) == [(0, 1)]
    resumed.append([resumed.pair_record(2, 3, NAMES, -0.1, "y")])
    header, records = read_journal(path)  # no warning: the torn tail was cut
    assert header is not None and [(r["i"], r["j"]) for r in records] == [(0, 1), (2, 3)]


def test_corrupt_middle_line_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    Journal(path, _header())
    with open(path, "a") as f:
        f.write("garbage\n{\"type\": \"bad\", \"index\": 1, \"reason\": \"r\"}\n")
    with pytest.raises(ValueError, match="line 2"):
        read_journal(path)


@pytest.mark.parametrize("change", [{"checkpoint_id": "ckpt:b:7"}, {"benchmark": "live_vqc"},
                                    {"seed": 3}, {"items_digest": "zzz"}])
def test_foreign_journal_is_refused_naming_file_and_ids(tmp_path: Path,
                                                        change: dict[str, object]) -> None:
    path = tmp_path / "j.jsonl"
    Journal(path, _header())
    with pytest.raises(JournalMismatchError) as err:
        Journal(path, _header(**change))
    text = str(err.value)
    assert str(path) in text and "ckpt:a:0" in text
    assert str(next(iter(change.values()))) in text


def test_symmetrized_margin_uses_both_orders() -> None:
    record = {"margin": 1.0, "margin_rev": -0.6}
    assert used_margin(record, True) == pytest.approx(0.8)
    assert used_margin(record, False) == 1.0


def test_disabled_journal_never_writes(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.jsonl", _header(), enabled=False)
    j.append([j.pair_record(0, 1, NAMES, 0.5, "x")])
    assert not (tmp_path / "j.jsonl").exists() and (0, 1) in j.state.pairs
