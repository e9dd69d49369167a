"""Result tables in the paper's Table 1 / Table 2 layout and the multi-run collation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from callbacks import tables

REPO = Path(__file__).resolve().parents[2]

PAPER = ["LSVQ-Test", "LSVQ-1080p", "Avg.", "KoNViD", "LIVE-VQC", "YT-Gaming", "W-IVC-4K", "VDPVE", "Avg."]
BENCH = [
    ("vdpve", "out_of_domain"),
    ("lsvq_1080p", "in_domain"),
    ("konvid_1k", "out_of_domain"),
    ("live_vqc", "out_of_domain"),
    ("lsvq_test", "in_domain"),
    ("live_yt_gaming", "out_of_domain"),
    ("waterloo_ivc_4k", "out_of_domain"),
]


def _rows(
    offset: float = 0.0, aggs: tuple[str, ...] = ("lsq", "elo", "winrate", "bt"), skip: str | None = None
) -> list[dict]:
    return [
        {
            "stage": "test",
            "benchmark": b,
            "group": g,
            "aggregator": a,
            "srcc": 0.5 + 0.05 * k + offset + 0.001 * t,
            "plcc": 0.4 + 0.05 * k + offset,
        }
        for k, (b, g) in enumerate(BENCH)
        if b != skip
        for t, a in enumerate(aggs)
    ]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_table1_has_paper_columns_groups_and_panels() -> None:
    text = tables.table1_markdown(_rows())
    lines = text.splitlines()
    assert _cells(lines[0])[:2] == ["Method", "In-domain"] and _cells(lines[0])[4] == "Out-of-domain"
    assert _cells(lines[2])[1:] == PAPER
    assert [_cells(x)[0] for x in lines[3:]] == ["**SRCC**", "VersusQ (ours)", "**PLCC**", "VersusQ (ours)"]
    srcc = _cells(lines[4])[1:]
    lsvq_test, lsvq_1080p = 0.5 + 0.05 * 4, 0.5 + 0.05 * 1
    assert srcc[:3] == [f"{lsvq_test:.3f}", f"{lsvq_1080p:.3f}", f"{(lsvq_test + lsvq_1080p) / 2:.3f}"]


def test_missing_benchmark_makes_the_group_average_na() -> None:
    rows = _rows(skip="vdpve")
    values = tables.metric_values(rows, "lsq")
    layout = tables.column_layout(rows)
    assert "vdpve" not in layout["out_of_domain"]
    values["vdpve"] = {"srcc": float("nan"), "plcc": float("nan")}
    assert str(tables.group_average(values, layout["out_of_domain"] + ["vdpve"], "srcc")) == "nan"
    assert tables._fmt(float("nan")) == "N/A"


def test_recovery_panel_rows_in_paper_order() -> None:
    text = tables.table2_recovery_markdown(_rows())
    labels = [_cells(x)[0] for x in text.splitlines()[3:]]
    assert labels[:6] == [
        "**SRCC**",
        "*Score recovery from comparisons*",
        "Win-rate Ranking",
        "Elo Rating",
        "Least-squares Recovery",
        "Bradley–Terry",
    ]


def test_unknown_benchmarks_follow_in_order_of_appearance() -> None:
    rows = [
        {"benchmark": "synthetic_b", "group": "in_domain", "aggregator": "lsq", "srcc": 1, "plcc": 1},
        {"benchmark": "lsvq_test", "group": "in_domain", "aggregator": "lsq", "srcc": 1, "plcc": 1},
        {"benchmark": "synthetic_a", "group": "in_domain", "aggregator": "lsq", "srcc": 1, "plcc": 1},
    ]
    assert tables.column_layout(rows)["in_domain"] == ["lsvq_test", "synthetic_b", "synthetic_a"]


def _save_run(root: Path, name: str, info: dict, rows: list[dict]) -> Path:
    run = root / name / "eval"
    run.mkdir(parents=True)
    tables.write_csv(rows, run / "results.csv")
    tables.write_run_info(run / "run_info.json", info)
    return root / name


def test_collate_fills_table2_sections_from_run_configs(tmp_path: Path) -> None:
    runs = [
        _save_run(tmp_path, "mc", {"target": "pairwise", "readout": "head", "phase": "mcgrpo"}, _rows(0.3)),
        _save_run(
            tmp_path, "pw", {"target": "pointwise", "readout": "head", "phase": "mcgrpo"}, _rows(0.1, ("direct",))
        ),
        _save_run(
            tmp_path, "sft", {"target": "pairwise", "readout": "head", "phase": "sft", "reasoning": False}, _rows(0.0)
        ),
        _save_run(
            tmp_path,
            "grpo",
            {"target": "pairwise", "readout": "head", "phase": "mcgrpo", "freeze_head_in_grpo": True},
            _rows(0.2),
        ),
    ]
    text = tables.collate(runs)
    labels = [_cells(x)[0] for x in text.splitlines()[3:]]
    srcc = labels[: labels.index("**PLCC**")]
    assert srcc == [
        "**SRCC**",
        "*Scoring target*",
        "Pointwise Score (head)",
        "Pairwise Margin (head)",
        "*Score recovery from comparisons*",
        "Win-rate Ranking",
        "Elo Rating",
        "Least-squares Recovery",
        "Bradley–Terry",
        "*Training recipe (margin target + LSQ)*",
        "SFT w/o Reasoning",
        "GRPO from SFT",
        "MC-GRPO from SFT",
    ]
    line = next(x for x in text.splitlines() if x.startswith("| Pointwise Score (head)"))
    assert _cells(line)[1] == f"{0.5 + 0.2 + 0.1:.3f}"  # the pointwise run's own scores


def test_collate_names_and_config_yaml_fallback(tmp_path: Path) -> None:
    run = tmp_path / "run" / "eval"
    run.mkdir(parents=True)
    tables.write_csv(_rows(), run / "results.csv")
    (tmp_path / "run" / "config.yaml").write_text("model:\n  init_args:\n    target: pairwise\n    readout: ntp\n")
    assert tables.variant_labels(tables.run_info(run / "results.csv")) == [("Scoring target", "Pairwise Margin (NTP)")]
    text = tables.collate([tmp_path / "run"], names=["my model"])
    assert "| my model |" in text
    with pytest.raises(FileNotFoundError, match="no results.csv"):
        tables.collate([tmp_path / "nowhere"])


def test_csv_roundtrip_and_bad_csv(tmp_path: Path) -> None:
    tables.write_csv(_rows(), tmp_path / "r.csv")
    back = tables.read_csv(tmp_path / "r.csv")
    assert back[0]["srcc"] == pytest.approx(_rows()[0]["srcc"])
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a results.csv"):
        tables.read_csv(tmp_path / "x.csv")
    assert json.loads(json.dumps(tables.CSV_COLUMNS))[0] == "stage"


def test_write_csv_puts_given_columns_first_then_new_keys(tmp_path: Path) -> None:
    tables.write_csv([{"b": 1, "x": 2}, {"y": 3}], tmp_path / "a.csv", ["a", "b"])
    assert (tmp_path / "a.csv").read_text().splitlines() == ["a,b,x,y", ",1,2,", ",,,3"]
    tables.write_csv([], tmp_path / "e.csv", ["rank", "video"])
    assert (tmp_path / "e.csv").read_text().strip() == "rank,video"


def test_tables_cli_collates_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = _save_run(tmp_path, "mine", {"target": "pairwise", "phase": "mcgrpo"}, _rows())
    assert tables.main([str(run), "--names", "mine", "--out", str(tmp_path / "t2.md")]) == 0
    assert "| mine |" in capsys.readouterr().out
    assert "| mine |" in (tmp_path / "t2.md").read_text()
    with pytest.raises(SystemExit):
        tables.main([str(run), "--names", "a", "b"])
    assert "2 labels for 1 runs" in capsys.readouterr().err
    done = subprocess.run(
        [sys.executable, "-m", "callbacks.tables", str(run)], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "MC-GRPO from SFT" in done.stdout  # the documented command works as a module
