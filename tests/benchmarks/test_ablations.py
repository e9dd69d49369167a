"""``benchmarks/ablations.py``: the Table 2 matrix driver (commands, records, table, resume).

The smoke test runs the real ``--quick`` path (tiny synthetic data, 2 SFT steps, one variant)
through ``run.py fit`` / ``run.py test`` subprocesses, twice, to check the JSON schema and that
finished jobs are skipped while an unfinished one is run again.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from benchmarks import ablations as ab
from benchmarks.ablation_procs import seed_command

TINY = yaml.safe_load((ab.CONF / "tiny.yaml").read_text())
TEST_SPLITS = [s["name"] for s in TINY["data"]["init_args"]["test_sets"]]


def test_every_row_has_a_trained_chain_and_an_overlay() -> None:
    assert list(ab.VARIANTS) == [
        "pointwise_ntp",
        "pointwise_head",
        "pairwise_ntp",
        "pairwise_head",
        "winrate",
        "elo",
        "lsq",
        "sft_no_reasoning",
        "sft_reasoning",
        "grpo",
        "mcgrpo",
    ]
    for job, (phase, overlays, parent) in ab.TRAIN_JOBS.items():
        assert all((ab.CONF / "ablations" / f"{o}.yaml").is_file() for o in overlays), overlays
        if phase == "mcgrpo":
            assert (
                ab.TRAIN_JOBS[parent][0] == "sft"
                and ab.TRAIN_JOBS[parent][1] == overlays[:1]
                or job in ("grpo", "mcgrpo")
            )
        elif parent is not None:  # the curriculum: the same row's SFT without rationales first
            warm = ab.TRAIN_JOBS[parent]
            assert warm[2] is None and warm[1][-1] == "sft_no_reasoning"
            assert warm[1][:-1] == tuple(o for o in overlays if o not in ("sft_reasoning", "sft_no_reasoning"))
    # the two recipe rows share the warm-up: same pairs and steps, rationales only in the second half
    assert ab.TRAIN_JOBS["sft_reasoning"][2] == ab.TRAIN_JOBS["sft_no_reasoning"][2] == "warmup"
    # score recovery rows: the SAME test run as the full model, different aggregators
    assert {ab.VARIANTS[v][2] for v in ("winrate", "elo", "lsq", "pairwise_head", "mcgrpo")} == {"mcgrpo"}
    assert ab.TRAIN_JOBS["grpo"][2] == ab.TRAIN_JOBS["mcgrpo"][2] == "sft_reasoning"
    overlay = yaml.safe_load((ab.CONF / "ablations" / "grpo_from_sft.yaml").read_text())["model"]["init_args"]
    assert overlay["freeze_head_in_grpo"] is True and overlay["lambda_aux"] == 0.0


def test_steps_come_from_the_configs_with_the_data_ratio() -> None:
    sft_steps, grpo_steps = ab.default_steps(4.0)
    assert sft_steps == TINY["trainer"]["max_steps"]
    per_step = ab.items_per_step(ab.phase_config("sft")), ab.items_per_step(ab.phase_config("mcgrpo"))
    assert grpo_steps * per_step[1] == pytest.approx(4.0 * sft_steps * per_step[0], abs=per_step[1])
    assert ab.default_steps(1.0)[1] < grpo_steps


def test_commands(tmp_path: Path) -> None:
    cmd = ab.fit_command("grpo_pointwise_ntp", 2, tmp_path, 7, ["--x=1"])
    assert cmd[2:5] == ["fit", "--config", str(ab.CONF / "mcgrpo.yaml")]
    assert str(ab.CONF / "ablations" / "pointwise_ntp.yaml") in cmd and "--trainer.max_steps=7" in cmd
    warm = ab.fit_command("warmup_pointwise_ntp", 2, tmp_path, 7, [])
    overlays = [warm[i + 1] for i, c in enumerate(warm) if c == "--config"][2:]
    assert overlays == [str(ab.CONF / "ablations" / f"{o}.yaml") for o in ("pointwise_ntp", "sft_no_reasoning")]
    assert not any("init_from" in c for c in warm)
    sft = ab.fit_command("sft_pointwise_ntp", 2, tmp_path, 7, [])
    assert f"--model.init_args.init_from={tmp_path}/seed2/warmup_pointwise_ntp/version_0/checkpoints/last.ckpt" in sft
    assert f"--model.init_args.init_from={tmp_path}/seed2/sft_pointwise_ntp/version_0/checkpoints/last.ckpt" in cmd
    assert "--seed_everything=2" in cmd and "--model.init_args.seed=2" in cmd and cmd[-2] == "--x=1"
    test = ab.eval_command("mcgrpo", 1, tmp_path, [])
    assert f"--ckpt_path={tmp_path}/seed1/mcgrpo/version_0/checkpoints/last.ckpt" in test
    assert not any("model.init_args.seed" in c for c in test)  # an architecture key: the checkpoint's
    moved = ab.data_overrides(tmp_path / "d")
    specs = json.loads(moved[2].split("=", 1)[1])
    assert [s["name"] for s in specs] == TEST_SPLITS
    assert all(s["label_file"] == str(tmp_path / "d" / "labels.csv") for s in specs)


def _records(variant: str, values: dict[int, list[float]]) -> list[dict]:
    return [
        {"variant": variant, "seed": seed, "split": split, "srcc": v, "plcc": v}
        for seed, vals in values.items()
        for split, v in zip(TEST_SPLITS, vals)
    ]


def test_table2_mean_std_per_split_and_per_seed_average() -> None:
    records = _records("lsq", {0: [0.8, 0.6, 0.5, 0.4], 1: [0.9, 0.7, 0.3, 0.2]})
    records += _records("sft_no_reasoning", {0: [0.5, 0.5, 0.5, None]})
    text = ab.table2_markdown(ab.merge_records([], records), ab.split_groups())
    lsq = next(line for line in text.splitlines() if line.startswith("| Least-squares Recovery"))
    cells = [c.strip() for c in lsq.strip("|").split("|")][1:]
    # syn_test, Avg.(in), then the OOD splits in conf/tiny.yaml's order, Avg.(out) of per-seed averages
    ood = [sum(v) / 3 for v in ([0.6, 0.5, 0.4], [0.7, 0.3, 0.2])]
    assert cells[:2] == ["0.850 ± 0.071", "0.850 ± 0.071"]
    assert (
        cells[2] == "0.650 ± 0.071"
        and cells[-1] == f"{(ood[0] + ood[1]) / 2:.3f} ± {abs(ood[0] - ood[1]) / math.sqrt(2):.3f}"
    )
    assert "| SFT w/o Reasoning | 0.500 | 0.500 | 0.500 | 0.500 | N/A | N/A |" in text
    assert text.index("*Score recovery from comparisons*") < text.index("*Training recipe")
    assert text.count("Least-squares Recovery") == 2  # SRCC and PLCC panels


def test_quick_run_writes_records_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "abl"
    assert ab.main(["--quick", "--out", str(out)]) == 0
    data = json.loads((out / "ablations.json").read_text())
    assert [(r["variant"], r["seed"], r["split"]) for r in data["records"]] == [
        ("sft_no_reasoning", 0, s) for s in sorted(TEST_SPLITS)
    ]
    for r in data["records"]:
        assert set(r) == {"variant", "seed", "split", "srcc", "plcc"}
        assert all(r[m] is None or -1.0 <= r[m] <= 1.0 for m in ("srcc", "plcc"))
    assert "SFT w/o Reasoning" in (out / "table2.md").read_text()
    train_done = out / "seed0" / "sft_no_reasoning" / "done.json"
    test_done = out / "seed0" / "test_sft_no_reasoning" / "done.json"
    stamp = train_done.stat().st_mtime_ns
    test_done.unlink()  # as if the test job had been killed: it alone runs again
    capsys.readouterr()
    assert ab.main(["--quick", "--out", str(out)]) == 0
    log = capsys.readouterr().out
    assert "sft_no_reasoning: done, skipped" in log and "warmup: done, skipped" in log
    assert log.count(" test --config ") == 1
    assert train_done.stat().st_mtime_ns == stamp and test_done.is_file()
    assert not (out / "seed0" / "sft_no_reasoning" / "version_1").exists()
    assert json.loads((out / "ablations.json").read_text()) == data  # same records, not appended


def test_parallel_seeds_each_run_in_a_process_of_their_own(tmp_path: Path) -> None:
    out = tmp_path / "par"
    args = ab.parse_args(["--quick", "--out", str(out), "--seeds", "0", "1", "--parallel", "2"])
    cmd = seed_command(args, 1, {"sft": 3, "mcgrpo": 5})
    assert cmd[cmd.index("--seeds") + 1] == "1" and "--parallel" not in cmd and "--quick" in cmd
    assert cmd[cmd.index("--results") + 1] == str(out / "seed1" / "records.json")
    assert cmd[cmd.index("--sft-steps") + 1] == "3" and cmd[cmd.index("--grpo-steps") + 1] == "5"
    assert ab.main(["--quick", "--out", str(out), "--seeds", "0", "1", "--parallel", "2"]) == 0
    data = json.loads((out / "ablations.json").read_text())
    assert sorted({r["seed"] for r in data["records"]}) == [0, 1]
    for seed in (0, 1):
        log = (out / f"seed{seed}" / "ablations.log").read_text()
        assert f"seeds [{seed}]" in log and "finished in" in log  # the seed's jobs ran in its process


def test_a_failing_benchmark_generation_names_the_folder_and_the_reason(tmp_path: Path) -> None:
    from benchmarks.ablation_procs import ensure_data

    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(RuntimeError, match=r"(?s)file failed: .*NotADirectoryError"):
        ensure_data(blocker, "tiny")
