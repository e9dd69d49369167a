"""scripts/demo_summary.py: the demo's SFT vs MC-GRPO table and benchmarks/results/demo.json."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import demo_summary  # noqa: E402

COLUMNS = ("stage", "benchmark", "group", "aggregator", "srcc", "plcc", "n_pairs", "n_forced")


def _results(path: Path, srcc: dict[tuple[str, str], float]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        for (bench, agg), value in srcc.items():
            group = "in_domain" if bench == "syn_test" else "out_of_domain"
            writer.writerow(
                {
                    "stage": "test",
                    "benchmark": bench,
                    "group": group,
                    "aggregator": agg,
                    "srcc": value,
                    "plcc": value / 2,
                    "n_pairs": 200,
                    "n_forced": 3,
                }
            )
    return path


def test_summary_puts_both_checkpoints_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sft = _results(
        tmp_path / "sft.csv",
        {
            ("syn_test", "lsq"): 0.4,
            ("syn_test", "elo"): 0.3,
            ("syn_ood_content", "lsq"): 0.2,
            ("syn_ood_distortion", "lsq"): 0.0,
        },
    )
    grpo = _results(
        tmp_path / "grpo.csv",
        {
            ("syn_test", "lsq"): 0.5,
            ("syn_test", "elo"): float("nan"),
            ("syn_ood_content", "lsq"): 0.3,
            ("syn_ood_distortion", "lsq"): 0.1,
        },
    )
    out = tmp_path / "demo.json"
    assert (
        demo_summary.main(["--sft", str(sft), "--mcgrpo", str(grpo), "--times", "sft=10", "test=5", "--out", str(out)])
        == 0
    )
    record = json.loads(out.read_text())
    assert record["stage_seconds"] == {"sft": 10.0, "test": 5.0} and record["total_seconds"] == 15.0
    lsq = {k: v["averages"]["lsq"] for k, v in record["checkpoints"].items()}
    assert lsq["sft"]["in_domain"]["srcc"] == 0.4 and lsq["mcgrpo"]["out_of_domain"]["srcc"] == pytest.approx(0.2)
    assert record["checkpoints"]["mcgrpo"]["forced"] == 9  # 3 per benchmark, counted once (lsq row)
    table = capsys.readouterr().out
    assert "+0.400" in table and "+0.500" in table and "N/A" in table  # NaN Elo shown as N/A


def test_summary_names_a_missing_or_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="did `run.py test` finish"):
        demo_summary.read_results(tmp_path / "nope.csv")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="no srcc column"):
        demo_summary.read_results(tmp_path / "x.csv")
    with pytest.raises(ValueError, match="NAME=SECONDS"):
        demo_summary.parse_times(["sft:3"])
